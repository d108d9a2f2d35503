"""Your own data (issue 10): missing values filled inside the model, unseen categories, and the
validation and test sets a source brings itself (test_path, x_test/y_test, train/ and test/ folders)."""

import json

import numpy as np
import pandas as pd
import pytest

from nnspec.compiler import SpecError, load_spec_with_data
from nnspec.compiler.data import DataError
from nnspec.runtime.data import prepare_data, split_indices

GAPS = {"x2": [3, 7, 50, 120, 200], "color": [5, 9, 60]}  # frame positions of the empty cells


def gappy_table(h, n=240, seed=0):
    """h.table() with empty cells in a numeric column (x2) and a string column (color)."""
    frame = h.table(n, seed)
    for column, rows in GAPS.items():
        frame.loc[rows, column] = np.nan
    return frame


def _issues(error: SpecError) -> dict[str, str]:
    """{"LINE:COL path": message} of each issue."""
    return {f"{i.line}:{i.column} {'.'.join(map(str, i.path))}": i.message for i in error.issues}


def _train_rows(spec, data):
    """The training rows, drawn as the spec's split draws them."""
    split = spec.data.split
    return split_indices(len(data.raw.y), data.raw.y, split.validation, split.test, split.seed, split.stratify)[0]


def with_test_file(h, main, test, **changes):
    """h.table_spec over main with test_path; split.test stays at its default, which a fixed test set allows."""
    return h.merge(h.table_spec(main, data={"source": {"test_path": str(test)}, "split": {"test": 0.15}}), changes)


# --- validation: the settings and the splits ------------------------------------------------

@pytest.mark.parametrize("missing, where, words", [
    ({"numeric": "constant"}, "numeric", "constant fills gaps with fill_value"),
    ({"fill_value": 0.0}, "fill_value", "only numeric: constant uses fill_value (numeric is median)"),
])
def test_constant_and_fill_value_go_together(h, tmp_path, missing, where, words):
    spec = h.table_spec(h.write_csv(tmp_path, gappy_table(h)), data={"preprocessing": {"missing": missing}})
    with pytest.raises(SpecError) as info:
        h.load(tmp_path, spec)
    (path, message), = [(p, m) for p, m in _issues(info.value).items()]
    assert path.endswith(f"data.preprocessing.missing.{where}") and words in message


def test_gaps_are_known_when_the_spec_is_validated(h, tmp_path):
    path = h.write_csv(tmp_path, gappy_table(h))
    spec, info = load_spec_with_data(h.spec_file(tmp_path, h.table_spec(path, data={"preprocessing": {"missing": {"indicator": True}}})))
    x1, color, x2 = info.features
    assert "missing" not in x1  # no gaps: a missing value stays an error when served
    assert color["categories"] == [*h.COLORS, None] and color["missing"] == {"strategy": "missing_category"}
    assert x2["missing"] == {"strategy": "median", "fill": None, "indicator": True}  # the fill comes from training
    assert info.shape == (6,) and info.net_shape == (7,)  # the graph appends x2's was-missing column


def test_a_fixed_split_and_its_fraction_are_both_pointed_at(h, tmp_path):
    frame = h.table()
    main, test = h.write_csv(tmp_path, frame[:200]), h.write_csv(tmp_path, frame[200:], "animals_test.csv")
    text = h.yaml_text(h.table_spec(main, data={"source": {"test_path": str(test)}, "split": {"test": 0.3}}))
    with pytest.raises(SpecError) as info:
        h.load(tmp_path, text)
    lines = text.splitlines()
    issues = _issues(info.value)
    assert len(issues) == 2
    for where, message in issues.items():
        line = lines[int(where.split(":")[0]) - 1]
        if where.endswith("data.split.test"):
            assert "test: 0.3" in line and message == "test_path (animals_test.csv) brings its own test set (40 samples); remove split.test"
        else:
            assert where.endswith("data.source.test_path") and "animals_test.csv" in line and "remove one of them" in message


def test_npz_and_image_folder_splits_are_found_by_name(h, tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "signals.npz", x=rng.normal(size=(60, 4)), y=np.arange(60) % 3,
             x_test=rng.normal(size=(9, 4)), y_test=np.arange(9) % 3)
    npz = h.base_spec(data={"source": {"type": "npz", "path": "signals.npz"}, "split": {"test": 0.15}})
    assert load_spec_with_data(h.spec_file(tmp_path, npz))[1].fixed["test"].samples == 9
    with pytest.raises(SpecError) as info:
        h.load(tmp_path, npz, ["data.split.test=0.3"])
    assert {i.path for i in info.value.issues} == {("data", "split", "test"), ("data", "source", "path")}

    for part, count in (("train", 4), ("val", 2), ("test", 3)):
        h.image_folder(tmp_path / "images" / part, per_class=count, seed=count)
    images = h.base_spec(data={"source": {"type": "image_folder", "path": "images", "image_size": 16, "color": "grayscale"},
                               "split": {"validation": 0.15, "test": 0.15}},
                         model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]})
    _, info = load_spec_with_data(h.spec_file(tmp_path, images, "images.yaml"))
    assert info.labels == list(h.IMAGE_CLASSES) and {k: f.samples for k, f in info.fixed.items()} == {"validation": 6, "test": 9}


# --- loading and fitting ------------------------------------------------------------------------

def test_fills_are_fitted_on_the_training_split_only(h, tmp_path):
    frame = gappy_table(h)
    spec = h.load(tmp_path, h.table_spec(h.write_csv(tmp_path, frame)))
    data = prepare_data(spec)
    train = _train_rows(spec, data)
    x2 = frame["x2"].to_numpy(np.float32)
    median = np.nanmedian(x2[train])
    assert median != np.nanmedian(x2)  # the whole file would give another fill
    x2_column = 5  # x1, color (blue, green, red, missing), x2
    assert data.imputer.fill[x2_column] == median and np.isnan(data.imputer.fill[:x2_column]).all()
    assert data.raw.features[2]["missing"]["fill"] == pytest.approx(median)
    # the normalizer saw the filled training column, and the color gaps are a one-hot category of their own
    assert data.x_norm.shift[x2_column] == pytest.approx(np.where(np.isnan(x2[train]), median, x2[train]).mean(), rel=1e-5)
    assert data.raw.x[GAPS["color"], 4].tolist() == [1, 1, 1] and np.isnan(data.raw.x[GAPS["x2"], x2_column]).all()
    assert data.notes == ["color: 3 missing (1.2 %), kept as a category of their own",
                          f"x2: 5 missing (2.1 %), filled with median {median:.6g}"]


def test_mean_most_frequent_and_indicator(h, tmp_path):
    frame = gappy_table(h)
    missing = {"numeric": "mean", "categorical": "most_frequent", "indicator": True}
    spec = h.load(tmp_path, h.table_spec(h.write_csv(tmp_path, frame), data={"preprocessing": {"missing": missing}}))
    data = prepare_data(spec)
    train = _train_rows(spec, data)
    mode = frame["color"].iloc[train].mode()[0]
    color, x2 = data.raw.features[1:]
    assert color["categories"] == h.COLORS and color["missing"] == {"strategy": "most_frequent", "fill": mode}
    assert np.isnan(data.imputer.fill[0])  # x1 has no gaps, so no fill
    np.testing.assert_array_equal(data.imputer.fill[1:4], np.eye(3)[h.COLORS.index(mode)])
    assert data.imputer.fill[4] == pytest.approx(frame["x2"].iloc[train].mean(), rel=1e-6)
    assert x2["missing"]["indicator"] and data.imputer.indicate.tolist() == [4]
    filled = data.imputer(data.raw.x)
    assert filled.shape == (240, 6) and filled[:, 5].tolist() == frame["x2"].isna().astype(float).tolist()
    assert data.train.x.shape == (len(train), 6) and np.isfinite(data.train.x.numpy()).all()


def test_rows_without_a_target_are_dropped_with_a_note(h, tmp_path):
    frame = gappy_table(h)
    frame.loc[[10, 11], "species"] = np.nan
    data = prepare_data(h.load(tmp_path, h.table_spec(h.write_csv(tmp_path, frame))))
    assert len(data.raw.y) == 238 and data.notes[0] == "animals.csv: 2 rows without a target (species) dropped (file rows 12, 13)"


def test_unknown_categories_in_a_fixed_file(h, tmp_path):
    frame = h.table()
    frame.loc[210, "color"] = "purple"
    main, test = h.write_csv(tmp_path, frame[:200]), h.write_csv(tmp_path, frame[200:], "animals_test.csv")
    spec = with_test_file(h, main, test)
    with pytest.raises(SpecError, match=r"data.source.test_path: animals_test.csv: column 'color': unknown category 'purple' "
                                        r"\(file rows 12\), not in animals.csv"):
        h.load(tmp_path, spec)
    data = prepare_data(h.load(tmp_path, h.merge(spec, {"data": {"preprocessing": {"unknown_category": "ignore"}}})))
    assert data.raw.features[1]["unknown"] == "ignore"
    np.testing.assert_array_equal(data.raw.x[200 + 10, 1:4], [0, 0, 0])  # an all-zero one-hot


def test_fixed_sets_are_the_splits_exactly(h, tmp_path):
    frame = h.table()
    main, val, test = (h.write_csv(tmp_path, part, name) for part, name in
                       ((frame[:150], "a.csv"), (frame[150:190], "a_val.csv"), (frame[190:], "a_test.csv")))
    spec = h.load(tmp_path, with_test_file(h, main, test))
    data = prepare_data(spec)
    labels = data.raw.labels
    assert data.test.y.tolist() == [labels.index(s) for s in frame["species"][190:]]
    np.testing.assert_allclose(data.test.x.numpy(), data.x_norm(data.raw.x[150:]), rtol=1e-6)
    assert len(data.train) + len(data.validation) == 150  # the fraction comes from the main file alone
    assert data.splits == {"train": "80 % of a.csv (120 samples)", "validation": "fraction 0.2 of a.csv (30 samples)",
                           "test": "test_path a_test.csv (50 samples)"}
    both = h.load(tmp_path, with_test_file(h, main, test, data={"source": {"validation_path": str(val)}, "split": {"validation": 0.15}}),
                  name="both.yaml")
    data = prepare_data(both)
    assert (len(data.train), len(data.validation), len(data.test)) == (150, 40, 50)
    assert data.splits["train"] == "100 % of a.csv (150 samples)"


def test_npz_and_image_folder_splits_come_from_their_arrays_and_folders(h, tmp_path):
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(size=(60, 4)).astype(np.float32), rng.normal(size=(9, 4)).astype(np.float32)
    np.savez(tmp_path / "signals.npz", x=x, y=np.arange(60) % 3, x_test=x_test, y_test=np.arange(9) % 3,
             x_val=x[:6], y_val=np.arange(6) % 3)
    fixed = {"validation": 0.15, "test": 0.15}  # the defaults: the archive's own arrays are the splits
    data = prepare_data(h.load(tmp_path, h.base_spec(data={"source": {"type": "npz", "path": "signals.npz"}, "split": fixed})))
    assert (len(data.train), len(data.validation), len(data.test)) == (60, 6, 9)
    np.testing.assert_allclose(data.test.x.numpy(), data.x_norm(x_test), rtol=1e-6)
    assert data.splits["test"] == "x_test/y_test in signals.npz (9 samples)"
    np.savez(tmp_path / "half.npz", x=x, y=np.arange(60) % 3, x_test=x_test)
    with pytest.raises(SpecError, match="half.npz has 'x_test' but no 'y_test'; the test set needs both"):
        prepare_data(h.load(tmp_path, h.base_spec(data={"source": {"type": "npz", "path": "half.npz"}, "split": fixed}), name="half.yaml"))

    for part, count in (("train", 4), ("validation", 2), ("test", 3)):
        h.image_folder(tmp_path / "images" / part, per_class=count, seed=count)
    spec = h.load(tmp_path, h.base_spec(data={"source": {"type": "image_folder", "path": "images", "image_size": 16, "color": "grayscale"},
                                              "split": fixed | {"stratify": False}},
                                        model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]}), name="images.yaml")
    data = prepare_data(spec)
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 6, 9)
    assert data.splits == {"train": "100 % of images/train (12 samples)", "validation": "folder images/validation (6 samples)",
                           "test": "folder images/test (9 samples)"}


# --- trained, exported and served -----------------------------------------------------------------

def _v2_binary(client, name, x):
    header = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    response = client.post(f"/v2/models/{name}/infer", content=header + x.astype("<f4").tobytes(),
                           headers={"Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 200, response.text
    probabilities = next(o for o in response.json()["outputs"] if o["name"] == "probabilities")
    return np.array(probabilities["data"], np.float32).reshape(probabilities["shape"])


def _probabilities(predictions, labels):
    return np.array([[p["probabilities"][label] for label in labels] for p in predictions])


@pytest.mark.slow
def test_a_table_with_gaps_trains_with_defaults_and_serves_missing_values_like_pytorch(h, tmp_path):
    import torch
    from fastapi.testclient import TestClient

    from nnspec.runtime.checkpoint import load_checkpoint
    from nnspec.runtime.export import serving_model
    from nnspec.runtime.rundir import load_run
    from nnspec.service.app import create_app
    from nnspec.service.settings import Settings

    csv = h.write_csv(tmp_path, gappy_table(h))
    spec = h.spec_file(tmp_path, h.table_spec(csv, training={"epochs": 8}))
    repo = tmp_path / "models"
    trained = h.cli(["train", spec, "--runs-dir", tmp_path / "runs", "--repo", repo, "--json"])
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)  # stdout is the JSON alone; the data notes went to stderr
    assert "x2: 5 missing (2.1 %), filled with median" in trained.stderr and "color: 3 missing (1.2 %)" in trained.stderr
    assert summary["splits"]["test"] == "fraction 0.2 of animals.csv (48 samples)"
    manifest = json.loads((repo / "animals" / "1" / "nnspec.json").read_text())
    x1, color, x2 = manifest["features"]
    assert "missing" not in x1 and color["categories"][-1] is None and x2["missing"]["strategy"] == "median"
    assert manifest["input"]["shape"] == [6]
    assert "`x2` filled with median" in (repo / "animals" / "1" / "README.md").read_text()

    # PyTorch on the imputed rows: the manifest's fills by hand, the run's normalization and network
    fill = x2["missing"]["fill"]
    run = summary["run_dir"]
    run_spec, info = load_run(run)
    model = serving_model(run_spec, info, load_checkpoint(f"{run}/last.pt"))
    imputed = np.array([[0.3, 0, 0, 1, 0, fill], [-1.2, 0, 0, 0, 1, 47.5], [0.3, 0, 1, 0, 0, fill]], np.float32)
    with torch.no_grad():
        expected = torch.softmax(model.net((torch.from_numpy(imputed) - model.x_shift) / model.x_scale), 1).numpy()

    rows = [{"x1": 0.3, "color": "red", "x2": None},  # null
            {"x1": -1.2, "x2": 47.5},  # a left-out key
            {"x1": 0.3, "color": "green"}]
    with TestClient(create_app(Settings(repository=repo, intra_op_threads=1))) as client:
        response = client.post("/v1/models/animals:predict", json={"instances": rows})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(_probabilities(response.json()["predictions"], manifest["labels"]), expected, atol=1e-5)
        nan_rows = imputed.copy()
        nan_rows[[0, 2], 5] = np.nan  # what a Triton client sends for a missing number
        np.testing.assert_allclose(_v2_binary(client, "animals", nan_rows), expected, atol=1e-5)
        json_rows = [[None if np.isnan(v) else float(v) for v in row] for row in nan_rows]  # JSON spells NaN null
        answer = client.post("/v2/models/animals/infer", json={"inputs": [{"name": "input", "shape": [3, 6],
                                                                          "datatype": "FP32", "data": json_rows}]})
        assert answer.status_code == 200, answer.text
        probabilities = next(o for o in answer.json()["outputs"] if o["name"] == "probabilities")
        np.testing.assert_allclose(np.reshape(probabilities["data"], (3, -1)), expected, atol=1e-5)
        json_rows[1][0] = None  # x1 had no gaps in training: its null is refused
        refused = client.post("/v2/models/animals/infer", json={"inputs": [{"name": "input", "shape": [3, 6],
                                                                           "datatype": "FP32", "data": json_rows}]})
        assert refused.status_code == 400 and "[1][0]" in refused.text, refused.text
        refused = client.post("/v1/models/animals:predict", json={"instances": [{"x1": None, "color": "red", "x2": 1.0}]})
        assert refused.status_code == 400 and "instances[0].x1" in refused.text  # x1 had no gaps in training

    (tmp_path / "rows.csv").write_text("x1,color,x2\n0.3,red,\n-1.2,,47.5\n0.3,green,NA\n")
    predicted = h.cli(["predict", repo / "animals", tmp_path / "rows.csv", "--json"])
    assert predicted.exit_code == 0, predicted.output
    np.testing.assert_allclose(_probabilities(json.loads(predicted.stdout)["predictions"], manifest["labels"]), expected, atol=1e-5)


@pytest.mark.slow
def test_a_fixed_test_file_is_scored_on_exactly_its_rows(h, tmp_path):
    from nnspec.runtime.export import export_run
    from nnspec.runtime.train import train

    frame = gappy_table(h)
    test_frame = frame[180:].copy()
    test_frame.loc[test_frame.index[:3], "color"] = "purple"  # unseen in training: ignored, an all-zero one-hot
    main, test = h.write_csv(tmp_path, frame[:180]), h.write_csv(tmp_path, test_frame, "animals_test.csv")
    spec = h.load(tmp_path, with_test_file(h, main, test, data={"preprocessing": {"unknown_category": "ignore"}},
                                           training={"epochs": 8}))
    result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
    assert result.summary["splits"]["test"] == "test_path animals_test.csv (60 samples)"
    export_run(result.run_dir, tmp_path / "models")
    predicted = h.cli(["predict", "animals", test, "--repo", tmp_path / "models", "--json"])
    assert predicted.exit_code == 0, predicted.output
    probabilities = _probabilities(json.loads(predicted.stdout)["predictions"], result.data.raw.labels)
    truth = np.array([result.data.raw.labels.index(s) for s in test_frame["species"]])
    assert result.summary["test"]["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == truth))
    log_loss = -np.mean(np.log(probabilities[np.arange(len(truth)), truth]))
    assert result.summary["test"]["loss"] == pytest.approx(log_loss, rel=1e-4)


@pytest.mark.slow
def test_was_missing_columns_and_most_frequent_fills_happen_inside_the_graph(h, tmp_path):
    import onnx
    import torch

    from nnspec.runtime.export import export_run
    from nnspec.runtime.session import ModelSession
    from nnspec.runtime.train import predict_logits, train

    missing = {"numeric": "constant", "fill_value": -1.0, "categorical": "most_frequent", "indicator": True}
    spec = h.load(tmp_path, h.table_spec(h.write_csv(tmp_path, gappy_table(h)), data={"preprocessing": {"missing": missing}},
                                         training={"epochs": 2}))
    result = train(spec, runs_dir=tmp_path / "runs", device="cpu")
    exported = export_run(result.run_dir, tmp_path / "models")
    manifest = json.loads((exported.path / "nnspec.json").read_text())
    assert manifest["input"]["shape"] == [5]  # x1, color (3), x2: the was-missing column is made inside the graph
    graph_input = onnx.load(exported.path / "model.onnx").graph.input[0]
    assert [d.dim_value for d in graph_input.type.tensor_type.shape.dim][1:] == [5]
    assert manifest["features"][2]["missing"] == {"strategy": "constant", "fill": -1.0, "indicator": True}

    gaps = np.array([[0.1, np.nan, np.nan, np.nan, np.nan]], np.float32)  # a NaN block: most_frequent fills it
    imputed = result.data.imputer(gaps)
    assert imputed[0, 4:].tolist() == [-1.0, 1.0]  # the constant, then "was missing"
    expected = torch.softmax(predict_logits(result.model, torch.from_numpy(result.data.x_norm(imputed))), 1).numpy()
    session = ModelSession(exported.path)
    served = session.predict([{"x1": 0.1, "color": None, "x2": None}])
    np.testing.assert_allclose(_probabilities(served, manifest["labels"]), expected, atol=1e-5)
    np.testing.assert_allclose(session.run(gaps)["probabilities"], expected, atol=1e-5)
