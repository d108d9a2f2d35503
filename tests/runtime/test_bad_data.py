"""Bad data ends `nnspec train` with exit code 2 and a one-line error naming the problem, never a traceback."""

import numpy as np
import pytest


def _table(h, tmp_path, frame, **source):
    path = h.write_csv(tmp_path, frame)
    return h.spec_file(tmp_path, h.table_spec(path, **source))


def _missing_file(h, tmp_path):
    return h.spec_file(tmp_path, h.table_spec(tmp_path / "nowhere.csv")), "nowhere.csv does not exist"


def _missing_target(h, tmp_path):
    return _table(h, tmp_path, h.table().drop(columns=["species"])), "no column 'species' in animals.csv; columns: x1, color, x2"


_REFUSE_GAPS = {"preprocessing": {"missing": {"numeric": "error", "categorical": "error"}}}


def _nans(h, tmp_path):
    frame = h.table()
    frame.loc[[3, 7], "x2"] = np.nan
    frame.loc[[4], "color"] = np.nan
    path = h.write_csv(tmp_path, frame)
    spec = h.spec_file(tmp_path, h.table_spec(path, data=_REFUSE_GAPS))
    # every refused column is named, not just the first
    return spec, "animals.csv: column 'color' has missing values (file rows 6); column 'x2' has missing values (file rows 5, 9)"


def _one_class(h, tmp_path):
    frame = h.table()
    frame["species"] = "cat"
    return _table(h, tmp_path, frame), "the data has only one class (cat); a classifier needs at least two"


def _not_an_image(h, tmp_path):
    root = h.image_folder(tmp_path / "images", per_class=3)
    (root / "vertical" / "broken.png").write_bytes(b"this is not a PNG file")
    spec = h.base_spec(name="images", data={"source": {"type": "image_folder", "path": "images", "image_size": 16, "color": "grayscale"},
                                            "split": {"validation": 0.2, "test": 0.2, "stratify": False}},
                       model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 3}]})
    return h.spec_file(tmp_path, spec), "broken.png: not a decodable image"


def _npz_missing_array(h, tmp_path):
    np.savez(tmp_path / "data.npz", features=np.zeros((10, 4)), y=np.arange(10) % 2)
    spec = h.base_spec(data={"source": {"type": "npz", "path": "data.npz"}})
    return h.spec_file(tmp_path, spec), "no array 'x' in data.npz; arrays: features, y"


def _npz_lengths(h, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 4)), y=np.arange(9) % 3)
    return h.spec_file(tmp_path, h.base_spec(data={"source": {"type": "npz", "path": "data.npz"}})), "'x' has 10 rows but 'y' has 9"


def _npz_one_hot_labels(h, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 4)), y=np.eye(2)[np.arange(10) % 2])
    spec = h.base_spec(data={"source": {"type": "npz", "path": "data.npz"}})
    return h.spec_file(tmp_path, spec), "class labels 'y' need one label per sample, shape (N,); got shape (10, 2)"


def _npz_one_value_per_sample(h, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros(10), y=np.arange(10) % 2)
    spec = h.base_spec(data={"source": {"type": "npz", "path": "data.npz"}})
    return h.spec_file(tmp_path, spec), "'x' needs one row per sample, shape (N, ...); got shape (10,)"


def _npz_string_regression_targets(h, tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((10, 4)), y=np.array(["a", "b"] * 5))
    spec = h.base_spec(task="regression", data={"source": {"type": "npz", "path": "data.npz"}, "split": {"stratify": False}},
                       training={"loss": {"type": "mse"}}, model={"layers": [{"type": "linear", "out_features": 1}]})
    return h.spec_file(tmp_path, spec), "regression targets 'y' must be numeric, got dtype <U1"


def _parquet_nans_with_a_string_index(h, tmp_path):
    frame = h.table()
    frame.loc[[3, 7], "x2"] = np.nan
    frame.index = [f"r{i}" for i in range(len(frame))]
    frame.to_parquet(tmp_path / "animals.parquet")
    spec = h.table_spec(tmp_path / "animals.parquet", "parquet", data=_REFUSE_GAPS)
    return h.spec_file(tmp_path, spec), "column 'x2' has missing values (rows 4, 8)"


def _string_regression_target(h, tmp_path):
    spec = h.table_spec(h.write_csv(tmp_path), task="regression", training={"loss": {"type": "mse"}},
                        model={"layers": [{"type": "linear", "out_features": 1}]}, data={"split": {"stratify": False}})
    return h.spec_file(tmp_path, spec), "regression target 'species' must be numeric"


def _empty_image_folder(h, tmp_path):
    (tmp_path / "images" / "a").mkdir(parents=True)
    (tmp_path / "images" / "b").mkdir()
    (tmp_path / "images" / "a" / "notes.txt").write_text("no images here")
    spec = h.base_spec(data={"source": {"type": "image_folder", "path": "images", "image_size": 8}},
                       model={"layers": [{"type": "flatten"}, {"type": "linear", "out_features": 2}]})
    return h.spec_file(tmp_path, spec), "no images"


def _unreadable_csv(h, tmp_path):
    (tmp_path / "animals.csv").write_bytes(b'x1,species\n"1,cat\n')
    return h.spec_file(tmp_path, h.table_spec(tmp_path / "animals.csv")), "cannot read animals.csv"


CASES = {f.__name__.strip("_"): f for f in (_missing_file, _missing_target, _nans, _one_class, _not_an_image, _npz_missing_array,
                                            _npz_lengths, _npz_one_hot_labels, _npz_one_value_per_sample,
                                            _npz_string_regression_targets, _parquet_nans_with_a_string_index,
                                            _string_regression_target, _empty_image_folder, _unreadable_csv)}


@pytest.mark.parametrize("case", CASES)
def test_bad_data_exits_2_with_a_one_line_error(h, tmp_path, case):
    spec, expected = CASES[case](h, tmp_path)
    runs = tmp_path / "runs"
    result = h.cli(["train", spec, "--runs-dir", runs, "--no-export", "--quiet"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.output and result.stdout == ""
    assert not runs.exists()  # nothing half-made is left behind


@pytest.mark.slow
def test_a_bad_image_found_only_while_training_fails_cleanly_in_a_real_process(h, tmp_path):
    spec, expected = _not_an_image(h, tmp_path)
    proc = h.run_nnspec(["train", spec, "--runs-dir", tmp_path / "runs", "--no-export", "--quiet"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().startswith("error: ") and expected in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_missing_spec_file_exits_2(h, tmp_path):
    result = h.cli(["train", tmp_path / "nope.yaml", "--no-export"])
    assert result.exit_code == 2 and "cannot read spec" in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_an_unwritable_runs_dir_exits_2_with_one_line(h, tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder should be")
    spec = h.SPECS / "iris.yaml"
    result = h.cli(["train", spec, "--runs-dir", blocker, "--no-export", "--quiet", "--set", "training.epochs=1"])
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
