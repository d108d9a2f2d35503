"""The spec language reference (docs/SPEC_REFERENCE.md), generated from the schema so it cannot drift."""

from __future__ import annotations

import typing
from typing import get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .augmentation import AugmentationSpec
from .base import type_tag, union_members
from .data import DataSource, MissingSpec
from .layers import LAYER_CLASSES
from .losses import LossSpec
from .optimizers import OptimizerSpec
from .schedulers import SchedulerSpec
from .spec import (DataSpec, EarlyStoppingSpec, ExportSpec, InputSpec, ModelSpec, PreprocessingSpec,
                   RegularizationSpec, ServingSpec, Spec, SplitSpec, TrainingSpec)
from .layers import InitSpec
from .tracking import MlflowTracking, TensorBoardTracking, TrackingSpec


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _type_name(get_args(tp)[0])
    if origin is typing.Literal:
        return " \\| ".join(f"`{str(a).lower() if isinstance(a, bool) else a}`" for a in get_args(tp))  # YAML spells true/false
    if origin in (typing.Union, __import__("types").UnionType):
        args = get_args(tp)
        if any(isinstance(a, type) and issubclass(a, BaseModel) and "type" in a.model_fields for a in args):
            return "a `type:` mapping (below)"
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        inner = ", ".join(_type_name(a) for a in get_args(tp) if a is not Ellipsis)
        return f"list of {inner}" if origin is list else f"[{inner}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "mapping (below)"
    if isinstance(tp, typing.ForwardRef) or isinstance(tp, str):
        return "list of layers"
    return getattr(tp, "__name__", str(tp))


def _constraints(field) -> str:
    out = []
    for meta in field.metadata:
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"), ("min_length", "length ≥"), ("max_length", "length ≤"), ("pattern", "matches")):
            value = getattr(meta, attr, None)
            if value is not None:
                out.append(f"{sym} {value}")
    return ", ".join(out)


def _rows(model: type[BaseModel]) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name == "type":
            continue
        default = "**required**" if field.default is PydanticUndefined and field.default_factory is None else f"`{field.default!r}`"
        if isinstance(field.default, BaseModel):
            default = "defaults below"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{name}` | {_type_name(field.annotation)} | {default} | {_constraints(field)} | {meaning} |")
    return rows


def _section(title: str, model: type[BaseModel], level: str = "###") -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""
    lines = [f"{level} {title}", "", doc, ""]
    rows = _rows(model)
    if rows:
        lines += ["| key | type | default | constraint | meaning |", "|---|---|---|---|---|", *rows]
    else:
        lines.append("No options.")
    return lines + [""]


def _union(title: str, union) -> list[str]:
    lines = [f"## {title}", ""]
    for m in union_members(union):
        lines += _section(f"`type: {type_tag(m)}`", m)
    return lines


def reference_markdown() -> str:
    """The whole reference as markdown."""
    lines = ["# Spec language reference", "",
             "Generated from the schema by `python -m nnspec.compiler.reference > docs/SPEC_REFERENCE.md`; "
             "a test keeps it current. Unknown keys are errors everywhere.", ""]
    lines += ["## Sections", ""]
    for title, model in (("top level", Spec), ("data", DataSpec), ("data.split", SplitSpec), ("data.preprocessing", PreprocessingSpec),
                         ("data.preprocessing.missing", MissingSpec),
                         ("model", ModelSpec), ("model.input", InputSpec), ("model.init (and any layer's init)", InitSpec),
                         ("training", TrainingSpec), ("training.regularization", RegularizationSpec),
                         ("training.early_stopping", EarlyStoppingSpec), ("training.tracking", TrackingSpec),
                         ("training.tracking.mlflow", MlflowTracking), ("training.tracking.tensorboard", TensorBoardTracking), ("export", ExportSpec), ("serving", ServingSpec)):
        lines += _section(title, model)
    lines += _union("Data sources (data.source)", DataSource)
    lines += ["## Layers (model.layers)", ""]
    for m in LAYER_CLASSES:
        lines += _section(f"`type: {type_tag(m)}`", m)
    lines += _union("Losses (training.loss)", LossSpec)
    lines += _union("Optimizers (training.optimizer)", OptimizerSpec)
    lines += _union("Schedulers (training.scheduler)", SchedulerSpec)
    lines += _union("Augmentation (training.augmentation, a list)", AugmentationSpec)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference_markdown(), end="")
