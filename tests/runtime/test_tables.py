"""Lean tables (issue 16, part 4): CSV and Parquet read with pyarrow as pandas read them, each table read
once per command, the raw copy released, checkpoints written on a time budget."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import nnspec.compiler.data as source_data
from nnspec.compiler.data import CsvSource, ParquetSource
from nnspec.preprocessing import Categories
from nnspec.runtime.checkpoint import load_checkpoint


def _load(source, folder, task="classification"):
    return source.load(folder, task)


# --- reading: the kinds, spellings and gaps pandas gave ------------------------------------------

def test_a_csv_reads_as_pandas_read_it(tmp_path):
    """Booleans spelled True/False, dates kept as their text, pandas' missing cells (None, <NA>, NA, ...)
    as gaps, integers with gaps as numbers, and labels in numeric order when they are numbers."""
    (tmp_path / "t.csv").write_text(
        "n,flag,day,word,count,label\n"
        "1.5,True,2020-01-02,a,1,10\n"
        "2.5,False,2020-01-03,None,,9\n"
        "NA,true,2020-01-02,<NA>,3,10\n"
        "-1e3,FALSE,2021-12-31,b,4,100\n")
    source = CsvSource(type="csv", path="t.csv", target="label")
    raw = _load(source, tmp_path)
    by_name = {f["name"]: f for f in raw.features}
    assert by_name["n"] == {"name": "n", "type": "numeric", "missing": {"strategy": "median", "fill": None, "indicator": False}}
    assert by_name["flag"]["categories"] == ["False", "True"]
    assert by_name["day"]["categories"] == ["2020-01-02", "2020-01-03", "2021-12-31"]
    assert by_name["word"]["categories"] == ["a", "b", None]  # None and <NA> are missing cells, as in pandas
    assert by_name["count"]["type"] == "numeric"
    assert raw.labels == ["9", "10", "100"] and raw.y.tolist() == [1, 0, 1, 2]
    frame = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_array_equal(raw.x[:, 0], frame["n"].to_numpy(np.float32))
    assert raw.x.dtype == np.float32


def test_parquet_types_and_the_pandas_index(tmp_path):
    frame = pd.DataFrame({"x": np.arange(6, dtype=np.int64), "c": pd.Categorical(list("abcabc")),
                          "b": [True, False] * 3, "y": ["u", "v"] * 3}, index=[f"r{i}" for i in range(6)])
    frame.loc["r2", "x"] = np.nan
    frame.to_parquet(tmp_path / "t.parquet")
    raw = _load(ParquetSource(type="parquet", path="t.parquet", target="y"), tmp_path)
    assert [f["name"] for f in raw.features] == ["x", "c", "b"]  # the index column pandas wrote is not a feature
    assert raw.features[1]["categories"] == ["a", "b", "c"] and raw.features[2]["categories"] == ["False", "True"]
    assert np.isnan(raw.x[2, 0]) and raw.x[[0, 1, 3], 0].tolist() == [0, 1, 3]


def test_categories_encode_without_a_python_object_per_row():
    column = Categories(np.array([2, 0, -1, 1, 2], np.int32), ["red", "blue", "green"])
    assert column.present() == ["blue", "green", "red"]
    # rows: green, red, missing, blue, green
    assert column.offsets(["blue", "green", "red", None]).tolist() == [1, 2, 3, 0, 1]
    assert column.offsets(["red", "blue"]).tolist() == [-1, 0, -1, 1, -1]  # unknown and missing: no offset
    assert column[np.array([4, 2])].codes.tolist() == [2, -1]


def test_a_column_named_twice_is_refused(tmp_path):
    (tmp_path / "t.csv").write_text("a,a,y\n1,2,x\n3,4,z\n")
    with pytest.raises(source_data.DataError, match="cannot read t.csv: column 'a' appears twice in t.csv"):
        _load(CsvSource(type="csv", path="t.csv", target="y"), tmp_path)


# --- each table read once per command --------------------------------------------------------------

@pytest.fixture
def reads(monkeypatch):
    """Every file a table source reads, in order."""
    files = []
    original = source_data.read_csv

    def counting(path, target=None):
        files.append(path.name)
        return original(path, target)

    monkeypatch.setattr(source_data, "read_csv", counting)
    return files


@pytest.mark.slow
def test_nnspec_train_and_export_read_the_table_once(h, tmp_path, reads):
    spec = h.spec_file(tmp_path, h.table_spec(h.write_csv(tmp_path), training={"epochs": 2}))
    result = h.cli(["train", spec, "--runs-dir", tmp_path / "runs", "--repo", tmp_path / "models", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert reads == ["animals.csv"]  # validation read it and handed it on; the export's parity rows came with the run
    run = json.loads(result.stdout)["run_dir"]
    exported = h.cli(["export", run, "--repo", tmp_path / "models"])
    assert exported.exit_code == 0, exported.output
    assert reads == ["animals.csv"]
    manifest = json.loads((tmp_path / "models" / "animals" / "2" / "nnspec.json").read_text())
    assert manifest["parity"]["rows"] == 48  # the validation split (0.2 of 240 rows)


def test_a_changed_file_is_read_again(h, tmp_path, reads):
    path = h.write_csv(tmp_path)
    spec = h.load(tmp_path, h.table_spec(path))
    h.write_csv(tmp_path, h.table(200))  # changed between validation and training
    raw = spec.data.load(tmp_path, spec.task)
    assert reads == ["animals.csv", "animals.csv"] and len(raw.y) == 200


# --- checkpoints on a time budget ------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("seconds, writes", [(0.0, 4), (1e9, 1)])
def test_last_pt_is_written_on_a_time_budget_and_at_the_end(h, tmp_path, monkeypatch, seconds, writes):
    from nnspec.runtime import train as train_module

    monkeypatch.setattr(train_module, "CHECKPOINT_SECONDS", seconds)
    saved = []
    original = train_module.save_checkpoint
    monkeypatch.setattr(train_module, "save_checkpoint", lambda path, state: (saved.append((path.name, state["epoch"])),
                                                                                original(path, state)))
    spec = h.load(tmp_path, h.base_spec(training={"epochs": 4}))
    result = train_module.train(spec, runs_dir=tmp_path / "runs", device="cpu")
    last = [epoch for name, epoch in saved if name == "last.pt"]
    assert len(last) == writes and last[-1] == 4
    assert load_checkpoint(result.run_dir / "last.pt")["epoch"] == 4
    assert load_checkpoint(result.run_dir / "best.pt")["epoch"] == result.summary["best_epoch"]
    assert result.data.raw.x is None  # released before training
