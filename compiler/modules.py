"""The few torch modules PyTorch lacks; imported only when a spec builds (validation never needs torch)."""

from __future__ import annotations

import torch
import torch.nn as nn


class RecurrentOutput(nn.Module):
    """A batch-first RNN returning its whole output sequence or the last layer's final state per direction."""

    def __init__(self, rnn: nn.RNNBase, output: str):
        super().__init__()
        self.rnn, self.output = rnn, output

    def forward(self, x):
        seq, state = self.rnn(x)
        if self.output == "sequence":
            return seq
        h = state[0] if isinstance(state, tuple) else state  # LSTM's state is (h, c)
        if self.rnn.bidirectional:
            return torch.cat([h[-2], h[-1]], dim=-1)
        return h[-1]


class Reshape(nn.Module):
    """(batch, ...) -> (batch, *shape). Unlike nn.Unflatten, the batch axis stays dynamic when traced to ONNX
    (an Unflatten before a recurrent layer baked the export's example batch into its initial state)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={self.shape}"


class Residual(nn.Module):
    """x + f(x), with a learned projection of x when shapes differ."""

    def __init__(self, body: nn.Module, projection: nn.Module | None):
        super().__init__()
        self.body, self.projection = body, projection

    def forward(self, x):
        skip = x if self.projection is None else self.projection(x)
        return skip + self.body(x)


class Concat(nn.Module):
    """Runs branches on the same input and joins them on the feature/channel axis."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)
