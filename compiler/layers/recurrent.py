"""Recurrent layers over (time, features): gru, lstm, rnn."""

from __future__ import annotations

from typing import ClassVar, Literal

from ..base import PositiveInt, Probability, Shape
from .base import InitSpec, ParamLayer, expect_rank


class _Recurrent(ParamLayer):
    hidden_size: PositiveInt
    num_layers: PositiveInt = 1
    bidirectional: bool = False
    dropout: Probability = 0.0  # between stacked layers, as in PyTorch
    output: Literal["last", "sequence"] = "last"
    _module: ClassVar[str]

    def output_shape(self, in_shape: Shape) -> Shape:
        expect_rank(in_shape, (2,), "(time, features)")
        width = self.hidden_size * (2 if self.bidirectional else 1)
        return (width,) if self.output == "last" else (in_shape[0], width)

    def _extra(self) -> dict:
        return {}

    def build(self, in_shape: Shape, init: InitSpec | None = None):
        import torch.nn as nn

        rnn = getattr(nn, self._module)(
            in_shape[-1], self.hidden_size, num_layers=self.num_layers, batch_first=True,
            bidirectional=self.bidirectional, dropout=self.dropout if self.num_layers > 1 else 0.0, **self._extra(),
        )
        from ..modules import RecurrentOutput

        return RecurrentOutput(self.initialised(rnn, init), self.output)


class GruSpec(_Recurrent):
    """Gated recurrent unit."""

    type: Literal["gru"]
    _module: ClassVar[str] = "GRU"


class LstmSpec(_Recurrent):
    """Long short-term memory."""

    type: Literal["lstm"]
    _module: ClassVar[str] = "LSTM"


class RnnSpec(_Recurrent):
    """Elman RNN."""

    type: Literal["rnn"]
    nonlinearity: Literal["tanh", "relu"] = "tanh"
    _module: ClassVar[str] = "RNN"

    def _extra(self) -> dict:
        return {"nonlinearity": self.nonlinearity}
