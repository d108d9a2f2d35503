"""Dropout and normalisation layers (off or frozen in evaluation)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base import PositiveFloat, Probability, Shape
from .base import InitSpec, LayerBase, expect_rank


class DropoutSpec(LayerBase):
    """Zeroes single values with probability p while training."""

    type: Literal["dropout"] = Field(description="Selects dropout of single values.")
    p: Probability = Field(0.5, description="Probability of zeroing each value (each whole channel for dropout1d and dropout2d) while training; the rest are scaled by 1/(1-p); no effect in evaluation or the export.")
    _module: ClassVar[str] = "Dropout"
    _channels: ClassVar[tuple[int, str] | None] = None  # (rank, layout) of the maps whose channels drop whole

    def output_shape(self, in_shape: Shape) -> Shape:
        if self._channels:
            expect_rank(in_shape, (self._channels[0],), self._channels[1])
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return getattr(nn, self._module)(self.p)


class Dropout1dSpec(DropoutSpec):
    """Zeroes whole channels of (C, L) with probability p while training."""

    type: Literal["dropout1d"] = Field(description="Selects dropout of whole channels of (C, L) inputs.")
    _module: ClassVar[str] = "Dropout1d"
    _channels: ClassVar[tuple[int, str] | None] = (2, "(C, L)")


class Dropout2dSpec(DropoutSpec):
    """Zeroes whole channels of (C, H, W) with probability p while training."""

    type: Literal["dropout2d"] = Field(description="Selects dropout of whole channels of (C, H, W) inputs.")
    _module: ClassVar[str] = "Dropout2d"
    _channels: ClassVar[tuple[int, str] | None] = (3, "(C, H, W)")


class BatchNormSpec(LayerBase):
    """Batch normalisation over the channel/feature axis; 1d or 2d from the input's rank."""

    type: Literal["batch_norm"] = Field(description="Selects batch normalization.")
    momentum: Probability = Field(0.1, description="Weight of each training batch's statistics in the running mean and variance used for evaluation and the export.")
    eps: PositiveFloat = Field(1e-5, description="Added to the variance before the square root, for numerical stability.")

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (1, 2, 3), "(features,), (C, L) or (C, H, W)")
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
        return cls(in_shape[0], eps=self.eps, momentum=self.momentum)


class LayerNormSpec(LayerBase):
    """Layer normalisation over the last axis."""

    type: Literal["layer_norm"] = Field(description="Selects layer normalization over the last axis, with a learned scale and shift.")
    eps: PositiveFloat = Field(1e-5, description="Added to the variance before the square root, for numerical stability.")

    def output_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.LayerNorm(in_shape[-1], eps=self.eps)
