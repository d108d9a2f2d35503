"""Containers: sequential (with repeat), residual (x + f(x)) and concat (parallel branches)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from nnspec.preprocessing import shape_text

from ..base import PositiveInt, Shape
from ..errors import ShapeError
from .base import InitSpec, LayerBase

if TYPE_CHECKING:
    from . import LayerSpec


def chain_shapes(layers, in_shape: Shape, prefix: tuple = ()) -> Shape:
    """Run output_shape through a layer list; errors carry the failing layer's path."""
    shape = tuple(in_shape)
    for i, layer in enumerate(layers):
        try:
            shape = layer.output_shape(shape)
        except ShapeError as e:
            raise e.within(prefix + (i,), layer.type) from None
    return shape


def build_chain(layers, in_shape: Shape, init: InitSpec | None):
    """An nn.Sequential of the built layers and its output shape."""
    import torch.nn as nn

    modules, shape = [], tuple(in_shape)
    for layer in layers:
        modules.append(layer.build(shape, init))
        shape = layer.output_shape(shape)
    return nn.Sequential(*modules), shape


class SequentialSpec(LayerBase):
    """A list of layers, optionally repeated (each repeat has its own weights)."""

    type: Literal["sequential"] = Field(description="Selects a block of layers, optionally repeated.")
    layers: list["LayerSpec"] = Field(min_length=1, description="The block's layers, in order.")
    repeat: PositiveInt = Field(1, description="Copies of the block chained one after another, each with its own weights.")
    init: InitSpec | None = Field(None, description="Initialization for every layer inside without an init of its own; null inherits the enclosing one.")

    def output_shape(self, in_shape: Shape) -> Shape:
        shape = tuple(in_shape)
        for _ in range(self.repeat):
            out = chain_shapes(self.layers, shape, ("layers",))
            if out == shape:
                break  # a block that keeps this shape keeps it on every further repeat
            shape = out
        return shape

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        blocks, shape = [], tuple(in_shape)
        for _ in range(self.repeat):
            block, shape = build_chain(self.layers, shape, self.init or init)
            blocks.append(block)
        return blocks[0] if self.repeat == 1 else nn.Sequential(*blocks)

    def children(self):
        return [(("layers",), self.layers)]


class ResidualSpec(LayerBase):
    """x + f(x); x goes through a learned projection when f changes the shape."""

    type: Literal["residual"] = Field(description="Selects a residual block x + f(x).")
    layers: list["LayerSpec"] = Field(min_length=1, description="The body f, in order; when it changes the shape, x goes through a learned bias-free projection (linear on the last axis, else a strided 1x1 convolution).")
    init: InitSpec | None = Field(None, description="Initialization for every layer inside without an init of its own; null inherits the enclosing one.")

    def output_shape(self, in_shape: Shape) -> Shape:
        out = chain_shapes(self.layers, in_shape, ("layers",))
        self._projection_kind(tuple(in_shape), out)
        return out

    @staticmethod
    def _projection_kind(in_shape: Shape, out: Shape):
        """None (identity), ('linear',) on the last axis, or ('conv', stride) for channel-first maps."""
        if in_shape == out:
            return None
        if len(in_shape) == len(out):
            if in_shape[:-1] == out[:-1]:
                return ("linear",)
            if len(in_shape) >= 2:
                strides = []
                for a, b in zip(in_shape[1:], out[1:]):
                    s = -(-a // b)  # a 1x1 conv with stride s maps a to ceil(a / s)
                    if -(-a // s) != b:
                        break
                    strides.append(s)
                else:
                    return ("conv", tuple(strides))
        raise ShapeError(f"cannot project the skip connection from {shape_text(in_shape)} to {shape_text(out)}; "
                         "keep the rank and shrink spatial axes by whole factors")

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        from ..modules import Residual

        body, out = build_chain(self.layers, in_shape, self.init or init)
        kind = self._projection_kind(tuple(in_shape), out)
        if kind is None:
            projection = None
        elif kind[0] == "linear":
            projection = nn.Linear(in_shape[-1], out[-1], bias=False)
        else:
            conv = nn.Conv1d if len(in_shape) == 2 else nn.Conv2d
            projection = conv(in_shape[0], out[0], 1, stride=kind[1], bias=False)
        return Residual(body, projection)

    def children(self):
        return [(("layers",), self.layers)]


class ConcatSpec(LayerBase):
    """Parallel branches on the same input, joined on the feature/channel axis (the first per-sample axis)."""

    type: Literal["concat"] = Field(description="Selects parallel branches joined on the feature/channel axis.")
    branches: list[list["LayerSpec"]] = Field(min_length=2, description="Two or more layer lists run on the same input; their outputs are joined on the first per-sample axis and must agree on the others.")
    init: InitSpec | None = Field(None, description="Initialization for every layer inside without an init of its own; null inherits the enclosing one.")

    def output_shape(self, in_shape: Shape) -> Shape:
        outs = [chain_shapes(branch, in_shape, ("branches", b)) for b, branch in enumerate(self.branches)]
        first = outs[0]
        for b, out in enumerate(outs[1:], start=1):
            if len(out) != len(first) or out[1:] != first[1:]:
                raise ShapeError(f"branch outputs must agree on every axis but the first; branches[0] gives "
                                 f"{shape_text(first)}, branches[{b}] gives {shape_text(out)}")
        return (sum(o[0] for o in outs), *first[1:])

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        from ..modules import Concat

        return Concat([build_chain(branch, in_shape, self.init or init)[0] for branch in self.branches])

    def children(self):
        return [(("branches", b), branch) for b, branch in enumerate(self.branches)]
