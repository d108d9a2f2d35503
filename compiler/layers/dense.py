"""Fully connected and shape-only layers: linear, flatten, reshape."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from nnspec.preprocessing import shape_text

from ..base import PositiveInt, Shape
from ..errors import ShapeError
from .base import InitSpec, LayerBase, ParamLayer, expect_rank


class LinearSpec(ParamLayer):
    """y = xWᵀ + b on the last axis."""

    type: Literal["linear"] = Field(description="Selects a fully connected layer on the last axis.")
    out_features: PositiveInt = Field(description="Size of the output's last axis.")
    bias: bool = Field(True, description="Learn an additive bias per output feature.")

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (1, 2), "(features,) or (time, features)")
        return (*in_shape[:-1], self.out_features)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return self.initialised(nn.Linear(in_shape[-1], self.out_features, bias=self.bias), init)


class FlattenSpec(LayerBase):
    """All per-sample axes into one."""

    type: Literal["flatten"] = Field(description="Selects flattening every per-sample axis into one.")

    def output_shape(self, in_shape: Shape) -> Shape:
        return (math.prod(in_shape),)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        return nn.Flatten()


class ReshapeSpec(LayerBase):
    """A new per-sample shape with the same number of elements (batch axis excluded)."""

    type: Literal["reshape"] = Field(description="Selects a reshape of each sample.")
    shape: list[PositiveInt] = Field(min_length=1, description="The new per-sample shape without the batch axis; it must hold as many values as the input.")

    def output_shape(self, in_shape: Shape) -> Shape:
        if math.prod(self.shape) != math.prod(in_shape):
            raise ShapeError(
                f"cannot reshape {shape_text(in_shape)} ({math.prod(in_shape)} values) "
                f"to {shape_text(self.shape)} ({math.prod(self.shape)} values)"
            )
        return tuple(self.shape)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        from ..modules import Reshape

        return Reshape(self.shape)
