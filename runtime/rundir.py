"""The run directory runs/<name>/<YYYYmmdd-HHMMSS>/ and everything written into it."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np

from nnspec.compiler.data import DataInfo, FixedSplit
from nnspec.compiler.spec import Spec

from .files import atomic_write_bytes, atomic_write_json, atomic_write_text


def spec_yaml(spec: Spec) -> str:
    """The resolved spec (every default filled in) as YAML."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(spec.model_dump(mode="json"), buf)
    return buf.getvalue()


def spec_hash(spec: Spec) -> str:
    """sha256 of the resolved spec's canonical JSON."""
    return "sha256:" + hashlib.sha256(json.dumps(spec.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


PARITY_FILE = "parity_rows.npy"  # raw validation rows the export checks ONNX against PyTorch on


def data_info_dict(info: DataInfo) -> dict:
    """What the export's manifest and the run's re-validation need from the data."""
    return {"shape": list(info.shape), "labels": info.labels, "targets": info.targets, "features": info.features, "image": info.image,
            "origin": info.origin, "fixed": {name: vars(fixed) for name, fixed in info.fixed.items()}}


def _data_info(data: dict) -> DataInfo:
    # the inverse of data_info_dict
    fixed = {name: FixedSplit(**f) for name, f in data.get("fixed", {}).items()}
    return DataInfo(**{**data, "shape": tuple(data["shape"]), "fixed": fixed})


def create_run_dir(runs_dir: str | Path, spec: Spec, info: DataInfo, parity_rows: np.ndarray | None = None) -> Path:
    """A new, uniquely named run folder holding the resolved spec, the data description and the export's
    parity rows (so that exporting the run never reads its data again)."""
    base = Path(runs_dir) / spec.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run = base / stamp
    n = 1
    while True:
        try:
            run.mkdir(parents=True)
            break
        except FileExistsError:
            n += 1
            run = base / f"{stamp}-{n}"
    atomic_write_text(run / "spec.yaml", spec_yaml(spec))
    atomic_write_json(run / "data.json", data_info_dict(info))
    if parity_rows is not None:
        buf = io.BytesIO()
        np.save(buf, parity_rows, allow_pickle=False)
        atomic_write_bytes(run / PARITY_FILE, buf.getvalue())
    return run


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """One row per epoch; columns are the union of the rows' keys in first-seen order (rewritten every epoch,
    without fsync)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    atomic_write_text(path, buf.getvalue(), durable=False)


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_curves(path: Path, rows: list[dict], metric: str) -> None:
    """curves.png: loss, the main metric and the learning rate per epoch."""
    from matplotlib.figure import Figure  # not pyplot: no global backend or figure registry, and a lighter import

    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], metric, metric)):
        for split in ("train", "val"):
            values = [r.get(f"{split}_{key}") for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, values, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    axes[2].plot(epochs, [r["lr"] for r in rows])
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("epoch")
    fig.tight_layout()
    _save_figure(fig, path)


def plot_confusion(path: Path, true, pred, labels: list[str], title: str) -> None:
    """confusion.png: counts of true class (rows) against predicted class (columns)."""
    from matplotlib.figure import Figure

    from .metrics import confusion_matrix

    k = len(labels)
    counts = confusion_matrix(true, pred, k)
    fig = Figure(figsize=(1.2 + 0.45 * k, 1 + 0.45 * k))
    ax = fig.subplots()
    ax.imshow(counts, cmap="Blues")
    ax.set_xticks(range(k), labels, rotation=90 if k > 4 else 0)
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, counts[i, j], ha="center", va="center", fontsize=8,
                    color="white" if counts[i, j] > counts.max() / 2 else "black")
    fig.tight_layout()
    _save_figure(fig, path)


def record_export(run_dir: str | Path, version_dir: Path, version: int) -> None:
    """Add a published version to the run's exports.json (read by `nnspec runs`)."""
    path = Path(run_dir) / "exports.json"
    try:
        exports = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        atomic_write_json(path, [*exports, {"version": version, "path": str(version_dir)}])
    except (OSError, ValueError):
        pass  # the version is published; a read-only or damaged run folder only loses this note


# What `nnspec export RUN_DIR --set ...` may change: the export and serving sections, never what was trained.
EXPORT_SECTIONS = ("export", "serving")


def load_run(run_dir: str | Path, overrides: list[str] | tuple = ()) -> tuple[Spec, DataInfo]:
    """The resolved spec and data description of a run; `overrides` (PATH=VALUE) may change export.* and serving.*."""
    from nnspec.compiler.errors import Issue, SpecError
    from nnspec.compiler.validate import load_spec_with_data, parse_override

    run_dir = Path(run_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise SpecError([Issue((), "not a run directory (no spec.yaml)", str(run_dir))])
    for override in overrides:
        path, _ = parse_override(override)
        if path[0] not in EXPORT_SECTIONS:
            raise SpecError([Issue(path, f"a trained run can change only {' and '.join(s + '.*' for s in EXPORT_SECTIONS)}",
                                   f"--set {override}")])
    recorded = json.loads((run_dir / "data.json").read_text())
    info = _data_info(recorded)
    # The spec is checked against the data as it was when the run trained: its files are not read again
    # (runs older than the recorded `fixed` splits are checked against the files).
    return load_spec_with_data(run_dir / "spec.yaml", overrides, info if "fixed" in recorded else None)[0], info
