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

    type: Literal["relu"]
    _module: ClassVar[str] = "ReLU"


class LeakyReluSpec(_Activation):
    """x for x > 0, negative_slope·x otherwise."""

    type: Literal["leaky_relu"]
    negative_slope: float = Field(0.01, ge=0, allow_inf_nan=False)
    _module: ClassVar[str] = "LeakyReLU"


class EluSpec(_Activation):
    """x for x > 0, alpha·(eˣ − 1) otherwise."""

    type: Literal["elu"]
    alpha: PositiveFloat = 1.0
    _module: ClassVar[str] = "ELU"


class GeluSpec(_Activation):
    """x·Φ(x)."""

    type: Literal["gelu"]
    _module: ClassVar[str] = "GELU"


class SiluSpec(_Activation):
    """x·σ(x) (swish)."""

    type: Literal["silu"]
    _module: ClassVar[str] = "SiLU"


class SigmoidSpec(_Activation):
    """1 / (1 + e⁻ˣ)."""

    type: Literal["sigmoid"]
    _module: ClassVar[str] = "Sigmoid"


class TanhSpec(_Activation):
    """tanh(x)."""

    type: Literal["tanh"]
    _module: ClassVar[str] = "Tanh"
