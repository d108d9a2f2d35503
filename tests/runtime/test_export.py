"""ONNX export (issue 4): every layer and container passes parity at batch 1, 7 and 64; exported models
answer raw inputs (CSV rows with categories, PNG files, unscaled features) as PyTorch does; the
repository never serves a half-written version; every example's config.pbtxt is valid Triton."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from nnspec.compiler import load_spec, load_spec_with_data
from nnspec.compiler.base import type_tag, union_members
from nnspec.compiler.compile import compile_model
from nnspec.compiler.layers import LayerSpec
from nnspec.runtime import repository
from nnspec.runtime.data import prepare_data
from nnspec.runtime.export import PARITY_BATCHES, ExportError, ServingModel, check_parity, export_run, to_onnx
from nnspec.runtime.train import predict_logits, train

# --- every layer type and container, exported without training ----------------------------

ACTIVATIONS = [{"type": t} for t in ("relu", "elu", "gelu", "silu", "sigmoid", "tanh")] + [{"type": "leaky_relu", "negative_slope": 0.2}]

CASES = {  # name: (model.input.shape for the 64 digits values, layers)
    "mlp_every_activation": ([64], [x for act in ACTIVATIONS for x in ({"type": "linear", "out_features": 16}, act)]
                             + [{"type": "linear", "out_features": 10}]),
    "batch_norm_dropout_layer_norm": ([64], [
        {"type": "linear", "out_features": 32}, {"type": "batch_norm"}, {"type": "relu"}, {"type": "dropout", "p": 0.5},
        {"type": "layer_norm"}, {"type": "linear", "out_features": 10}]),
    "conv1d_pools": ([4, 16], [
        {"type": "conv1d", "out_channels": 6, "kernel_size": 3, "padding": 1}, {"type": "batch_norm"}, {"type": "relu"},
        {"type": "dropout1d", "p": 0.3}, {"type": "max_pool1d", "kernel_size": 2},
        {"type": "conv1d", "out_channels": 6, "kernel_size": 3, "stride": 1, "dilation": 2},
        {"type": "avg_pool1d", "kernel_size": 2}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
    "conv1d_global_pool_layer_norm": ([4, 16], [
        {"type": "conv1d", "out_channels": 8, "kernel_size": 5, "padding": 2}, {"type": "layer_norm"}, {"type": "gelu"},
        {"type": "global_avg_pool"}, {"type": "linear", "out_features": 10}]),
    "conv2d_pools": ([1, 8, 8], [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1}, {"type": "batch_norm"}, {"type": "relu"},
        {"type": "dropout2d", "p": 0.2}, {"type": "max_pool2d", "kernel_size": 2},
        {"type": "conv2d", "out_channels": 8, "kernel_size": [3, 1], "padding": [1, 0], "groups": 2},
        {"type": "avg_pool2d", "kernel_size": 2, "stride": 1}, {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
    "conv2d_global_pool": ([1, 8, 8], [
        {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "stride": 2}, {"type": "elu"},
        {"type": "global_avg_pool"}, {"type": "linear", "out_features": 10}]),
    "residual_with_and_without_projection": ([1, 8, 8], [
        {"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
                                        {"type": "batch_norm"}, {"type": "relu"}]},
        {"type": "residual", "layers": [{"type": "conv2d", "out_channels": 16, "kernel_size": 3, "stride": 2, "padding": 1},
                                        {"type": "batch_norm"}, {"type": "relu"}]},
        {"type": "global_avg_pool"},
        {"type": "residual", "layers": [{"type": "linear", "out_features": 12}, {"type": "tanh"}]},
        {"type": "linear", "out_features": 10}]),
    "residual_conv1d_projection": ([4, 16], [
        {"type": "residual", "layers": [{"type": "conv1d", "out_channels": 6, "kernel_size": 3, "stride": 2, "padding": 1}]},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
    "concat_features_and_channels": ([1, 8, 8], [
        {"type": "concat", "branches": [[{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1}],
                                        [{"type": "max_pool2d", "kernel_size": 3, "stride": 1, "padding": 1}],
                                        [{"type": "conv2d", "out_channels": 2, "kernel_size": 1}, {"type": "sigmoid"}]]},
        {"type": "flatten"},
        {"type": "concat", "branches": [[{"type": "linear", "out_features": 8}, {"type": "relu"}],
                                        [{"type": "linear", "out_features": 4}, {"type": "tanh"}], [{"type": "dropout", "p": 0.2}]]},
        {"type": "linear", "out_features": 10}]),
    "sequential_repeat_and_reshape": ([64], [
        {"type": "reshape", "shape": [4, 16]},
        {"type": "sequential", "repeat": 2, "layers": [{"type": "linear", "out_features": 16}, {"type": "silu"}]},
        {"type": "flatten"}, {"type": "linear", "out_features": 10}]),
}

RECURRENT = [  # (type, output, bidirectional, num_layers)
    ("gru", "last", False, 1), ("gru", "sequence", True, 2), ("lstm", "last", True, 2),
    ("lstm", "sequence", False, 2), ("rnn", "last", True, 1), ("rnn", "sequence", False, 2),
]
for kind, output, bi, layers in RECURRENT:
    head = [{"type": "flatten"}] if output == "sequence" else []
    CASES[f"{kind}_{output}_{'bi' if bi else 'uni'}_{layers}"] = ([8, 8], [
        {"type": kind, "hidden_size": 6, "output": output, "bidirectional": bi, "num_layers": layers,
         **({"dropout": 0.2} if layers > 1 else {})}, *head, {"type": "linear", "out_features": 10}])
CASES["reshape_then_gru"] = ([64], [{"type": "reshape", "shape": [16, 4]}, {"type": "gru", "hidden_size": 5, "num_layers": 2,
                                                                             "bidirectional": True, "output": "sequence"},
                                   {"type": "reshape", "shape": [160]}, {"type": "linear", "out_features": 10}])
CASES["rnn_relu_then_lstm"] = ([8, 8], [{"type": "rnn", "hidden_size": 5, "nonlinearity": "relu", "output": "sequence"},
                                        {"type": "lstm", "hidden_size": 4}, {"type": "linear", "out_features": 10}])


def _layer_types(layers: list) -> set:
    """Every `type:` in a layer list, containers' inner layers and branches included."""
    found = set()
    for layer in layers:
        found.add(layer["type"])
        found |= _layer_types(layer.get("layers", []))
        for branch in layer.get("branches", []):
            found |= _layer_types(branch)
    return found


def test_every_layer_type_has_an_export_parity_case():
    """A new layer type without a case in CASES (alone or inside a container) fails this test."""
    every = {type_tag(m) for m in union_members(LayerSpec)}
    tested = set().union(*(_layer_types(layers) for _, layers in CASES.values()))
    assert tested == every, (f"CASES: no export parity case for {sorted(every - tested)}; "
                             f"cases for types the union lacks: {sorted(tested - every)}")


def _randomize_norm_statistics(net: torch.nn.Module, seed: int) -> None:
    """Fresh batch norms are identities in eval mode; give them statistics so the export must carry them."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g))
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g))


def serving_for(h, folder, source: dict, shape, layers, task="classification", y_stats=None):
    """A ServingModel for a spec built from these layers, with random (but valid) normalization statistics."""
    spec, info = load_spec_with_data(h.spec_file(folder, h.base_spec(
        task=task, data={"source": source, "split": {"stratify": task != "regression"}},
        model={"input": {"shape": shape}, "layers": layers},
        training={"loss": {"type": {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}[task]}})))
    torch.manual_seed(0)
    net = compile_model(spec, info)
    _randomize_norm_statistics(net, 1)
    rng = np.random.default_rng(0)
    shift = rng.normal(5, 2, size=info.shape).astype(np.float32)
    scale = rng.uniform(0.5, 3, size=info.shape).astype(np.float32)
    y_shift, y_scale = y_stats or (None, None)
    model = ServingModel(net, task, shift, scale, spec.model.input_shape(info.shape), y_shift, y_scale).eval()
    return spec, info, model


def raw_rows(info, n=130, seed=1):
    """Raw-valued rows (0..16, like the digits' pixels), more than the largest parity batch."""
    return np.random.default_rng(seed).uniform(0, 16, size=(n, *info.shape)).astype(np.float32)


DIGITS = {"type": "builtin", "name": "digits"}


@pytest.mark.parametrize("case", CASES)
def test_every_layer_exports_with_parity_at_batch_1_7_and_64(h, tmp_path, case):
    shape, layers = CASES[case]
    spec, info, model = serving_for(h, tmp_path, DIGITS, shape, layers)
    onnx_bytes = to_onnx(model, info.shape, spec.task, spec.export.opset)
    rows = raw_rows(info)
    worst = check_parity(onnx_bytes, model, rows, spec.task, atol=1e-4)
    assert set(worst) == {"probabilities"} and worst["probabilities"] <= 1e-4
    graph = onnx.load_from_string(onnx_bytes).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["probabilities", "class_index"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [64]
    # the graph is the eval-mode network: probabilities are deterministic and sum to one
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    probs, index = session.run(None, {"input": rows})
    assert probs.shape == (130, 10) and index.shape == (130,) and index.dtype == np.int64
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    with torch.no_grad():
        ours = model(torch.from_numpy(rows))[0].numpy()
    np.testing.assert_allclose(probs, ours, atol=1e-4)


def test_parity_runs_every_batch_size_including_a_ragged_tail(h, tmp_path, monkeypatch):
    spec, info, model = serving_for(h, tmp_path, DIGITS, [64], CASES["batch_norm_dropout_layer_norm"][1])
    onnx_bytes = to_onnx(model, info.shape, spec.task, spec.export.opset)
    import onnxruntime as ort

    sizes = []
    real_run = ort.InferenceSession.run
    monkeypatch.setattr(ort.InferenceSession, "run", lambda self, names, feeds, *a: sizes.append(len(feeds["input"])) or real_run(self, names, feeds, *a))
    check_parity(onnx_bytes, model, raw_rows(info, n=130), spec.task, atol=1e-4)
    assert PARITY_BATCHES == (1, 7, 64)
    assert sizes == [1] * 130 + [7] * 18 + [4] + [64, 64, 2]


def test_binary_and_regression_heads_export_with_parity(h, tmp_path):
    spec, info, model = serving_for(h, tmp_path, {"type": "builtin", "name": "breast_cancer"}, [30],
                                    [{"type": "linear", "out_features": 8}, {"type": "relu"}, {"type": "linear", "out_features": 1}],
                                    task="binary")
    rows = raw_rows(info)
    onnx_bytes = to_onnx(model, info.shape, "binary", 18)
    assert check_parity(onnx_bytes, model, rows, "binary", 1e-5)["probabilities"] <= 1e-5
    probs = model(torch.from_numpy(rows))[0].detach()
    assert probs.shape == (130, 2) and torch.allclose(probs.sum(1), torch.ones(130))

    spec, info, model = serving_for(h, tmp_path, {"type": "builtin", "name": "diabetes"}, [10],
                                    [{"type": "linear", "out_features": 8}, {"type": "tanh"}, {"type": "linear", "out_features": 1}],
                                    task="regression", y_stats=(np.array([150.0], np.float32), np.array([70.0], np.float32)))
    rows = raw_rows(info)
    onnx_bytes = to_onnx(model, info.shape, "regression", 18)
    assert check_parity(onnx_bytes, model, rows, "regression", 1e-3)["values"] <= 1e-3
    with torch.no_grad():  # the target's standardization is undone inside the graph
        z = (torch.from_numpy(rows) - model.x_shift) / model.x_scale
        assert torch.allclose(model(torch.from_numpy(rows)), model.net(z) * 70 + 150)
    assert [o.name for o in onnx.load_from_string(onnx_bytes).graph.output] == ["values"]


def test_parity_failure_is_an_export_error_naming_the_output(h, tmp_path):
    spec, info, model = serving_for(h, tmp_path, DIGITS, [64], CASES["mlp_every_activation"][1])
    onnx_bytes = to_onnx(model, info.shape, spec.task, spec.export.opset)
    with torch.no_grad():
        model.net[-1].bias.add_(1.0 + torch.arange(10.0))  # torch moves on, the graph does not
    with pytest.raises(ExportError, match=r"output 'probabilities' max \|diff\|"):
        check_parity(onnx_bytes, model, raw_rows(info), spec.task, atol=1e-4)


# --- round trips on raw inputs ------------------------------------------------------------

@pytest.fixture(scope="module")
def table_model(h, tmp_path_factory):
    """The CSV classifier (string target, categorical column) trained and exported."""
    folder = tmp_path_factory.mktemp("table")
    csv_path = h.write_csv(folder)
    spec = h.load(folder, h.table_spec(csv_path))
    result = train(spec, runs_dir=folder / "runs", device="cpu")
    repo = folder / "models"
    exported = export_run(result.run_dir, repo)
    return {"folder": folder, "csv": csv_path, "result": result, "repo": repo, "exported": exported,
            "raw": prepare_data(spec).raw}  # training released its own raw copy


def _torch_probabilities(result, raw_x):
    x = torch.from_numpy(result.data.x_norm(raw_x).astype(np.float32))
    return torch.softmax(predict_logits(result.model, x), 1).numpy()


def test_csv_model_predicts_raw_csv_rows_like_pytorch_without_torch(h, table_model):
    repo, result = table_model["repo"], table_model["result"]
    proc = h.run_torch_free(["predict", "animals", table_model["csv"], "--repo", repo, "--json"])
    assert proc.returncode == 0, proc.stderr  # 99 would mean torch was imported
    predictions = json.loads(proc.stdout)["predictions"]
    raw = table_model["raw"]
    assert len(predictions) == len(raw.x) == 240
    expected = _torch_probabilities(result, raw.x)
    got = np.array([[p["probabilities"][label] for label in raw.labels] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["label"] for p in predictions] == [raw.labels[i] for i in expected.argmax(1)]
    truth = h.table()["species"].tolist()
    assert np.mean([p["label"] == t for p, t in zip(predictions, truth)]) > 0.85


def test_csv_model_manifest_describes_the_raw_table(h, table_model):
    path = table_model["exported"].path
    manifest = json.loads((path / "nnspec.json").read_text())
    assert manifest["version"] == 1 and manifest["name"] == "animals" and manifest["task"] == "classification"
    assert manifest["labels"] == ["cat", "fox", "owl"] and manifest["targets"] is None and manifest["image"] is None
    assert manifest["features"][1] == {"name": "color", "type": "categorical", "categories": h.COLORS}
    assert manifest["input"] == {"name": "input", "dtype": "float32", "shape": [5]}
    assert manifest["parity"]["batch_sizes"] == [1, 7, 64] and manifest["parity"]["max_abs_diff"]["probabilities"] <= 1e-4
    summary = table_model["result"].summary
    assert manifest["metrics"]["test"]["accuracy"] == pytest.approx(summary["test"]["accuracy"])
    assert {"nnspec", "torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    assert "# animals" in (path / "README.md").read_text()


@pytest.mark.slow
def test_image_folder_model_answers_png_files(h, tmp_path):
    from PIL import Image

    h.image_folder(tmp_path / "images", per_class=30)
    spec = h.image_spec(tmp_path, epochs=30)
    result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
    exported = export_run(result.run_dir, tmp_path / "models")
    assert json.loads((exported.path / "nnspec.json").read_text())["image"] == {"size": [16, 16], "color": "grayscale"}

    # new images: one of each pattern, and an RGB one at another size (the session converts and resizes)
    rng = np.random.default_rng(42)
    files = []
    for kind in h.IMAGE_CLASSES:
        path = tmp_path / f"{kind}.png"
        Image.fromarray(h.image_pattern(kind, 16, rng), mode="L").save(path)
        files.append(path)
    big = Image.fromarray(h.image_pattern("vertical", 16, rng), mode="L").convert("RGB").resize((32, 32), Image.Resampling.NEAREST)
    big.save(tmp_path / "big.png")
    files.append(tmp_path / "big.png")

    proc = h.run_torch_free(["predict", exported.path, *files, "--json"])
    assert proc.returncode == 0, proc.stderr
    predictions = json.loads(proc.stdout)["predictions"]
    assert len(predictions) == 4
    pixels = []
    for f in files:
        with Image.open(f) as img:
            pixels.append(np.asarray(img.convert("L").resize((16, 16), Image.Resampling.BILINEAR), dtype=np.float32)[None])
    expected = _torch_probabilities(result, np.stack(pixels))
    got = np.array([[p["probabilities"][c] for c in h.IMAGE_CLASSES] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p["label"] for p in predictions] == [h.IMAGE_CLASSES[i] for i in expected.argmax(1)]


@pytest.mark.slow
def test_standardized_breast_cancer_model_answers_raw_features(h, tmp_path):
    spec = load_spec(h.SPECS / "breast_cancer_logreg.yaml", ["training.epochs=5"])
    result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
    exported = export_run(result.run_dir, tmp_path / "models")
    raw = prepare_data(spec).raw.x[:50]
    assert raw.max() > 100  # unscaled features (e.g. areas in the hundreds)
    np.save(tmp_path / "rows.npy", raw)
    out = h.cli(["predict", "breast-cancer-logreg", tmp_path / "rows.npy", "--repo", tmp_path / "models", "--json"])
    assert out.exit_code == 0, out.output
    predictions = json.loads(out.stdout)["predictions"]
    # PyTorch on the standardized features, with the weights the export took (best.pt: early stopping restores it)
    z = torch.from_numpy(result.data.x_norm(raw).astype(np.float32))
    p = torch.sigmoid(predict_logits(result.model, z)).view(-1).numpy()
    got = np.array([q["probabilities"]["benign"] for q in predictions])
    np.testing.assert_allclose(got, p, atol=1e-5)
    assert [q["label"] for q in predictions] == ["benign" if v > 0.5 else "malignant" for v in p]
    assert np.mean([q["class_index"] for q in predictions] == result.data.raw.y[:50]) > 0.85
    assert exported.version == 1


# --- the model repository -----------------------------------------------------------------

def test_half_written_versions_are_never_latest(h, table_model, tmp_path):
    import shutil

    repo = tmp_path / "models"
    shutil.copytree(table_model["repo"], repo)
    folder = repo / "animals"
    staging = folder / ".tmp-abc"
    shutil.copytree(folder / "1", staging)  # a complete-looking copy, still being staged
    (folder / "5").mkdir()
    (folder / "5" / "model.onnx").write_bytes((folder / "1" / "model.onnx").read_bytes())  # no nnspec.json yet
    (folder / "notes").mkdir()
    assert repository.latest_version(repo, "animals") == 1
    assert repository.list_models(repo) == {"animals": [1]}
    # predict (no version given) takes version 1
    out = h.cli(["predict", "animals", table_model["csv"], "--repo", repo])
    assert out.exit_code == 0, out.output
    assert "animals v1" in out.stdout
    # a new export gets a fresh number past every integer folder, leaving the half-written one alone
    exported = export_run(table_model["result"].run_dir, repo)
    assert exported.version == 6 and repository.latest_version(repo, "animals") == 6
    assert sorted(p.name for p in (folder / "5").iterdir()) == ["model.onnx"]
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-") and p != staging]


def test_export_refuses_an_existing_version_unless_overwrite(h, table_model, tmp_path):
    run, repo = table_model["result"].run_dir, tmp_path / "models"
    first = h.cli(["export", run, "--repo", repo, "--version", "1"])
    assert first.exit_code == 0, first.output
    assert "version 1" in first.stdout
    onnx_before = (repo / "animals" / "1" / "model.onnx").read_bytes()
    second = h.cli(["export", run, "--repo", repo, "--version", "1"])
    assert second.exit_code == 2
    assert "exists" in second.stderr and "Traceback" not in second.output and len(second.stderr.strip().splitlines()) == 1
    assert (repo / "animals" / "1" / "model.onnx").read_bytes() == onnx_before
    with pytest.raises(repository.RepositoryError, match="exists"):
        export_run(run, repo, version=1)
    again = export_run(run, repo, version=1, overwrite=True)
    assert again.version == 1 and repository.list_versions(repo, "animals") == [1]
    third = h.cli(["export", run, "--repo", repo, "--version", "1", "--overwrite"])
    assert third.exit_code == 0, third.output
    assert not [p for p in (repo / "animals").iterdir() if p.name.startswith(".")]


# --- every example spec's Triton config ---------------------------------------------------

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("specs").glob("**/*.yaml"))


@pytest.fixture
def quick_runs(monkeypatch):
    """Early exit for the all-examples test: two batches per epoch, no plots, parity on 70 rows (batches 1, 7
    and 64 still all run). The config depends on the manifest only; training and parity are tested above."""
    from nnspec.runtime import export as export_module
    from nnspec.runtime import train as train_module

    slices = train_module.batch_slices
    monkeypatch.setattr(train_module, "batch_slices", lambda n, size: slices(n, size)[:2])
    monkeypatch.setattr(train_module, "_plots", lambda *args: None)
    monkeypatch.setattr(export_module, "PARITY_ROWS", 70)


@pytest.mark.slow
def test_every_example_exports_a_valid_triton_config(h, tmp_path, cached_mnist1d, quick_runs):
    from google.protobuf import text_format

    pb2 = h.model_config_pb2()
    assert len(EXAMPLES) >= 8
    repo = tmp_path / "models"
    for path in EXAMPLES:
        spec = load_spec(path)
        warmup = spec.training.scheduler.warmup_epochs if spec.training.scheduler else 0
        spec = load_spec(path, [f"training.epochs={warmup + 1}"])
        result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
        exported = export_run(result.run_dir, repo)
        manifest = json.loads((exported.path / "nnspec.json").read_text())
        text = (repo / spec.name / "config.pbtxt").read_text()
        config = text_format.Parse(text, pb2.ModelConfig())
        assert config.name == spec.name, path
        assert config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
        assert config.max_batch_size == spec.serving.max_batch_size
        assert config.dynamic_batching.max_queue_delay_microseconds == round(spec.serving.max_queue_delay_ms * 1000)
        (inp,) = config.input
        assert inp.name == "input" and inp.data_type == pb2.TYPE_FP32 and list(inp.dims) == manifest["input"]["shape"]
        outputs = {o.name: o for o in config.output}
        if spec.task == "regression":
            assert set(outputs) == {"values"} and list(outputs["values"].dims) == [1]
        else:
            assert set(outputs) == {"probabilities", "class_index"}, path
            assert list(outputs["probabilities"].dims) == [len(manifest["labels"])]
            assert outputs["class_index"].data_type == pb2.TYPE_INT64
            assert list(outputs["class_index"].dims) == [1] and list(outputs["class_index"].reshape.shape) == []
        graph = onnx.load(exported.path / "model.onnx").graph
        assert [o.name for o in graph.output] == list(outputs)
        assert 0 < manifest["parity"]["rows"] <= 70 and result.summary["epochs_run"] == warmup + 1
    assert sorted(repository.list_models(repo)) == sorted({load_spec(p).name for p in EXAMPLES})


def test_a_graph_that_fails_at_another_batch_size_is_an_export_error(h, tmp_path):
    """nn.Unflatten before a GRU bakes the trace's example batch (2) into the initial state: the graph runs at
    batch 2 only. Parity reports it as an ExportError (not onnxruntime's own exception, which is no RuntimeError)."""
    from nnspec.compiler.modules import RecurrentOutput

    spec, info, model = serving_for(h, tmp_path, DIGITS, [64], [{"type": "linear", "out_features": 10}])
    model.net = torch.nn.Sequential(torch.nn.Unflatten(1, (16, 4)), RecurrentOutput(torch.nn.GRU(4, 5, batch_first=True), "last"),
                                    torch.nn.Linear(5, 10)).eval()
    onnx_bytes = to_onnx(model, info.shape, spec.task, spec.export.opset)
    with pytest.raises(ExportError, match="the ONNX graph fails on a batch of 1: "):
        check_parity(onnx_bytes, model, raw_rows(info, n=2), spec.task, atol=1e-4)


def test_a_boolean_column_is_served_from_raw_csv_rows(h, tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    x, flag = rng.normal(size=160).round(3), rng.random(160) > 0.5
    pd.DataFrame({"x": x, "flag": flag, "y": np.where(flag ^ (x > 0), "a", "b")}).to_csv(tmp_path / "flags.csv", index=False)
    spec = h.load(tmp_path, h.base_spec(name="flags", data={"source": {"type": "csv", "path": "flags.csv", "target": "y"}},
                                        model={"layers": [{"type": "linear", "out_features": 8}, {"type": "relu"},
                                                          {"type": "linear", "out_features": 2}]},
                                        training={"epochs": 2}))
    result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
    assert result.data.raw.features[1] == {"name": "flag", "type": "categorical", "categories": ["False", "True"]}
    export_run(result.run_dir, tmp_path / "models")
    out = h.cli(["predict", "flags", tmp_path / "flags.csv", "--repo", tmp_path / "models", "--json"])
    assert out.exit_code == 0, out.stderr
    got = np.array([[p["probabilities"][c] for c in ("a", "b")] for p in json.loads(out.stdout)["predictions"]])
    np.testing.assert_allclose(got, _torch_probabilities(result, prepare_data(spec).raw.x), atol=1e-5)


def test_to_onnx_hides_the_deprecation_notice_but_not_tracer_warnings():
    import warnings

    from nnspec.runtime.export import to_onnx

    class DataDependent(torch.nn.Module):  # a Python branch on a tensor: the trace keeps one side only
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        to_onnx(DataDependent().eval(), (3,), "regression", 18)
        to_onnx(torch.nn.Linear(3, 1).eval(), (3,), "regression", 18)
    categories = [w.category for w in seen]
    assert torch.jit.TracerWarning in categories, [str(w.message)[:80] for w in seen]
    assert DeprecationWarning not in categories


@pytest.mark.slow
def test_export_copies_the_plots_and_keeps_a_real_validation_row_as_the_example(digits_run, tmp_path):
    from nnspec.compiler.compile import summarize
    from nnspec.runtime.data import raw_rows

    exported = export_run(digits_run.run_dir, tmp_path / "models")
    for plot in repository.PLOTS:  # what the model page shows
        assert (exported.path / plot).read_bytes() == (digits_run.run_dir / plot).read_bytes()
    manifest = json.loads((exported.path / "nnspec.json").read_text())
    spec, info = load_spec_with_data(digits_run.run_dir / "spec.yaml")
    row = raw_rows(spec, 1)[0]
    assert np.array(manifest["example"]).shape == (64,)
    np.testing.assert_array_equal(np.array(manifest["example"], dtype=np.float32), row)  # exact at float32
    assert manifest["parameters"] == summarize(spec, info)["total_params"] > 0
    assert f"{manifest['parameters']:,} parameters" in (exported.path / "README.md").read_text()


def test_a_table_or_image_version_keeps_no_example(h, table_model):
    assert "example" not in json.loads((table_model["exported"].path / "nnspec.json").read_text())
