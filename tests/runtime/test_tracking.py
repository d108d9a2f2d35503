"""Experiment tracking against real local stores: MLflow on a SQLite store read back with MlflowClient, TensorBoard
event files read back with TensorBoard's own reader; a tracking server that is down; the tracking-off path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import numpy as np
import pytest

from nnspec.compiler.tracking import MlflowTracking, TrackingSpec


def _mlflow_spec(h, tmp_path, uri, **training):
    return h.spec_file(tmp_path, h.base_spec(training={"tracking": {"mlflow": {"uri": uri, "experiment": "iris"}}, **training}))


def test_track_switches_a_tracker_on_and_keeps_what_the_spec_configures():
    configured = TrackingSpec(mlflow=MlflowTracking(experiment="mine"))
    on = configured.enabled(["mlflow", "tensorboard"])
    assert on.mlflow.experiment == "mine" and on.tensorboard is not None and on.tensorboard.dir is None
    assert not TrackingSpec().active and TrackingSpec().enabled(["tensorboard"]).active


@pytest.mark.slow
def test_mlflow_run_reads_back_from_a_local_store(h, tmp_path, monkeypatch):
    import mlflow
    import onnxruntime as ort
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow puts a SQLite store's artifacts under ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = _mlflow_spec(h, tmp_path, uri)
    result = h.cli(["train", spec, "-q", "--runs-dir", tmp_path / "runs", "--repo", tmp_path / "models", "--register", "iris-clf"])
    assert result.exit_code == 0, result.output
    run_dir = next((tmp_path / "runs" / "t").iterdir())
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]

    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "iris"
    assert run.data.params["training.optimizer.lr"] == "0.01"
    assert run.data.params["model.layers.0.out_features"] == "8"
    assert run.data.tags["nnspec.device"] == "cpu" and run.data.tags["nnspec.spec_hash"].startswith("sha256:")
    for name in ("train_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(run_id, name)
        assert sorted(m.step for m in history) == [1, 2, 3], name  # one value per epoch
    summary = json.loads((run_dir / "summary.json").read_text())
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["test"]["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"spec.yaml", "metrics.csv", "summary.json", "curves.png", "confusion.png"} <= artifacts

    # The logged ONNX model is the exported one: same outputs on the same rows.
    mlflow.set_tracking_uri(uri)
    logged = mlflow.onnx.load_model(run.data.tags["nnspec.model_uri"])
    registered = client.get_model_version("iris-clf", "1")
    assert registered.run_id == run_id
    rows = np.random.default_rng(0).normal(5, 2, size=(7, 4)).astype(np.float32)
    ours = ort.InferenceSession(str(tmp_path / "models" / "t" / "1" / "model.onnx")).run(None, {"input": rows})
    theirs = ort.InferenceSession(logged.SerializeToString()).run(None, {"input": rows})
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    signature = mlflow.models.get_model_info(run.data.tags["nnspec.model_uri"]).signature
    assert signature.inputs.input_names() == ["input"] and signature.outputs.input_names() == ["probabilities", "class_index"]


class _SilentServer:
    """A TCP port that accepts connections and never answers (a hung tracking server)."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __exit__(self, *exc):
        self.sock.close()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once it is closed


@pytest.mark.slow
@pytest.mark.parametrize("server", ["down", "hung"])
def test_an_unreachable_tracking_server_costs_one_warning(h, tmp_path, server):
    with _SilentServer() as hung:
        uri = hung if server == "hung" else _closed_port()
        spec = _mlflow_spec(h, tmp_path, uri)
        result = h.cli(["train", spec, "-q", "--runs-dir", tmp_path / "runs", "--repo", tmp_path / "models"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: MLflow tracking is off for the rest of this run: tracking server {uri} is unreachable "
        + result.stderr.split(" is unreachable ", 1)[1].rstrip("\n")]
    assert "model: " in result.stdout  # trained and exported as without tracking
    assert not (next((tmp_path / "runs" / "t").iterdir()) / "tracking.json").exists()


@pytest.mark.slow
def test_tensorboard_event_files_read_back(h, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nnspec.runtime.tracking import open_tracking, with_tracking
    from nnspec.runtime.train import train

    spec = with_tracking(h.load(tmp_path, h.base_spec(training={"epochs": 4})), ["tensorboard"])
    with open_tracking(spec) as tracking:
        result = train(spec, runs_dir=tmp_path / "runs", tracking=tracking)
    events = EventAccumulator(str(result.run_dir / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    for name in ("train_loss", "val_accuracy", "val_loss", "lr"):
        assert [e.step for e in events.Scalars(name)] == [1, 2, 3, 4], name
    assert events.Scalars("train_loss")[-1].value == pytest.approx(result.history[-1]["train_loss"], rel=1e-6)
    assert events.Tags()["graph"]  # the network's graph
    hparams = events.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in hparams
    assert events.Scalars("final/test_accuracy")[0].value == pytest.approx(result.summary["test"]["accuracy"], rel=1e-6)


@pytest.mark.slow
def test_training_without_tracking_imports_neither_tracker(h, tmp_path):
    spec = h.spec_file(tmp_path, h.base_spec(training={"epochs": 1}))
    code = ("import sys\nfrom nnspec.cli import main\nsys.argv = ['nnspec', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "loaded = [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard') or m == 'torch.utils.tensorboard']\n"
            "assert not loaded, loaded\n")
    proc = subprocess.run([sys.executable, "-c", code, "train", str(spec), "--quiet", "--runs-dir", str(tmp_path / "runs"),
                           "--repo", str(tmp_path / "models")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_tracking_options_that_cannot_work_are_one_line(h, tmp_path):
    spec = h.spec_file(tmp_path, h.base_spec())
    result = h.cli(["train", spec, "--register", "x"])
    assert result.exit_code == 2
    assert result.stderr == "--register needs MLflow tracking: add --track mlflow or training.tracking.mlflow to the spec\n"
    result = h.cli(["train", spec, "--track", "mlflow", "--register", "x", "--no-export"])
    assert result.exit_code == 2 and result.stderr == "--register logs the exported model: it cannot go with --no-export\n"
    result = h.cli(["train", "--resume", tmp_path, "--track", "tensorboard"])
    assert result.exit_code == 2 and result.stderr.startswith("--track cannot change a resumed run")
    result = h.cli(["export", tmp_path, "--register", "x"])
    assert result.exit_code == 2 and result.stderr == f"--register needs a run tracked with MLflow; {tmp_path} has no tracking.json\n"


@pytest.mark.slow
def test_a_resumed_run_goes_on_in_the_same_mlflow_run(h, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from nnspec.runtime.rundir import load_run
    from nnspec.runtime.tracking import open_tracking
    from nnspec.runtime.train import TrainingInterrupted, train

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 4, "tracking": {"mlflow": {"uri": uri}}}))

    def ctrl_c(row, epochs):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(TrainingInterrupted) as stopped, open_tracking(spec) as tracking:
        train(spec, runs_dir=tmp_path / "runs", on_epoch=ctrl_c, tracking=tracking)
    run_dir = stopped.value.run_dir
    run_id = json.loads((run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.status == "KILLED"

    resumed = load_run(run_dir)[0]
    with open_tracking(resumed) as tracking:
        train(resumed, resume=run_dir, tracking=tracking)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == [1, 2, 3, 4]
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == 1

    # `nnspec export` of a tracked run logs the model into the same MLflow run
    result = h.cli(["export", run_dir, "--repo", tmp_path / "models", "--register", "resumed"])
    assert result.exit_code == 0, result.output
    assert client.get_model_version("resumed", "1").run_id == run_id
    assert client.get_run(run_id).data.tags["nnspec.model_version"] == "t/1"
