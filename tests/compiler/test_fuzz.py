"""Property: whatever a valid spec is mutated into, validation either accepts it or raises SpecError,
and every issue says where (a line and column in the file, or the --set option that caused it)."""

from __future__ import annotations

import copy
import io
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from nnspec.compiler import SpecError
from nnspec.compiler.augmentation import AugmentationSpec
from nnspec.compiler.data import DataSource
from nnspec.compiler.layers import LAYER_CLASSES
from nnspec.compiler.loader import load_yaml
from nnspec.compiler.losses import LossSpec
from nnspec.compiler.optimizers import OptimizerSpec
from nnspec.compiler.schedulers import SchedulerSpec
from nnspec.compiler.validate import apply_overrides, validate_data

REPO = Path(__file__).resolve().parents[2]
SPEC_FILES = sorted((REPO / "specs").rglob("*.yaml"))
PARSED = {p: load_yaml(p.read_text(encoding="utf-8"), str(p))[0] for p in SPEC_FILES}


def _tags(union) -> list[str]:
    members = typing.get_args(typing.get_args(union)[0]) if typing.get_origin(union) is typing.Annotated else union
    return [typing.get_args(m.model_fields["type"].annotation)[0] for m in members]


TAGS = sorted({*(_tags(LAYER_CLASSES)), *_tags(OptimizerSpec), *_tags(SchedulerSpec), *_tags(LossSpec),
               *_tags(DataSource), *_tags(AugmentationSpec)})
KEYS = ["type", "layers", "branches", "repeat", "p", "lr", "shape", "kernel_size", "out_features", "epochs", "path",
        "monitor", "warmup_epochs", "milestones", "class_weights", "name", "image_size", "stride", "padding", "x"]
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789 .-:[]{}#&*!|>'\"%@`,?", max_size=12)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 70), st.integers(-10**6, 10**4),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(-2, 2), WORDS, st.sampled_from(TAGS + KEYS),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(st.one_of(st.integers(-2, 16), SCALARS), max_size=4),
    st.dictionaries(st.sampled_from(KEYS) | WORDS, SCALARS, max_size=3),
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(TAGS)}, optional={"out_features": st.integers(-1, 12)}), max_size=2),
)


def _paths(node, path=()):
    """Every path in the data, containers and scalars alike."""
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, path + (i,))


def _get(node, path):
    for part in path:
        node = node[part]
    return node


def _mutate(spec, draw) -> None:
    paths = list(_paths(spec))
    kind = draw(st.sampled_from(["drop", "replace", "replace", "extra", "retype", "duplicate", "wrap"]))
    if kind == "drop":
        inner = [p for p in paths if p]
        if inner:
            path = draw(st.sampled_from(inner))
            del _get(spec, path[:-1])[path[-1]]
    elif kind == "replace":
        path = draw(st.sampled_from([p for p in paths if p]))
        _get(spec, path[:-1])[path[-1]] = draw(VALUES)
    elif kind == "extra":
        mappings = [p for p in paths if isinstance(_get(spec, p), dict)]
        target = _get(spec, draw(st.sampled_from(mappings)))
        target[draw(st.sampled_from(KEYS) | WORDS)] = draw(VALUES)
    elif kind == "retype":
        typed = [p for p in paths if isinstance(_get(spec, p), dict) and "type" in _get(spec, p)]
        if typed:
            _get(spec, draw(st.sampled_from(typed)))["type"] = draw(st.sampled_from(TAGS) | WORDS)
    elif kind == "duplicate":
        lists = [p for p in paths if isinstance(_get(spec, p), list) and _get(spec, p)]
        if lists:
            items = _get(spec, draw(st.sampled_from(lists)))
            items.insert(draw(st.integers(0, len(items))), copy.deepcopy(draw(st.sampled_from(items))))
    else:  # wrap a value in a list or a mapping
        path = draw(st.sampled_from([p for p in paths if p]))
        parent = _get(spec, path[:-1])
        parent[path[-1]] = draw(st.sampled_from([[parent[path[-1]]], {"type": parent[path[-1]]}]))


def _dump(data) -> str:
    out = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()


OVERRIDE_PATHS = ["training.optimizer.lr", "training.epochs", "model.layers.0.out_features", "model.layers.0",
                  "data.split.validation", "training.scheduler", "model.input.shape", "name", "data.source.name",
                  "training.loss.type", "model.layers.1.type", "export.opset", "training.augmentation.0.p"]


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_mutated_specs_fail_only_with_positioned_spec_errors(data):
    path = data.draw(st.sampled_from(SPEC_FILES), label="spec")
    spec = copy.deepcopy(PARSED[path])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        _mutate(spec, data.draw)
    text = _dump(spec)
    overrides = data.draw(st.lists(st.builds(lambda p, v: f"{p}={v}", st.sampled_from(OVERRIDE_PATHS),
                                             st.sampled_from(["-1", "0", "0.5", ".nan", "abc", "[1, 2]", "{type: relu}", "",
                                                              "!!python/name:os.system", "[", "null", "1e999"])),
                                   max_size=1), label="overrides")
    n_lines = text.count("\n") + 1
    try:
        parsed, positions = load_yaml(text, "fuzz.yaml")
        apply_overrides(parsed, positions, overrides)
        validate_data(parsed, positions, path.parent)
    except SpecError as e:
        assert e.issues
        for issue in e.issues:
            if issue.file.startswith("--set "):
                assert issue.file[len("--set "):] in overrides, issue
            else:
                assert issue.file == "fuzz.yaml", issue
                assert issue.line is not None and 1 <= issue.line <= n_lines, (str(issue), text)
                assert issue.column is not None and issue.column >= 1, str(issue)
            assert issue.message and "Traceback" not in issue.message
            line = str(issue)
            assert "\n" not in line, line
    # anything else escaping (TypeError, KeyError, RecursionError, ...) fails the property


def test_the_fuzzer_reaches_deep_paths_and_every_tag():
    """The mutation space includes nested container layers and every type tag."""
    deepest = max(len(p) for spec in PARSED.values() for p in _paths(spec))
    assert deepest >= 6
    assert {"residual", "concat", "sequential", "cosine", "adamw", "builtin", "huber", "random_shift"} <= set(TAGS)
