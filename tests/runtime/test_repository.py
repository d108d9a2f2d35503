import json
import threading
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format

from nnspec.runtime import repository as r

MANIFEST = {"name": "m", "task": "regression", "input": {"name": "input", "shape": [3]},
            "outputs": [{"name": "values", "dtype": "float32", "shape": [2]}]}
GOOD = {"model.onnx": b"onnx"}
CLASSIFIER = {
    "name": "digits", "task": "classification",
    "input": {"name": "input", "dtype": "float32", "shape": [1, 8, 8]},
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [10]},
                {"name": "class_index", "dtype": "int64", "shape": []}],
    "serving": {"max_batch_size": 32, "max_queue_delay_ms": 1.5},
}


def test_publish_numbers_versions_and_writes_the_manifest_with_its_version(tmp_path):
    assert r.publish_version(tmp_path, "m", MANIFEST, GOOD) == (1, tmp_path / "m" / "1")
    version, path = r.publish_version(tmp_path, "m", MANIFEST, GOOD)
    written = json.loads((path / "nnspec.json").read_text())
    assert version == 2 and written["version"] == 2 and list(written)[:2] == ["name", "version"]
    assert written == MANIFEST | {"version": 2}
    assert r.list_models(tmp_path) == {"m": [1, 2]}
    assert r.latest_version(tmp_path, "m") == 2
    assert r.read_manifest(path)["name"] == "m"
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]


def test_publish_refuses_existing_version_unless_overwrite(tmp_path):
    r.publish_version(tmp_path, "m", MANIFEST, GOOD, version=3)
    with pytest.raises(r.RepositoryError, match="exists"):
        r.publish_version(tmp_path, "m", MANIFEST, GOOD, version=3)
    files = GOOD | {"README.md": b"new"}
    assert r.publish_version(tmp_path, "m", MANIFEST, files, version=3, overwrite=True)[0] == 3
    assert (tmp_path / "m" / "3" / "README.md").read_bytes() == b"new"
    assert r.publish_version(tmp_path, "m", MANIFEST, GOOD)[0] == 4  # max + 1


def test_publish_with_a_staging_callback_and_failures_leave_nothing(tmp_path):
    def stage(folder: Path):
        for name, data in GOOD.items():
            (folder / name).write_bytes(data)

    assert r.publish_version(tmp_path, "m", MANIFEST, stage)[0] == 1

    def broken(folder: Path):
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        r.publish_version(tmp_path, "m", MANIFEST, broken)
    with pytest.raises(r.RepositoryError, match="needs"):
        r.publish_version(tmp_path, "m", MANIFEST, {"README.md": b"x"})
    with pytest.raises(r.RepositoryError, match="written from the manifest"):
        r.publish_version(tmp_path, "m", MANIFEST, GOOD | {"nnspec.json": b"{}"})
    with pytest.raises(r.RepositoryError, match="from the folder"):
        r.publish_version(tmp_path, "m", MANIFEST | {"version": 1}, GOOD)
    with pytest.raises(r.RepositoryError, match="invalid file name"):
        r.publish_version(tmp_path, "m", MANIFEST, GOOD | {"../evil": b"x"})
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    results = []
    threads = [threading.Thread(target=lambda: results.append(r.publish_version(tmp_path, "m", MANIFEST, GOOD)[0]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))


def test_readers_ignore_incomplete_and_foreign_folders(tmp_path):
    r.publish_version(tmp_path, "m", MANIFEST, GOOD)
    (tmp_path / "m" / "7").mkdir()  # no model.onnx / nnspec.json
    (tmp_path / "m" / ".tmp-abc").mkdir()
    (tmp_path / "m" / "latest").mkdir()
    (tmp_path / "Bad Name").mkdir()
    (tmp_path / "empty").mkdir()
    assert r.list_models(tmp_path) == {"m": [1]}
    assert r.latest_version(tmp_path, "empty") is None
    assert r.list_models(tmp_path / "missing") == {}


@pytest.mark.parametrize("name", ["", "A", "-x", "../x", "a/b", "x y", "a.b", "é", None, 3])
def test_names_are_validated(tmp_path, name):
    with pytest.raises(r.RepositoryError, match="invalid model name"):
        r.version_dir(tmp_path, name, 1)


@pytest.mark.parametrize("version", [0, -1, "0", "01", "1.5", "../1", "x", True, 1.0, None, 10**19])
def test_versions_are_validated(tmp_path, version):
    with pytest.raises(r.RepositoryError, match="invalid version"):
        r.version_dir(tmp_path, "m", version)


def test_version_dir_accepts_ints_and_digit_strings(tmp_path):
    assert r.version_dir(tmp_path, "m-1_a", "12") == tmp_path / "m-1_a" / "12"
    assert r.check_version(5) == 5


def test_read_manifest_errors(tmp_path):
    with pytest.raises(r.RepositoryError, match="no manifest"):
        r.read_manifest(tmp_path)
    (tmp_path / "nnspec.json").write_text("{nope")
    with pytest.raises(r.RepositoryError, match="unreadable"):
        r.read_manifest(tmp_path)
    (tmp_path / "nnspec.json").write_text(json.dumps({"name": "m", "task": "x", "input": {"shape": [0]},
                                                      "outputs": []}))
    with pytest.raises(r.RepositoryError, match="positive ints"):
        r.read_manifest(tmp_path)


def test_config_pbtxt_parses_as_triton_model_config(h, tmp_path):
    pb2 = h.model_config_pb2()
    path = r.write_config_pbtxt(tmp_path, "digits", CLASSIFIER)
    config = text_format.Parse(path.read_text(), pb2.ModelConfig())
    assert config.name == "digits" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    assert config.dynamic_batching.max_queue_delay_microseconds == 1500
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [("input", pb2.TYPE_FP32, [1, 8, 8])]
    probs, index = config.output
    assert (probs.name, probs.data_type, list(probs.dims)) == ("probabilities", pb2.TYPE_FP32, [10])
    assert (index.name, index.data_type, list(index.dims)) == ("class_index", pb2.TYPE_INT64, [1])
    assert index.HasField("reshape") and list(index.reshape.shape) == []
    # The JSON form served at /v2/models/<name>/config is the same message.
    assert json_format.ParseDict(r.triton_config(CLASSIFIER), pb2.ModelConfig()) == config
    assert [p.name for p in tmp_path.joinpath("digits").iterdir()] == ["config.pbtxt"]
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a Triton server running as another user
