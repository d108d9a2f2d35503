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
    monkeypatch.setattr(train_module, "_plots", lambda *args: None)
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


# --- streamed tables (in_memory: false) ------------------------------------------------------------

def _gappy(h, n=300, seed=3):
    frame = h.table(n, seed)
    frame.loc[[3, 7, 50, 200], "x2"] = np.nan
    frame.loc[[5, 9], "color"] = None
    return frame


@pytest.fixture
def small_batches(monkeypatch):
    """Record batches of a few dozen rows and shuffle windows of 64 rows, so that a small file streams in many parts."""
    import nnspec.compiler.tables as tables
    import nnspec.runtime.data as runtime_data

    monkeypatch.setattr(tables, "STREAM_BLOCK", 1 << 10)
    monkeypatch.setattr(tables, "STREAM_ROWS", 37)
    monkeypatch.setattr(runtime_data, "TABLE_BUFFER", 64)
    return 64


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_streamed_splits_hold_the_resident_rows(h, tmp_path, small_batches, kind):
    import torch

    from nnspec.runtime.data import Split, StreamedRows, prepare_data

    frame = _gappy(h)
    path = tmp_path / f"animals.{kind}"
    frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    specs = [h.load(tmp_path, h.table_spec(path, kind, data={"source": {"in_memory": flag}}), name=f"{flag}.yaml") for flag in (True, False)]
    resident, streamed = (prepare_data(spec) for spec in specs)
    assert isinstance(resident.train, Split) and isinstance(streamed.train, StreamedRows) and streamed.raw.x is None
    assert streamed.notes == resident.notes and streamed.raw.features == resident.raw.features  # the fills too
    np.testing.assert_allclose(streamed.x_norm.shift, resident.x_norm.shift, rtol=1e-5)
    for name in ("train", "validation", "test"):
        a, b = getattr(resident, name), getattr(streamed, name)
        np.testing.assert_allclose(torch.cat(list(b.inputs(7))).numpy(), a.x.numpy(), rtol=1e-4, atol=1e-5)
        assert torch.equal(a.y, b.y), name

    # an epoch: every training row once, in the permutation's order within each window of 64 rows
    perm = torch.randperm(len(resident.train), generator=torch.Generator().manual_seed(0))
    slices = [slice(i, min(i + 10, len(perm))) for i in range(0, len(perm), 10)]
    ys = torch.cat([yb for _, yb in streamed.train.batches(perm, slices)])
    order = perm.numpy()[np.argsort(perm.numpy() // small_batches, kind="stable")]
    assert sorted(order.tolist()) == list(range(len(perm))) and torch.equal(ys, resident.train.y[order])
    xs = torch.cat([xb for xb, _ in streamed.train.batches(perm, slices)])
    np.testing.assert_allclose(xs.numpy(), resident.train.x[order].numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_a_streamed_table_trains_and_exports_like_the_resident_one(h, tmp_path):
    from nnspec.runtime.export import export_run
    from nnspec.runtime.train import train

    path = h.write_csv(tmp_path, _gappy(h, 400))
    results = {}
    for flag in (True, False):
        spec = h.load(tmp_path, h.table_spec(path, data={"source": {"in_memory": flag}}, training={"epochs": 4, "deterministic": True}),
                      name=f"{flag}.yaml")
        results[flag] = train(spec, runs_dir=tmp_path / f"runs-{flag}", device="cpu")
    resident, streamed = results[True], results[False]
    # one window holds the whole split: the same batches, so the same run up to the normalization's float rounding
    assert [r["train_loss"] for r in streamed.history] == pytest.approx([r["train_loss"] for r in resident.history], rel=1e-4)
    assert streamed.summary["test"] == pytest.approx(resident.summary["test"], rel=1e-4)
    assert not (streamed.run_dir / "parity_rows.npy").exists()  # a streamed table's parity rows are read at export
    exported = export_run(streamed.run_dir, tmp_path / "models")
    manifest = json.loads((exported.path / "nnspec.json").read_text())
    assert manifest["parity"]["rows"] == 80 and manifest["features"] == json.loads((resident.run_dir / "data.json").read_text())["features"]


def test_a_streamed_csv_whose_later_block_breaks_a_column_type_is_one_line(h, tmp_path, small_batches):
    frame = h.table(300)
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[250, "x1"] = "oops"  # numeric in the first block, text later
    spec = h.spec_file(tmp_path, h.table_spec(h.write_csv(tmp_path, frame), data={"source": {"in_memory": False}}))
    result = h.cli(["validate", spec])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "data.source.path: cannot read animals.csv: In CSV column #0: Row #252" in line and "'oops'" in line
    assert "each CSV column typed by the first block" in line


def test_a_column_that_turns_to_text_after_the_first_block_is_categorical_in_memory(h, tmp_path, small_batches):
    frame = h.table(300)
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[250, "x1"] = "oops"  # numeric in the first block, text later: pandas reads text
    path = h.write_csv(tmp_path, frame)
    raw = CsvSource(type="csv", path=path.name, target="species").load(tmp_path, "classification")
    assert raw.features[0]["type"] == "categorical" and "oops" in raw.features[0]["categories"]
    assert raw.features[0]["categories"] == sorted(pd.read_csv(path)["x1"].astype(str).unique())
