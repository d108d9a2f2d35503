"""The base of every spec model: closed (unknown keys are errors) and immutable."""

from __future__ import annotations

import types
import typing
from typing import Annotated, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field

Shape = tuple[int, ...]


class StrictModel(BaseModel):
    """A spec section: extra keys forbidden, frozen, and strictly typed: `true` is no integer, "0.1" no
    number and 1 no boolean (an int is still a valid float). Fixed-length lists use Pair, since YAML has no tuples."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


T = TypeVar("T")
Pair = Annotated[tuple[T, T], Field(strict=False)]  # a 2-list in YAML; its items stay strictly typed


def union_members(tp) -> list:
    """The concrete types a field annotation allows (Annotated and unions unwrapped)."""
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return union_members(get_args(tp)[0])
    if origin in (Union, types.UnionType):
        return [m for a in get_args(tp) if a is not type(None) for m in union_members(a)]
    return [tp]


def type_tag(model) -> str | None:
    """The `type:` value that selects a spec class in its union (None for a class without one)."""
    field = model.model_fields.get("type")
    return get_args(field.annotation)[0] if field is not None and get_args(field.annotation) else None
