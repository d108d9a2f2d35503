"""Spec errors: where (file, line, column, path), what, and what would be right."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

Path = tuple  # a path into the spec data: ("model", "layers", 3, "out_channels")


def format_path(path: Path) -> str:
    """Render ("model", "layers", 3, "kernel_size") as model.layers[3].kernel_size."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<spec>"


def did_you_mean(word: str, choices) -> str:
    """A ' did you mean X?' suffix when a choice is close to word (ignoring case), else ''."""
    by_lower = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean '{by_lower[close[0]]}'?)" if close else ""


@dataclass(frozen=True)
class Issue:
    """One problem in a spec: a path into its data and a message."""

    path: Path
    message: str
    file: str = "<spec>"
    line: int | None = None
    column: int | None = None
    layer_type: str | None = None  # shown after the path: model.layers[3] (conv2d)

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}:{self.column or 1}"
        kind = f" ({self.layer_type})" if self.layer_type else ""
        return f"{where}: {format_path(self.path)}{kind}: {self.message}"


@dataclass
class SpecError(Exception):
    """Every problem found in one spec, reported together."""

    issues: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


class ShapeError(ValueError):
    """A layer cannot take the shape it is given; containers and the walker prepend the path."""

    def __init__(self, message: str, path: Path = (), layer_type: str | None = None):
        super().__init__(message)
        self.message, self.path, self.layer_type = message, tuple(path), layer_type

    def within(self, prefix: Path, layer_type: str) -> "ShapeError":
        """The same error seen from one level up."""
        return ShapeError(self.message, tuple(prefix) + self.path, self.layer_type or layer_type)
