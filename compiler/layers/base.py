"""What every layer spec shares: output_shape (plain Python) and build (torch)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from nnspec.preprocessing import shape_text

from ..base import PositiveFloat, Shape, StrictModel
from ..errors import ShapeError

InitScheme = Literal["kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "normal", "zeros", "default"]


class InitSpec(StrictModel):
    """How weights and biases start: model-wide, overridable per layer."""

    weight: InitScheme = Field("default", description="Scheme for weight matrices and kernels: kaiming_normal/kaiming_uniform (for ReLU), xavier_normal/xavier_uniform, normal (std), zeros, or default (PyTorch's own).")
    bias: InitScheme = Field("default", description="Scheme for biases: zeros, normal (std) or default (PyTorch's own); the fan-based kaiming and xavier schemes need a matrix and leave biases at PyTorch's default.")
    std: PositiveFloat = Field(0.01, description="Standard deviation of the normal scheme, for weights and biases; unused by the other schemes.")

    def apply(self, module) -> None:
        """Initialise the weights and biases of module's own linear, conv and recurrent parameters."""
        import torch.nn as nn

        for name, param in module.named_parameters(recurse=False):
            kind = self.bias if name.startswith("bias") else self.weight
            if kind == "default" or (param.dim() < 2 and kind not in ("zeros", "normal")):
                continue  # fan-based schemes need a matrix; leave 1-D weights alone
            init = {
                "kaiming_normal": lambda p: nn.init.kaiming_normal_(p, nonlinearity="relu"),
                "kaiming_uniform": lambda p: nn.init.kaiming_uniform_(p, nonlinearity="relu"),
                "xavier_normal": nn.init.xavier_normal_,
                "xavier_uniform": nn.init.xavier_uniform_,
                "normal": lambda p: nn.init.normal_(p, std=self.std),
                "zeros": nn.init.zeros_,
            }[kind]
            init(param)


def expect_rank(in_shape: Shape, ranks: tuple[int, ...], layout: str) -> None:
    """Raise a ShapeError unless in_shape has one of the given ranks."""
    if len(in_shape) not in ranks:
        raise ShapeError(f"expects input {layout}, got {shape_text(in_shape)}")


def conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """PyTorch's output length for a convolution or pooling window."""
    return math.floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1


def pair(value) -> tuple[int, int]:
    """An int or a 2-list as a (h, w) pair."""
    return (value, value) if isinstance(value, int) else tuple(value)


class LayerBase(StrictModel):
    """A layer spec: knows its output shape without torch and builds its module with torch."""

    def output_shape(self, in_shape: Shape) -> Shape:  # pragma: no cover - abstract
        """The per-sample output shape for a per-sample input shape."""
        raise NotImplementedError

    def build(self, in_shape: Shape, init: InitSpec | None = None):  # pragma: no cover - abstract
        """The torch module for a per-sample input shape."""
        raise NotImplementedError

    def children(self) -> list[tuple[tuple, list]]:
        """Nested layer lists (containers only), as (path below this layer, layers)."""
        return []


class ParamLayer(LayerBase):
    """A layer with weights; `init` overrides the model-wide scheme."""

    init: InitSpec | None = Field(None, description="Initialization of this layer's weights and biases, replacing the model's and any enclosing container's; null inherits it.")

    def initialised(self, module, init: InitSpec | None):
        """module with this layer's (or the inherited) init applied."""
        scheme = self.init or init
        if scheme is not None:
            for sub in module.modules():
                scheme.apply(sub)
        return module
