"""Experiment tracking: a training run reported to MLflow and/or TensorBoard (`training.tracking`, `train --track`).

Nothing here runs, and neither mlflow nor tensorboard is imported, unless the spec or `--track` turns a
tracker on. A tracker that fails (server down, store unwritable, package missing) costs one warning line
and is dropped for the rest of the run: tracking never fails or stops a training run.

The caller opens a `Tracking` with `open_tracking`, hands it to `runtime.train.train(tracker=...)`, logs the
exported model with `log_model`, and closes it (`with tracking:` closes with FINISHED, FAILED or KILLED).
A study (`nnspec tune`) opens its parent run with `study_run` and passes its id as `parent_run_id`, so each
trial's MLflow run is nested under the study's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Protocol

from nnspec.compiler.spec import Spec
from nnspec.compiler.tracking import MlflowTracking, TensorBoardTracking

from .files import atomic_write_json
from .runs import flatten, value_text

TRACKING_FILE = "tracking.json"  # in the run directory: the MLflow run, so `--resume` continues it
ARTIFACTS = ("spec.yaml", "metrics.csv", "summary.json", "curves.png", "confusion.png")
REACH_TIMEOUT_S = 2.0  # one reachability check of an HTTP tracking server before the run starts
GRAPH_MAX_PARAMS = 2_000_000  # TensorBoard's graph view is for small networks; tracing a big one costs time
# MLflow's HTTP client retries a failed request 7 times with backoff (minutes); a tracker must fail fast.
# setdefault: a user's own settings win.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}

Warn = Callable[[str], None]


class Tracker(Protocol):
    """What a run reports, in order: start, one epoch row per epoch, finish, the exported model, close."""

    label: str

    def start(self, spec: Spec, run_dir: Path | None, net, train_split) -> None: ...
    def epoch(self, row: dict) -> None: ...
    def finish(self, summary: dict) -> None: ...
    def log_model(self, version_dir: Path, register: str | None) -> None: ...
    def close(self, status: str) -> None: ...


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class Tracking:
    """The trackers of one run; each call goes to every tracker still working."""

    def __init__(self, trackers: list[Tracker], warn: Warn = _stderr):
        self.trackers, self.warn = list(trackers), warn

    def _each(self, method: str, *args) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, method)(*args)
            # Broad on purpose: MLflow, its HTTP and SQL layers and TensorBoard raise many unrelated types, and
            # none of them may end a training run.
            except Exception as e:
                self.trackers.remove(tracker)
                self.warn(f"warning: {tracker.label} tracking is off for the rest of this run: {_first_line(e)}")

    def start(self, spec: Spec, run_dir: Path | None, net, train_split) -> None:
        """Open each tracker's run (the network and training split give TensorBoard its graph)."""
        self._each("start", spec, run_dir, net, train_split)

    def epoch(self, row: dict) -> None:
        """One metrics.csv row: every value but `epoch`, at step = epoch."""
        self._each("epoch", row)

    def finish(self, summary: dict) -> None:
        """Training is over: final metrics and the run directory's files."""
        self._each("finish", summary)

    def log_model(self, version_dir: str | Path, register: str | None = None) -> None:
        """The exported version (model.onnx + nnspec.json), registered as a model version under `register`."""
        self._each("log_model", Path(version_dir), register)

    def close(self, status: str = "FINISHED") -> None:
        """End each tracker's run with FINISHED, FAILED or KILLED."""
        self._each("close", status)
        self.trackers = []

    def __bool__(self) -> bool:
        """Whether any tracker is (still) on: the loop skips its calls otherwise."""
        return bool(self.trackers)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is None:
            self.close("FINISHED")
            return
        from .train import TrainingInterrupted  # here: runtime.train imports this module

        self.close("KILLED" if issubclass(kind, (KeyboardInterrupt, TrainingInterrupted)) else "FAILED")


def with_tracking(spec: Spec, backends: list[str] | tuple) -> Spec:
    """The spec with each named tracker (mlflow, tensorboard) switched on, so the run's spec.yaml says so."""
    if not backends:
        return spec
    tracking = spec.training.tracking.enabled(backends)
    return spec.model_copy(update={"training": spec.training.model_copy(update={"tracking": tracking})})


def open_tracking(spec: Spec, *, parent_run_id: str | None = None, warn: Warn = _stderr) -> Tracking:
    """The spec's trackers (false when tracking is off); `parent_run_id` nests the MLflow run under a study's."""
    config = spec.training.tracking
    trackers: list[Tracker] = []
    if config.mlflow is not None:
        trackers.append(MlflowTracker(config.mlflow, parent_run_id))
    if config.tensorboard is not None:
        trackers.append(TensorBoardTracker(config.tensorboard, warn))
    return Tracking(trackers, warn)


def resume_tracking(run_dir: str | Path, *, warn: Warn = _stderr) -> Tracking:
    """The MLflow run a run directory was tracked in, to log a later export into it (false when it was not tracked)."""
    record = _read_record(Path(run_dir))
    tracking = Tracking([MlflowTracker(MlflowTracking(uri=record["uri"]))] if record else [], warn)
    tracking._each("reopen", record)
    return tracking


def _read_record(run_dir: Path | None) -> dict | None:
    path = run_dir / TRACKING_FILE if run_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("mlflow")
    except (OSError, ValueError, AttributeError):
        return None


def _import_mlflow():
    # MLflow logs at INFO by default (database migrations, "creating experiment"): a training run shows its own progress.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    try:
        import mlflow
    except ImportError:
        raise ImportError("mlflow is not installed (pip install 'nnspec[track]')") from None
    return mlflow


def _check_reachable(uri: str) -> None:
    """Fail at once when an HTTP tracking server does not answer, instead of on every logging call."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=REACH_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        pass  # it answered: a proxy or an older server without /health is still a server
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise ConnectionError(f"tracking server {uri} is unreachable ({reason})") from None


def _tracking_uri(mlflow, configured: str | None) -> str:
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if configured:
        # Process-wide on purpose: mlflow.onnx.log_model and model registration use the global URI.
        mlflow.set_tracking_uri(configured)
    uri = mlflow.get_tracking_uri()
    _check_reachable(uri)
    return uri


class MlflowTracker:
    """One MLflow run per training: the spec as dotted params, metrics per epoch, artifacts, the ONNX model."""

    label = "MLflow"

    def __init__(self, config: MlflowTracking, parent_run_id: str | None = None):
        self.config, self.parent_run_id = config, parent_run_id
        self.client = self.run_id = self.run_dir = None
        self.pending: list = []  # per-epoch batches still in MLflow's logging queue

    def start(self, spec: Spec, run_dir: Path | None, net, train_split) -> None:
        """Create the run (or continue the one a resumed run directory names) and log the spec as params."""
        import torch

        import nnspec

        from .rundir import spec_hash

        mlflow = _import_mlflow()
        uri = _tracking_uri(mlflow, self.config.uri)
        self.client, self.run_dir = mlflow.MlflowClient(uri), run_dir
        record = _read_record(run_dir)
        if record is not None and record.get("uri") == uri:  # --resume: the same MLflow run goes on
            self.run_id = record["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            return
        experiment = self.config.experiment or spec.name
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
        device = next(net.parameters()).device
        tags = {"nnspec.spec_hash": spec_hash(spec), "nnspec.version": nnspec.__version__, "torch.version": torch.__version__,
                "nnspec.device": str(device), "nnspec.seed": str(spec.training.seed), "nnspec.task": spec.task}
        if run_dir is not None:
            tags["nnspec.run_dir"] = str(Path(run_dir).resolve())
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        name = f"{spec.name}-{run_dir.name}" if run_dir is not None else spec.name
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        from mlflow.entities import Param

        params = [Param(k, value_text(v)) for k, v in flatten(spec.model_dump(mode="json")).items()]
        self.client.log_batch(self.run_id, params=params)  # MlflowClient splits it into batches of 100
        if run_dir is not None:
            atomic_write_json(Path(run_dir) / TRACKING_FILE,
                              {"mlflow": {"uri": uri, "run_id": self.run_id, "experiment_id": experiment_id}})

    def reopen(self, record: dict) -> None:
        """Attach to a run logged earlier (from a run directory's tracking.json)."""
        mlflow = _import_mlflow()
        self.client = mlflow.MlflowClient(_tracking_uri(mlflow, record["uri"]))
        self.run_id = record["run_id"]
        self.client.get_run(self.run_id)  # fails here, once, when the run or its store is gone

    def epoch(self, row: dict) -> None:
        """The epoch's losses, metrics and lr, at step = epoch (one call, one write)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, row["epoch"]) for k, v in row.items() if k != "epoch"]
        # MLflow's own background queue: the epoch does not wait for the store (or a slow server); finish waits.
        self.pending.append(self.client.log_batch(self.run_id, metrics=metrics, synchronous=False))

    def _wait(self) -> None:
        pending, self.pending = self.pending, []
        for operation in pending:
            operation.wait()  # raises when a batch failed

    def finish(self, summary: dict) -> None:
        """Final test metrics (test_*) and the run directory's files as artifacts."""
        from mlflow.entities import Metric

        self._wait()
        now, step = int(time.time() * 1000), summary.get("epochs_run", 0)
        finals = [Metric(f"test_{k}", float(v), now, step) for k, v in (summary.get("test") or {}).items()]
        if finals:
            self.client.log_batch(self.run_id, metrics=finals)
        if self.run_dir is not None:
            for name in ARTIFACTS:
                if (Path(self.run_dir) / name).is_file():
                    self.client.log_artifact(self.run_id, str(Path(self.run_dir) / name))

    def log_model(self, version_dir: Path, register: str | None) -> None:
        """model.onnx with MLflow's onnx flavour, its signature and an input example from the manifest."""
        import mlflow.onnx
        import onnx

        from .repository import MODEL_FILE, read_manifest

        manifest = read_manifest(version_dir)
        signature, example = mlflow_signature(manifest)
        # The flavour keeps MLflow's default providers (CUDA, then CPU) so a GPU server uses its GPU; checking the
        # input example on a CPU-only build warns about the missing CUDA provider on every export: not news.
        onnx_logger = logging.getLogger("mlflow.onnx")
        level = onnx_logger.level
        onnx_logger.setLevel(logging.ERROR)
        try:
            info = mlflow.onnx.log_model(onnx.load(str(version_dir / MODEL_FILE)), name="model", run_id=self.run_id,
                                         signature=signature, input_example=example, registered_model_name=register,
                                         save_as_external_data=False, pip_requirements=_requirements())
        finally:
            onnx_logger.setLevel(level)
        self.client.log_artifacts(self.run_id, str(version_dir), artifact_path="export")  # nnspec.json, model card
        self.client.set_tag(self.run_id, "nnspec.model_uri", info.model_uri)  # models:/m-...: what mlflow.onnx.load_model takes
        self.client.set_tag(self.run_id, "nnspec.model_version", f"{manifest['name']}/{manifest.get('version')}")

    def close(self, status: str) -> None:
        """End the run (after the metrics still queued)."""
        if self.run_id is not None:
            self._wait()
            self.client.set_terminated(self.run_id, status)


def _requirements() -> list[str]:
    # Stated, not inferred: MLflow infers them by loading the model in a subprocess, seconds per export.
    import onnx
    import onnxruntime

    return [f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"]


def mlflow_signature(manifest: dict):
    """The MLflow signature (named tensors, dynamic batch) and an input example (one row of zeros) of a manifest."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    def tensor(spec: dict) -> TensorSpec:
        return TensorSpec(np.dtype(spec["dtype"]), (-1, *spec["shape"]), spec["name"])

    signature = ModelSignature(inputs=Schema([tensor(manifest["input"])]), outputs=Schema([tensor(o) for o in manifest["outputs"]]))
    # Zeros are a valid raw input of every model (the graph normalizes them); a real row would need the data again.
    example = {manifest["input"]["name"]: np.zeros((1, *manifest["input"]["shape"]), dtype=manifest["input"]["dtype"])}
    return signature, example


class TensorBoardTracker:
    """Event files: every epoch value as a scalar, hyperparameters with the final metrics, the graph of a small network."""

    label = "TensorBoard"

    def __init__(self, config: TensorBoardTracking, warn: Warn = _stderr):
        self.config, self.warn = config, warn
        self.writer = self.spec = None

    def start(self, spec: Spec, run_dir: Path | None, net, train_split) -> None:
        """Open the writer (the run directory's tb/ unless a dir is set) and log the graph of a small network."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError("tensorboard is not installed (pip install 'nnspec[track]')") from None
        if self.config.dir is None and run_dir is None:
            raise ValueError("no run directory to write tb/ into; set training.tracking.tensorboard.dir")
        self.spec = spec
        # Flushed every 10 s by the writer's own thread (and at close), not per epoch: a flush costs more than the scalars.
        self.writer = SummaryWriter(str(self.config.dir or Path(run_dir) / "tb"), flush_secs=10)
        if sum(p.numel() for p in net.parameters()) <= GRAPH_MAX_PARAMS:
            self._graph(net, train_split)

    def _graph(self, net, train_split) -> None:
        import torch

        sample = next(iter(train_split.inputs(2)))
        was_training = net.training
        net.eval()  # a trace in training mode would move batch-norm statistics and draw dropout masks
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=DeprecationWarning)  # torch.jit.trace's notice, as in the export
                self.writer.add_graph(net, sample)
        except Exception as e:  # tracing some layers fails; the scalars still matter
            self.warn(f"warning: TensorBoard graph skipped: {_first_line(e)}")
        finally:
            net.train(was_training)

    def epoch(self, row: dict) -> None:
        """Each value of the row as a scalar at step = epoch."""
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, row["epoch"])

    def finish(self, summary: dict) -> None:
        """The hparams view: every spec value against the final validation and test metrics."""
        hparams = {k: v if isinstance(v, (int, float, str, bool)) and v is not None else value_text(v)
                   for k, v in flatten(self.spec.model_dump(mode="json")).items()}
        finals = {f"final/{split}_{k}": float(v) for split, key in (("val", "validation"), ("test", "test"))
                  for k, v in (summary.get(key) or {}).items()}
        if finals:
            self.writer.add_hparams(hparams, finals, run_name=".")

    def log_model(self, version_dir: Path, register: str | None) -> None:
        """Nothing: TensorBoard keeps no models."""

    def close(self, status: str) -> None:
        """Flush and close the event files."""
        if self.writer is not None:
            self.writer.close()


@contextlib.contextmanager
def study_run(spec: Spec, study_name: str, *, warn: Warn = _stderr) -> Iterator[str | None]:
    """An MLflow parent run for a study of `spec` (nnspec tune), ended when the block ends: yields its run id for
    `open_tracking(trial_spec, parent_run_id=...)`, or None when MLflow tracking is off or unavailable."""
    config = spec.training.tracking.mlflow
    if config is None:
        yield None
        return
    try:
        mlflow = _import_mlflow()
        client = mlflow.MlflowClient(_tracking_uri(mlflow, config.uri))
        experiment = config.experiment or spec.name
        found = client.get_experiment_by_name(experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=study_name, tags={"nnspec.study": study_name}).info.run_id
    except Exception as e:  # as in Tracking._each: a tracker never stops the work
        warn(f"warning: MLflow tracking is off for this study: {_first_line(e)}")
        yield None
        return
    status = "FAILED"
    try:
        yield run_id
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        with contextlib.suppress(Exception):
            client.set_terminated(run_id, status)
