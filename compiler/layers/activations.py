"""Element-wise activations: the output shape is the input shape."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base import PositiveFloat, Shape
from .base import InitSpec, LayerBase


class _Activation(LayerBase):
    _module: ClassVar[str]

    def output_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return getattr(nn, self._module)(**self.model_dump(exclude={"type"}))


class ReluSpec(_Activation):
    """max(0, x)."""

    type: Literal["relu"] = Field(description="Selects the ReLU activation.")
    _module: ClassVar[str] = "ReLU"


class LeakyReluSpec(_Activation):
    """x for x > 0, negative_slope·x otherwise."""

    type: Literal["leaky_relu"] = Field(description="Selects the leaky ReLU activation.")
    negative_slope: float = Field(0.01, ge=0, allow_inf_nan=False, description="Slope for negative inputs; 0 is a plain ReLU.")
    _module: ClassVar[str] = "LeakyReLU"


class EluSpec(_Activation):
    """x for x > 0, alpha·(eˣ − 1) otherwise."""

    type: Literal["elu"] = Field(description="Selects the ELU activation.")
    alpha: PositiveFloat = Field(1.0, description="The value −alpha that large negative inputs approach.")
    _module: ClassVar[str] = "ELU"


class GeluSpec(_Activation):
    """x·Φ(x)."""

    type: Literal["gelu"] = Field(description="Selects the GELU activation (exact, not the tanh approximation).")
    _module: ClassVar[str] = "GELU"


class SiluSpec(_Activation):
    """x·σ(x) (swish)."""

    type: Literal["silu"] = Field(description="Selects the SiLU (swish) activation.")
    _module: ClassVar[str] = "SiLU"


class SigmoidSpec(_Activation):
    """1 / (1 + e⁻ˣ)."""

    type: Literal["sigmoid"] = Field(description="Selects the logistic sigmoid activation.")
    _module: ClassVar[str] = "Sigmoid"


class TanhSpec(_Activation):
    """tanh(x)."""

    type: Literal["tanh"] = Field(description="Selects the tanh activation.")
    _module: ClassVar[str] = "Tanh"
