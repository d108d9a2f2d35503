"""Dropout and normalisation layers (off or frozen in evaluation)."""

from __future__ import annotations

from typing import Literal

from ..base import PositiveFloat, Probability, Shape
from .base import InitSpec, LayerBase, expect_rank


class DropoutSpec(LayerBase):
    """Zeroes single values with probability p while training."""

    type: Literal["dropout"]
    p: Probability = 0.5

    def output_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.Dropout(self.p)


class Dropout1dSpec(DropoutSpec):
    """Zeroes whole channels of (C, L) with probability p while training."""

    type: Literal["dropout1d"]

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (2,), "(C, L)")
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.Dropout1d(self.p)


class Dropout2dSpec(DropoutSpec):
    """Zeroes whole channels of (C, H, W) with probability p while training."""

    type: Literal["dropout2d"]

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (3,), "(C, H, W)")
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.Dropout2d(self.p)


class BatchNormSpec(LayerBase):
    """Batch normalisation over the channel/feature axis; 1d or 2d from the input's rank."""

    type: Literal["batch_norm"]
    momentum: Probability = 0.1
    eps: PositiveFloat = 1e-5

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (1, 2, 3), "(features,), (C, L) or (C, H, W)")
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
        return cls(in_shape[0], eps=self.eps, momentum=self.momentum)


class LayerNormSpec(LayerBase):
    """Layer normalisation over the last axis."""

    type: Literal["layer_norm"]
    eps: PositiveFloat = 1e-5

    def output_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.LayerNorm(in_shape[-1], eps=self.eps)
