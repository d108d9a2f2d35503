"""Safe YAML loading that remembers where every key and value came from."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .errors import Issue, SpecError

_PLAIN_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"


class Positions(dict):
    """Maps a data path to (line, column) of its value, and key paths to their key."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.keys: dict[tuple, tuple[int, int]] = {}
        self.overrides: dict[tuple, str] = {}  # paths set with --set, and the option that set them

    def locate(self, path: tuple, at_key: bool = False) -> tuple[int | None, int | None]:
        """The closest known position for path (walking up to its parents)."""
        path = tuple(path)
        if at_key and path in self.keys:
            return self.keys[path]
        while path:
            if path in self:
                return self[path]
            path = path[:-1]
        return self.get((), (None, None))

    def issue(self, path: tuple, message: str, at_key: bool = False, layer_type: str | None = None) -> Issue:
        """An Issue at path with this file's line and column (or the --set option that wrote it)."""
        path = tuple(path)
        for i in range(len(path), 0, -1):
            if path[:i] in self.overrides:
                return Issue(path, message, self.overrides[path[:i]], layer_type=layer_type)
        line, col = self.locate(path, at_key)
        return Issue(path, message, self.file, line, col, layer_type)


def _short(tag) -> str:
    """tag:yaml.org,2002:python/name:os.system as written: !!python/name:os.system."""
    return str(tag).replace("tag:yaml.org,2002:", "!!", 1)


def _mark(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Builder:
    """Turns a composed node graph into plain dicts/lists, refusing non-data tags."""

    def __init__(self, yaml: YAML, positions: Positions):
        self.yaml, self.positions, self.issues = yaml, positions, []

    def build(self, node, path: tuple) -> Any:
        self.positions[path] = _mark(node)
        tag = str(node.tag)
        plain = tag in _PLAIN_TAGS if isinstance(node, ScalarNode) else tag == (_SEQ if isinstance(node, SequenceNode) else _MAP)
        if not plain:
            self.issues.append(self.positions.issue(path, f"tag '{_short(node.tag)}' is not allowed: a spec is data, never code"))
            return None
        if isinstance(node, ScalarNode):
            return self.yaml.constructor.construct_object(node)
        if isinstance(node, SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            out: dict = {}
            # Merge keys (`<<: *anchor` or `<<: [*a, *b]`) first, so that the mapping's own keys
            # override them and keep their own positions; an earlier merged mapping wins over a later one.
            for key_node, value_node in node.value:
                if str(key_node.tag) != _MERGE:
                    continue
                own = self.positions[path]
                sources = self.build(value_node, path)
                self.positions[path] = own  # the mapping stays where it is written
                sources = sources if isinstance(sources, list) else [sources]
                if not all(isinstance(m, dict) for m in sources):
                    self.issues.append(self.positions.issue(path, "a merge key (<<) takes a mapping or a list of mappings"))
                for m in sources:
                    for k, v in m.items() if isinstance(m, dict) else ():
                        out.setdefault(k, v)
            explicit: set = set()
            for key_node, value_node in node.value:
                if str(key_node.tag) == _MERGE:
                    continue
                if not isinstance(key_node, ScalarNode):
                    self.issues.append(self.positions.issue(path, "mapping keys must be plain names"))
                    continue
                key = self.build(key_node, path + ("<key>",))
                if not isinstance(key, str):
                    key = str(key)
                self.positions.keys[path + (key,)] = _mark(key_node)
                if key in explicit:
                    self.issues.append(self.positions.issue(path + (key,), f"duplicate key '{key}'", at_key=True))
                explicit.add(key)
                out[key] = self.build(value_node, path + (key,))
            return out
        raise TypeError(f"unexpected YAML node {node!r}")  # pragma: no cover


def load_yaml(text: str, file: str = "<spec>") -> tuple[Any, Positions]:
    """Parse YAML text safely into plain data plus the position of every value."""
    positions = Positions(file)
    yaml = YAML(typ="safe", pure=True)
    try:
        node = yaml.compose(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = str(e.problem or e.context)
        if e.context and e.problem:  # e.g. "while parsing a flow mapping", and where that began
            where = e.context_mark
            started = f" that starts at line {where.line + 1}" if where is not None and where.line + 1 != line else ""
            problem += f" ({e.context}{started})"
        raise SpecError([Issue((), f"YAML syntax error: {problem}", file, line, col)]) from None
    except YAMLError as e:
        raise SpecError([Issue((), f"YAML syntax error: {e}", file, 1, 1)]) from None
    if node is None:
        raise SpecError([Issue((), "the file is empty; a spec is a mapping with version, name, task, data, model, training", file, 1, 1)])
    builder = _Builder(yaml, positions)
    data = builder.build(node, ())
    if builder.issues:
        raise SpecError(builder.issues)
    return data, positions


def read_yaml_file(path: str | FsPath) -> tuple[Any, Positions]:
    """Read and parse a spec file; a missing or unreadable file is a SpecError."""
    path = FsPath(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([Issue((), f"cannot read spec: {e.strerror if isinstance(e, OSError) else e}", str(path))]) from None
    return load_yaml(text, str(path))
