"""Safe YAML with positions: anchors, aliases and merge keys work; --set overrides are validated like the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nnspec.compiler import SpecError, load_spec, load_spec_with_data
from nnspec.compiler.loader import load_yaml
from nnspec.compiler.validate import apply_overrides, parse_override

REPO = Path(__file__).resolve().parents[2]

# Anchors are defined where first used (the language has no free-form section to park them in).
ANCHORS = """\
version: 1
name: wine-anchors
task: classification
data:
  source: {type: builtin, name: wine}
model:
  layers:
    - &wide {type: linear, out_features: 16}
    - type: sequential
      repeat: 2
      layers: &block
        - {type: linear, out_features: 16}
        - {type: relu}
    - type: residual
      layers: *block
    - <<: *wide
      out_features: 3
training:
  epochs: 5
  loss: {type: cross_entropy}
  optimizer:
    <<: [&opt {type: sgd, lr: 0.05, momentum: 0.9}, {type: adam, nesterov: true}]
    lr: 0.1
"""


def _write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_anchors_aliases_and_merge_keys(tmp_path: Path):
    spec = load_spec(_write(tmp_path, ANCHORS))
    layers = spec.model.layers
    assert [layer.type for layer in layers] == ["linear", "sequential", "residual", "linear"]
    assert layers[1].repeat == 2 and [layer.type for layer in layers[1].layers] == ["linear", "relu"]
    assert layers[2].layers == layers[1].layers  # the same block by alias
    assert layers[3].out_features == 3  # an explicit key overrides the merged one
    # the first merged mapping wins over later ones; the mapping's own lr wins over both
    assert spec.training.optimizer.type == "sgd"
    assert spec.training.optimizer.momentum == 0.9 and spec.training.optimizer.nesterov is True
    assert spec.training.optimizer.lr == 0.1


def test_merged_values_are_reported_where_they_are_written(tmp_path: Path):
    path = _write(tmp_path, """\
        version: 1
        name: merged
        task: classification
        data:
          source: {type: builtin, name: iris}
        model:
          layers:
            - &hidden {type: linear, out_features: 8, dropout: 0.1}
            - <<: *hidden
              out_features: 3
        training:
          epochs: 3
          loss: {type: cross_entropy}
        """)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    lines = sorted(str(i) for i in e.value.issues)
    assert len(lines) == 2, lines
    # both unknown keys point at the anchor, where the key is written
    assert lines[0].startswith(f"{path}:8:47: model.layers[0].dropout: unknown key 'dropout'")
    assert lines[1].startswith(f"{path}:8:47: model.layers[1].dropout: unknown key 'dropout'")


def test_an_overridden_merged_key_keeps_its_own_position(tmp_path: Path):
    path = _write(tmp_path, """\
        version: 1
        name: merged
        task: classification
        data:
          source: {type: builtin, name: iris}
        model:
          layers:
            - &hidden {type: linear, out_features: 8}
            - <<: *hidden
              out_features: 0
        training:
          epochs: 3
          loss: {type: cross_entropy}
        """)
    with pytest.raises(SpecError) as e:
        load_spec(path)
    assert [str(i) for i in e.value.issues] == [
        f"{path}:10:21: model.layers[1].out_features: should be greater than or equal to 1, got 0"]


def test_example_spec_with_anchors_loads():
    spec = load_spec(REPO / "specs" / "digits_resnet.yaml")
    assert spec.model.layers[3].layers == spec.model.layers[4].layers[0].layers


def test_positions_of_values_and_keys():
    data, positions = load_yaml("a:\n  b: [1, {c: 2}]\n  d: x\n", "f.yaml")
    assert data == {"a": {"b": [1, {"c": 2}], "d": "x"}}
    assert positions[("a", "b", 1, "c")] == (2, 14)
    assert positions.keys[("a", "d")] == (3, 3)
    assert positions.locate(("a", "b", 1, "missing")) == (2, 10)
    assert str(positions.issue(("a", "d"), "bad")) == "f.yaml:3:6: a.d: bad"
    assert str(positions.issue(("a", "d"), "bad", at_key=True)) == "f.yaml:3:3: a.d: bad"


def test_plain_scalars_only():
    data, _ = load_yaml("a: 1\nb: 1.5\nc: true\nd: null\ne: text\nf: .inf\ng: 2024-01-02\n")
    assert data["a"] == 1 and data["b"] == 1.5 and data["c"] is True and data["d"] is None and data["f"] == float("inf")
    with pytest.raises(SpecError, match="not allowed"):
        load_yaml("a: !!set {x}\n")


def test_overrides_set_values_and_are_validated(tmp_path: Path):
    path = REPO / "specs" / "iris.yaml"
    spec = load_spec(path, ["training.optimizer.lr=0.5", "model.layers[0].out_features=32", "data.split.seed=7",
                            "training.scheduler={type: step, step_size: 3}"])
    assert spec.training.optimizer.lr == 0.5 and spec.model.layers[0].out_features == 32
    assert spec.data.split.seed == 7 and spec.training.scheduler.type == "step"
    with pytest.raises(SpecError) as e:
        load_spec(path, ["training.optimizer.lr=-1"])
    assert [str(i) for i in e.value.issues] == [
        "--set training.optimizer.lr=-1: training.optimizer.lr: should be greater than 0, got -1"]


def test_override_into_a_missing_section_names_the_option(tmp_path: Path):
    path = REPO / "specs" / "digits_mlp.yaml"  # no early_stopping section
    spec = load_spec(path, ["training.early_stopping.patience=3"])
    assert spec.training.early_stopping.patience == 3 and spec.training.early_stopping.monitor == "val_loss"
    with pytest.raises(SpecError) as e:
        load_spec(path, ["training.early_stopping.patience=0"])
    assert str(e.value) == ("--set training.early_stopping.patience=0: training.early_stopping.patience: "
                            "should be greater than or equal to 1, got 0")


def test_file_and_override_errors_are_reported_together(tmp_path: Path):
    path = _write(tmp_path, (REPO / "specs" / "iris.yaml").read_text().replace("epochs: 80", "epochs: 0"))
    with pytest.raises(SpecError) as e:
        load_spec(path, ["training.batch_size=0"])
    assert sorted(str(i) for i in e.value.issues) == [
        "--set training.batch_size=0: training.batch_size: should be greater than or equal to 1, got 0",
        f"{path}:18:11: training.epochs: should be greater than or equal to 1, got 0",
    ]


def test_parse_override():
    assert parse_override("training.optimizer.lr=1e-3") == (("training", "optimizer", "lr"), 1e-3)
    assert parse_override("model.layers[2].p=0.5") == (("model", "layers", 2, "p"), 0.5)
    assert parse_override("name=a=b") == (("name",), "a=b")
    assert parse_override("model.input.shape=[1, 8, 8]") == (("model", "input", "shape"), [1, 8, 8])
    assert parse_override("name=") == (("name",), "")


def test_overrides_never_share_aliased_values():
    data, positions = load_yaml("a: &x {v: 1}\nb: *x\n")
    apply_overrides(data, positions, ["a.v=2"])
    assert data == {"a": {"v": 2}, "b": {"v": 1}}


def test_data_paths_are_relative_to_the_spec(tmp_path: Path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("x1,x2,color,y\n1,2,red,a\n3,4,blue,b\n5,6,red,a\n7,8,blue,b\n")
    path = _write(tmp_path, """\
        version: 1
        name: table
        task: binary
        data:
          source: {type: csv, path: data/t.csv, target: y}
          split: {validation: 0.25, test: 0.25}
        model:
          layers: [{type: linear, out_features: 1}]
        training:
          epochs: 2
          loss: {type: bce}
        """)
    spec, info = load_spec_with_data(path)
    assert Path(spec.data.source.path) == (tmp_path / "data" / "t.csv").resolve()
    assert info.shape == (4,) and info.labels == ["a", "b"]  # two numeric columns and a one-hot color
    with pytest.raises(SpecError) as e:
        load_spec(path, ["data.source.target=z"])
    assert "data.source.target: no column 'z' in t.csv; columns: x1, x2, color, y" in str(e.value)


def test_a_huge_spec_is_refused_before_parsing(tmp_path: Path):
    path = tmp_path / "huge.yaml"
    with path.open("w") as f:  # 50 MB (sparse: only the size is read): parsing it would take minutes and gigabytes
        f.write("version: 1\n")
        f.truncate(50 * 1024 * 1024)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}:1:1: <spec>: the file is 50.0 MiB; a spec is a text file of at most 1 MiB"


def test_a_spec_that_is_not_utf8_names_the_byte(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("version: 1\nname: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value) == f"{path}:2:10: <spec>: not UTF-8 text (byte 0xe9); save the spec as UTF-8"
