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


# The YAML parser's words for the mistakes people make most, in plain words.
_PLAIN_YAML_ERRORS = (
    ("expected <block end>, but found", "this line is indented differently from the keys above it; "
                                        "keys of one mapping must start in the same column"),
    ("mapping values are not allowed here", "unexpected ':' here: this line is indented deeper than the key "
                                            "above it, or a value contains ': ' (quote such a value)"),
    ("found character '\\t' that cannot start any token", "a tab character: YAML indents with spaces only"),
    ("could not find expected ':'", "a key is missing its ':' (or the line is indented wrongly)"),
    ("found duplicate anchor", "an anchor (&name) is defined twice"),
    ("found undefined alias", "an alias (*name) refers to an anchor that is not defined above it"),
)


def _plain_words(problem: str) -> str | None:
    for token, words in _PLAIN_YAML_ERRORS:
        if problem.startswith(token):
            return f"YAML syntax error: {words}"
    return None


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
        plain = _plain_words(problem)
        if plain:
            raise SpecError([Issue((), plain, file, line, col)]) from None
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


MAX_SPEC_BYTES = 1024 * 1024  # a spec is a short text file; parsing a huge one takes minutes and gigabytes


def read_yaml_file(path: str | FsPath) -> tuple[Any, Positions]:
    """Read and parse a spec file; a missing, unreadable, huge or non-UTF-8 file is a SpecError."""
    path = FsPath(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError([Issue((), f"the file is {size / 1024**2:.1f} MiB; a spec is a text file of at most "
                                       f"{MAX_SPEC_BYTES // 1024**2} MiB", str(path), 1, 1)])
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError([Issue((), f"cannot read spec: {e.strerror or e}", str(path))]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise SpecError([Issue((), f"not UTF-8 text (byte 0x{raw[e.start]:02x}); save the spec as UTF-8",
                               str(path), line, column)]) from None
    return load_yaml(text, str(path))
