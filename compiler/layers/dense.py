"""Fully connected and shape-only layers: linear, flatten, reshape."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from ..base import PositiveInt, Shape, shape_str
from ..errors import ShapeError
from .base import InitSpec, LayerBase, ParamLayer, expect_rank


class LinearSpec(ParamLayer):
    """y = xWᵀ + b on the last axis."""

    type: Literal["linear"]
    out_features: PositiveInt
    bias: bool = True

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (1, 2), "(features,) or (time, features)")
        return (*in_shape[:-1], self.out_features)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return self.initialised(nn.Linear(in_shape[-1], self.out_features, bias=self.bias), init)


class FlattenSpec(LayerBase):
    """All per-sample axes into one."""

    type: Literal["flatten"]

    def output_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.Flatten()


class ReshapeSpec(LayerBase):
    """A new per-sample shape with the same number of elements (batch axis excluded)."""

    type: Literal["reshape"]
    shape: list[PositiveInt] = Field(min_length=1)

    def output_shape(self, in_shape: Shape) -> Shape:
        if math.prod(self.shape) != math.prod(in_shape):
            raise ShapeError(
                f"cannot reshape {shape_str(in_shape)} ({math.prod(in_shape)} values) "
                f"to {shape_str(self.shape)} ({math.prod(self.shape)} values)"
            )
        return tuple(self.shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        from ..modules import Reshape

        return Reshape(self.shape)
