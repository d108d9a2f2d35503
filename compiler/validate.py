"""load_spec: YAML file (+ --set overrides) -> validated Spec, or a SpecError listing every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from nnspec.preprocessing import show_value

from .base import type_tag, union_members
from .data import DataError, DataInfo
from .errors import Issue, SpecError, did_you_mean
from .loader import Positions, load_yaml, read_yaml_file
from .rules import check_rules
from .spec import Spec

_KIND = {"layers": "layer", "source": "data source", "loss": "loss", "optimizer": "optimizer",
         "scheduler": "scheduler", "augmentation": "augmentation", "branches": "layer"}


def _models_at(loc: tuple) -> list[type[BaseModel]]:
    """The spec model classes that the pydantic location loc points into."""
    current: list = [Spec]
    for part in loc:
        nxt = []
        for tp in current:
            for m in union_members(tp):
                if isinstance(m, type) and issubclass(m, BaseModel):
                    if isinstance(part, str) and part in m.model_fields:
                        nxt.append(m.model_fields[part].annotation)
                    elif type_tag(m) == part:
                        nxt.append(m)
                elif get_origin(m) in (list, tuple) and isinstance(part, int):
                    args = get_args(m)
                    nxt.append(args[0] if get_origin(m) is list or args[-1] is Ellipsis else args[min(part, len(args) - 1)])
        current = nxt
    return [m for tp in current for m in union_members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]


_TYPE_NAMES = {"int", "float", "str", "bool", "list", "tuple", "dict", "none"}


def _data_path(loc: tuple, data: Any) -> tuple:
    """The part of a pydantic loc that exists in the data (dropping the parts that name union members)."""
    path, cur = [], data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            path.append(part)
            cur = cur[part]
        elif isinstance(cur, dict) and part == cur.get("type"):
            continue  # the discriminated union's tag, not a key
        elif isinstance(cur, dict) and isinstance(part, str) and part.isidentifier() and part not in _TYPE_NAMES:
            path.append(part)  # a missing key
            break
        else:
            break  # a union member's name, e.g. "literal['balanced']"
    return tuple(path)


def _message(err: dict, data: Any) -> tuple[tuple, str, bool]:
    """(data path, message, point at the key) for one pydantic error."""
    loc, kind, ctx = tuple(err["loc"]), err["type"], err.get("ctx") or {}
    path = _data_path(loc, data)
    if kind == "extra_forbidden":
        fields = sorted({f for m in _models_at(loc[:-1]) for f in m.model_fields})
        key = loc[-1]
        return path, f"unknown key '{key}'{did_you_mean(key, fields)}; valid keys: {', '.join(fields)}", True
    if kind == "missing":
        return path, f"missing required key '{loc[-1]}'", True
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        kind_word = next((_KIND[p] for p in reversed(path) if isinstance(p, str) and p in _KIND), "")
        choices = [c.strip().strip("'") for c in str(ctx.get("expected_tags", "")).split(",")]
        if kind == "union_tag_not_found":
            choices = [t for t in (type_tag(m) for m in _models_at(loc)) if t]
            return path, f"missing 'type'; valid {kind_word} types: {', '.join(choices)}", False
        tag = ctx.get("tag")
        return path + ("type",), f"unknown {kind_word} type '{tag}'{did_you_mean(tag, choices)}; valid: {', '.join(choices)}", False
    msg = err["msg"].removeprefix("Value error, ")
    msg = msg.replace("Input should be", "should be").replace("String should", "should")
    msg = msg[0].lower() + msg[1:] if msg else msg
    if kind == "literal_error":
        choices = [c.strip().strip("'") for c in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        return path, f"{msg}, got {show_value(err['input'])}{did_you_mean(err['input'], choices)}", False
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        tags = [t for t in (type_tag(m) for m in _models_at(loc)) if t]
        if tags and isinstance(err["input"], str):  # `- relu` where `- {type: relu}` is meant
            word = err["input"]
            hint = f"write {{type: {word}}}" if word in tags else (did_you_mean(word, tags).strip(" ()") or f"valid types: {', '.join(tags)}")
            return path, f"should be a mapping like {{type: ...}}, got the bare name {show_value(word)}; {hint}", False
        return path, f"should be a mapping of keys, got {show_value(err['input'])}", False
    if kind.endswith("_type") and isinstance(err.get("input"), (dict, list)):
        msg += ", got a " + ("mapping" if isinstance(err["input"], dict) else "list")
    elif kind != "value_error" and not isinstance(err.get("input"), (dict, list)):
        msg += f": {show_value(err['input'])}" if ", got " in msg else f", got {show_value(err['input'])}"
    return path, msg, False


def validation_issues(error: ValidationError, data: Any, positions: Positions) -> list[Issue]:
    """Every pydantic error as a positioned Issue; alternatives of one union merge into one line."""
    merged: dict[tuple, tuple[str, bool]] = {}
    for err in error.errors(include_url=False):
        path, message, at_key = _message(err, data)
        if path in merged and message not in merged[path][0]:
            message = f"{merged[path][0]}; or {message}"
        merged[path] = (message, at_key)
    return [positions.issue(path, message, at_key) for path, (message, at_key) in merged.items()]


def parse_override(text: str) -> tuple[tuple, Any]:
    """'training.optimizer.lr=0.01' -> (("training", "optimizer", "lr"), 0.01); the value is parsed as YAML."""
    if "=" not in text:
        raise SpecError([Issue((), "expected PATH=VALUE, e.g. training.optimizer.lr=0.01", f"--set {text}")])
    key, raw = text.split("=", 1)
    path = tuple(int(p) if p.isdigit() else p for p in key.replace("[", ".").replace("]", "").split(".") if p)
    if not path:
        raise SpecError([Issue((), "expected PATH=VALUE with a dotted path before '=', e.g. training.optimizer.lr=0.01", f"--set {text}")])
    try:
        value, _ = load_yaml(raw if raw.strip() else "''", f"--set {text}")
    except SpecError as e:  # a line and column inside the option mean nothing; the path does
        raise SpecError([Issue(path + i.path, i.message, f"--set {text}") for i in e.issues]) from None
    return path, value


def apply_overrides(data: Any, positions: Positions, overrides: list[str]) -> None:
    """Set each dotted-path override in data (in place), remembering where it came from."""
    if not isinstance(data, dict):
        return  # not a spec at all: validate_data says so
    for text in overrides:
        path, value = parse_override(text)
        label = f"--set {text}"
        cur = data
        for i, part in enumerate(path):
            here = path[: i + 1]
            if isinstance(cur, list):
                if not isinstance(part, int):
                    raise SpecError([Issue(path[:i], f"is a list; name an item by its index, 0 to {len(cur) - 1}", label)])
                if part >= len(cur):
                    raise SpecError([Issue(here, f"index out of range (the list has {len(cur)} items)", label)])
            elif isinstance(cur, dict):
                part = str(part)  # a mapping's keys are names, even `0`
                path = path[:i] + (part,) + path[i + 1:]
                here = path[: i + 1]
            else:
                raise SpecError([Issue(path[:i], "cannot set a key inside this value", label)])
            if i == len(path) - 1:
                cur[part] = value
                break
            if isinstance(cur, dict) and cur.get(part) is None:
                cur[part] = {}
                positions.overrides.setdefault(here, label)  # errors in what it created name it
            cur = cur[part]
        positions.overrides[path] = label


def _absolute_paths(data: Any, base: Path) -> None:
    """Data paths are relative to the spec's folder; make them absolute so a run folder can reuse the spec."""
    source = data.get("data", {}).get("source") if isinstance(data, dict) and isinstance(data.get("data"), dict) else None
    for key in ("path", "validation_path", "test_path"):
        if isinstance(source, dict) and isinstance(source.get(key), str):
            source[key] = str((base / source[key]).resolve())


def validate_data(data: Any, positions: Positions, base: Path, info: DataInfo | None = None) -> tuple[Spec, DataInfo]:
    """Validate parsed spec data completely: schema, data source, shapes and cross-field rules; `info`, when
    known (a trained run's data.json), stands for what the data source would tell about itself."""
    if not isinstance(data, dict):
        raise SpecError([positions.issue((), f"a spec is a mapping of sections (version, name, task, data, model, training), got {type(data).__name__}")])
    _absolute_paths(data, base)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(validation_issues(e, data, positions)) from None
    try:
        info = spec.data.describe(base, spec.task) if info is None else info
    except DataError as e:
        raise SpecError([positions.issue(e.path, e.message)]) from None
    issues = [positions.issue(path, message, layer_type=layer_type) for path, message, layer_type in check_rules(spec, info)]
    if issues:
        raise SpecError(issues)
    return spec, info


def load_spec_with_data(path: str | Path, overrides: list[str] | tuple = (), info: DataInfo | None = None) -> tuple[Spec, DataInfo]:
    """load_spec, also returning what the data source told about itself (`info`: already known, see validate_data)."""
    data, positions = read_yaml_file(path)
    apply_overrides(data, positions, list(overrides))
    return validate_data(data, positions, Path(path).resolve().parent, info)


def load_spec(path: str | Path, overrides: list[str] | tuple = ()) -> Spec:
    """Read, validate and check a spec file; raises SpecError listing every problem."""
    return load_spec_with_data(path, overrides)[0]
