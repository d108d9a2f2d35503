"""The base of every spec model: closed (unknown keys are errors) and immutable."""

from __future__ import annotations

from typing import Annotated, TypeVar

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


T = TypeVar("T")
Pair = Annotated[tuple[T, T], Field(strict=False)]  # a 2-list in YAML; its items stay strictly typed


def shape_str(shape) -> str:
    """(1, 8, 8) as written in messages; a 1-tuple keeps its comma."""
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
