"""Convolutions and pooling over 1-D (C, L) and 2-D (C, H, W) inputs."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from nnspec.preprocessing import shape_text

from ..base import NonNegativeInt, Pair, PositiveInt, Shape
from ..errors import ShapeError
from .base import InitSpec, LayerBase, ParamLayer, conv_out, expect_rank, pair

IntOrPair = PositiveInt | Pair[PositiveInt]
IntOrPair0 = NonNegativeInt | Pair[NonNegativeInt]


def _spatial(in_shape, kernel, stride, padding, dilation, dims, what):
    """The output sizes after the channel axis; each setting is an int or, in 2-D, an int or a pair."""
    per_axis = [pair(v) if dims == 2 else (v,) for v in (kernel, stride, padding, dilation)]
    sizes = []
    for i in range(dims):
        k, s, p, d = (v[i] for v in per_axis)
        out = conv_out(in_shape[1 + i], k, s, p, d)
        if out < 1:
            raise ShapeError(f"{what} of size {per_axis[0] if dims == 2 else kernel} does not fit input {shape_text(in_shape)}")
        sizes.append(out)
    return tuple(sizes)


class _Conv(ParamLayer):
    out_channels: PositiveInt = Field(description="Output channels (filters).")
    stride: IntOrPair = Field(1, description="Step of the kernel: an int for both axes, or [height, width].")
    padding: IntOrPair0 = Field(0, description="Zeros added on both sides of each spatial axis: an int for both axes, or [height, width].")
    dilation: IntOrPair = Field(1, description="Spacing between kernel elements (1: adjacent): an int for both axes, or [height, width].")
    groups: PositiveInt = Field(1, description="Channel groups convolved separately; must divide the input and output channels (groups = input channels: depthwise).")
    bias: bool = Field(True, description="Learn an additive bias per output channel.")

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (self._dims + 1,), self._layout)
        if in_shape[0] % self.groups or self.out_channels % self.groups:
            raise ShapeError(f"groups={self.groups} must divide in_channels={in_shape[0]} and out_channels={self.out_channels}")
        return (self.out_channels, *_spatial(in_shape, self.kernel_size, self.stride, self.padding, self.dilation, self._dims, "kernel"))

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        cls = nn.Conv1d if self._dims == 1 else nn.Conv2d
        module = cls(in_shape[0], self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation, self.groups, self.bias)
        return self.initialised(module, init)


class Conv1dSpec(_Conv):
    """1-D convolution over (channels, length)."""

    type: Literal["conv1d"] = Field(description="Selects a 1-D convolution over (C, L).")
    kernel_size: PositiveInt = Field(description="Length of the kernel.")
    stride: PositiveInt = Field(1, description="Step of the kernel along the length.")
    padding: NonNegativeInt = Field(0, description="Zeros added on both ends of the length.")
    dilation: PositiveInt = Field(1, description="Spacing between kernel elements (1: adjacent).")
    _dims: ClassVar[int] = 1
    _layout: ClassVar[str] = "(C, L)"


class Conv2dSpec(_Conv):
    """2-D convolution over (channels, height, width)."""

    type: Literal["conv2d"] = Field(description="Selects a 2-D convolution over (C, H, W).")
    kernel_size: IntOrPair = Field(description="Kernel size: an int for a square, or [height, width].")
    _dims: ClassVar[int] = 2
    _layout: ClassVar[str] = "(C, H, W)"


class _Pool(LayerBase):
    kernel_size: IntOrPair = Field(description="Window size: an int for a square, or [height, width].")
    stride: IntOrPair | None = Field(None, description="Step of the window: an int for both axes, or [height, width]; null uses the kernel size (PyTorch's default).")
    padding: IntOrPair0 = Field(0, description="Implicit padding on both sides of each spatial axis, at most half the kernel size: an int for both axes, or [height, width].")

    @model_validator(mode="after")
    def _padding_fits(self):
        for k, p in zip(pair(self.kernel_size), pair(self.padding)):
            if p > k // 2:
                raise ValueError(f"padding {self.padding} must be at most half the kernel size {self.kernel_size}")
        return self

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (self._dims + 1,), self._layout)
        stride = self.stride if self.stride is not None else self.kernel_size
        return (in_shape[0], *_spatial(in_shape, self.kernel_size, stride, self.padding, 1, self._dims, "pooling window"))

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        cls = getattr(nn, self._module)
        return cls(self.kernel_size, self.stride, self.padding)


class MaxPool1dSpec(_Pool):
    """Max over windows of (C, L)."""

    type: Literal["max_pool1d"] = Field(description="Selects max pooling over (C, L).")
    kernel_size: PositiveInt = Field(description="Window length.")
    stride: PositiveInt | None = Field(None, description="Step of the window; null uses the kernel size (PyTorch's default).")
    padding: NonNegativeInt = Field(0, description="Implicit padding on both ends of the length, at most half the kernel size.")
    _dims: ClassVar[int] = 1
    _layout: ClassVar[str] = "(C, L)"
    _module: ClassVar[str] = "MaxPool1d"


class AvgPool1dSpec(MaxPool1dSpec):
    """Mean over windows of (C, L)."""

    type: Literal["avg_pool1d"] = Field(description="Selects average pooling over (C, L).")
    _module: ClassVar[str] = "AvgPool1d"


class MaxPool2dSpec(_Pool):
    """Max over windows of (C, H, W)."""

    type: Literal["max_pool2d"] = Field(description="Selects max pooling over (C, H, W).")
    _dims: ClassVar[int] = 2
    _layout: ClassVar[str] = "(C, H, W)"
    _module: ClassVar[str] = "MaxPool2d"


class AvgPool2dSpec(MaxPool2dSpec):
    """Mean over windows of (C, H, W)."""

    type: Literal["avg_pool2d"] = Field(description="Selects average pooling over (C, H, W).")
    _module: ClassVar[str] = "AvgPool2d"


class GlobalAvgPoolSpec(LayerBase):
    """Mean over every axis after the channels: (C, ...) -> (C,)."""

    type: Literal["global_avg_pool"] = Field(description="Selects the mean over every axis after the channels.")

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (2, 3), "(C, L) or (C, H, W)")
        return (in_shape[0],)

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        pool = nn.AdaptiveAvgPool1d(1) if len(in_shape) == 2 else nn.AdaptiveAvgPool2d(1)
        return nn.Sequential(pool, nn.Flatten())
