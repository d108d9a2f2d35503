"""Export a run to ONNX with its preprocessing inside, check parity against PyTorch, and publish it
as a new version in the Triton-layout model repository."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

import nnspec
from nnspec.compiler.compile import compile_model, summarize
from nnspec.compiler.data import DataInfo
from nnspec.compiler.spec import Spec

from .checkpoint import load_checkpoint
from .data import PARITY_ROWS, missing_text, raw_rows
from .metrics import probabilities
from .repository import PLOTS, publish_version, write_config_pbtxt
from .rundir import PARITY_FILE, load_run, record_export, spec_hash

PARITY_BATCHES = (1, 7, 64)


class ExportError(RuntimeError):
    """Export failed (e.g. ONNX and PyTorch disagree); the message names the output and the difference."""


@dataclass
class Exported:
    """A published model version."""

    path: Path
    version: int
    parity: dict[str, float]  # output name -> max |onnxruntime - torch|


class ServingModel(nn.Module):
    """Raw inputs in, answers out: missing-value fills (NaN -> the training split's fill, plus was-missing
    columns), normalization, reshape, the network, then softmax/sigmoid or de-normalization."""

    def __init__(self, net: nn.Module, task: str, x_shift, x_scale, model_shape, y_shift=None, y_scale=None,
                 fill=None, indicate=None):
        super().__init__()
        self.net, self.task, self.model_shape = net, task, tuple(model_shape)
        self.register_buffer("x_shift", torch.as_tensor(x_shift, dtype=torch.float32))
        self.register_buffer("x_scale", torch.as_tensor(x_scale, dtype=torch.float32))
        self.register_buffer("y_shift", torch.as_tensor(0.0 if y_shift is None else y_shift, dtype=torch.float32))
        self.register_buffer("y_scale", torch.as_tensor(1.0 if y_scale is None else y_scale, dtype=torch.float32))
        self.imputes = fill is not None  # a graph without gaps to fill has no imputation nodes at all
        if self.imputes:
            self.register_buffer("fill", torch.as_tensor(fill, dtype=torch.float32))
            self.register_buffer("indicate", torch.as_tensor([] if indicate is None else indicate, dtype=torch.int64))
            self.indicators = int(self.indicate.numel())

    def impute(self, x):
        """NaN -> each column's fill (columns without one keep their NaN), then the was-missing columns."""
        missing = torch.isnan(x)
        filled = torch.where(missing, self.fill, x)
        if self.indicators:
            filled = torch.cat([filled, missing[:, self.indicate].to(x.dtype)], dim=1)
        return filled

    def forward(self, x):
        if self.imputes:
            x = self.impute(x)
        z = ((x - self.x_shift) / self.x_scale).reshape(x.shape[0], *self.model_shape)
        out = self.net(z)
        if self.task == "regression":
            return out * self.y_scale + self.y_shift
        probs = probabilities(self.task, out)
        return probs, probs.argmax(dim=1)


def output_names(task: str) -> list[str]:
    """The ONNX graph's output names (see docs/ARCHITECTURE.md)."""
    return ["values"] if task == "regression" else ["probabilities", "class_index"]


def serving_model(spec: Spec, info: DataInfo, state: dict) -> ServingModel:
    """The trained network wrapped with its preprocessing, in eval mode."""
    net = compile_model(spec, info)
    net.load_state_dict(state["model"])
    pre = state["preprocessing"]
    y, impute = pre.get("y"), pre.get("impute")
    model = ServingModel(net, spec.task, pre["x"]["shift"], pre["x"]["scale"], spec.model.input_shape(info.net_shape),
                         None if y is None else y["shift"], None if y is None else y["scale"],
                         None if impute is None else impute["fill"], None if impute is None else impute["indicate"])
    return model.eval()


def to_onnx(model: ServingModel, sample_shape, task: str, opset: int) -> bytes:
    """Trace to ONNX bytes: one input `input` with a dynamic `batch` axis, named outputs."""
    import warnings

    names = output_names(task)
    example = torch.zeros(2, *sample_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter's deprecation notices only: a TracerWarning means a wrong trace and must show.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(model, (example,), buf, input_names=["input"], output_names=names, opset_version=opset,
                          dynamic_axes={"input": {0: "batch"}, **{n: {0: "batch"} for n in names}}, dynamo=False)
    return buf.getvalue()


def check_parity(onnx_bytes: bytes, model: ServingModel, rows: np.ndarray, task: str, atol: float,
                 rtol: float = 0.0) -> dict[str, float]:
    """Run the same rows through onnxruntime and torch at several batch sizes; fail where
    |onnx - torch| > atol + rtol * |torch|. Returns each output's max |onnx - torch|."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load_from_string(onnx_bytes), full_check=True)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = output_names(task)
    worst = {n: 0.0 for n in names if n != "class_index"}  # an argmax flips only on near-ties: the probabilities' gap counts
    failed: set[str] = set()
    with torch.no_grad():
        for bs in PARITY_BATCHES:
            for i in range(0, len(rows), bs):
                chunk = rows[i : i + bs]
                ours = model(torch.from_numpy(chunk))
                ours = [ours] if task == "regression" else list(ours)
                try:
                    theirs = session.run(names, {"input": chunk})
                except Exception as e:  # onnxruntime's own exception types derive from Exception only
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    raise ExportError(f"the ONNX graph fails on a batch of {len(chunk)}: {first}") from None
                for name, a, b in zip(names, ours, theirs):
                    if name in worst:
                        reference = a.numpy().astype(np.float64)
                        diff = np.abs(reference - b)
                        worst[name] = max(worst[name], float(np.max(diff)))
                        if not np.all(diff <= atol + rtol * np.abs(reference)):  # a NaN fails too
                            failed.add(name)
    bad = {n: d for n, d in worst.items() if n in failed}
    if bad:
        detail = ", ".join(f"output '{n}' max |diff| {d:.3g}" for n, d in bad.items())
        raise ExportError(f"ONNX and PyTorch disagree beyond export.atol={atol} + export.rtol={rtol}·|torch|: {detail}")
    return worst


def manifest_for(spec: Spec, info: DataInfo, summary: dict, versions: dict) -> dict:
    """The nnspec.json manifest (docs/ARCHITECTURE.md), less the version that publishing adds."""
    classifier = spec.task != "regression"
    k = len(info.labels) if classifier else None
    outputs = ([{"name": "probabilities", "dtype": "float32", "shape": [k]}, {"name": "class_index", "dtype": "int64", "shape": []}]
               if classifier else [{"name": "values", "dtype": "float32", "shape": [len(info.targets)]}])
    return {
        "manifest_version": 1, "name": spec.name, "task": spec.task,
        "input": {"name": "input", "dtype": "float32", "shape": list(info.shape)},
        "features": info.features, "image": info.image,
        "labels": info.labels if classifier else None, "targets": None if classifier else info.targets,
        "outputs": outputs,
        "serving": {"max_batch_size": spec.serving.max_batch_size, "max_queue_delay_ms": spec.serving.max_queue_delay_ms},
        "metrics": {"validation": summary.get("validation", {}), "test": summary.get("test", {})},
        "parameters": summarize(spec, info)["total_params"],
        "spec_hash": spec_hash(spec), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": versions,
    }


def example_instance(row: np.ndarray) -> list:
    """One raw input row as a JSON instance, each float32 written in its shortest exact form (0.3, not 0.30000001)."""
    shortest = np.array([float(str(v)) for v in row.astype(np.float32).ravel()])
    return shortest.reshape(row.shape).tolist()


def model_card(spec: Spec, info: DataInfo, manifest: dict, summary: dict) -> str:
    """README.md: data, network, training and metrics in a few lines."""
    src = spec.data.source
    tr = spec.training
    lines = [
        f"# {spec.name}", "",
        f"A {spec.task} model trained by nnspec {nnspec.__version__}.", "",
        "## Data", "",
        f"- source: `{src.type}`" + (f" `{src.name}`" if hasattr(src, "name") else f" `{Path(getattr(src, 'path', '')).name}`"),
        f"- input: raw values of shape {tuple(manifest['input']['shape'])} (normalization `{spec.data.preprocessing.normalize}` is inside the graph)",
    ]
    features = manifest["features"] or []
    gaps = [f for f in features if f.get("missing")]
    if gaps:
        lines.append("- missing values (null, a left-out key, NaN or an empty CSV cell): "
                     + "; ".join(f"`{f['name']}` {missing_text(f)}" for f in gaps)
                     + " (numeric fills happen inside the graph; fills were fitted on the training split)")
    if any(f.get("unknown") == "ignore" for f in features):
        lines.append("- categories not seen in training are encoded as all zeros")
    if summary.get("splits"):
        lines.append("- splits: " + "; ".join(f"{name} {made}" for name, made in summary["splits"].items()))
    if manifest["labels"]:
        lines.append(f"- classes: {', '.join(manifest['labels'])}")
    lines += ["", "## Network", "", f"{len(spec.model.layers)} layers, {manifest['parameters']:,} parameters: "
              + " → ".join(layer.type for layer in spec.model.layers), "",
              "## Training", "",
              f"{summary.get('epochs_run', '?')} epochs of `{tr.optimizer.type}` (lr {tr.optimizer.lr}) on `{tr.loss.type}`, batch {tr.batch_size}"
              + (f", `{tr.scheduler.type}` schedule" if tr.scheduler else "") + f", seed {tr.seed}.", "",
              "## Metrics", ""]
    names = list(manifest["metrics"].get("test", {}) or manifest["metrics"].get("validation", {}))
    lines += ["| split | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for split in ("validation", "test"):
        values = manifest["metrics"].get(split) or {}
        if values:
            lines.append(f"| {split} | " + " | ".join(f"{values.get(n, float('nan')):.4f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def export_run(run_dir: str | Path, repo: str | Path = "models", version: int | None = None, overwrite: bool = False,
               overrides: list[str] | tuple = ()) -> Exported:
    """Export a run's final weights to models/<name>/<version>/ and refresh models/<name>/config.pbtxt;
    `overrides` (PATH=VALUE) may change the spec's export and serving sections."""
    import onnx
    import onnxruntime

    from .evaluate import run_weights

    run_dir = Path(run_dir)
    spec, info = load_run(run_dir, overrides)
    state = load_checkpoint(run_weights(run_dir, spec))
    model = serving_model(spec, info, state)
    onnx_bytes = to_onnx(model, info.shape, spec.task, spec.export.opset)  # the raw input: before the graph's fills
    stored = run_dir / PARITY_FILE  # written by training; a run without it reads its data for them
    rows = np.load(stored, allow_pickle=False) if stored.is_file() else raw_rows(spec, PARITY_ROWS)
    rows = np.ascontiguousarray(rows[:PARITY_ROWS], dtype=np.float32)  # raw validation rows
    parity = check_parity(onnx_bytes, model, rows, spec.task, spec.export.atol, spec.export.rtol)
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    versions = {**summary.get("versions", {}), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    manifest = manifest_for(spec, info, summary, versions)
    manifest["parity"] = {"batch_sizes": list(PARITY_BATCHES), "rows": len(rows), "max_abs_diff": parity}
    if not info.features and not info.image:  # tables and images have their own forms on the model page
        manifest["example"] = example_instance(rows[0])
    files = {"model.onnx": onnx_bytes, "README.md": model_card(spec, info, manifest, summary).encode(),
             **{plot: (run_dir / plot).read_bytes() for plot in PLOTS if (run_dir / plot).is_file()}}
    number, path = publish_version(repo, spec.name, manifest, files, version=version, overwrite=overwrite)
    write_config_pbtxt(repo, spec.name, manifest)
    record_export(run_dir, path, number)
    return Exported(path, number, parity)
