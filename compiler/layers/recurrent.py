"""Recurrent layers over (time, features): gru, lstm, rnn."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ..base import PositiveInt, Probability, Shape
from .base import InitSpec, ParamLayer, expect_rank


class _Recurrent(ParamLayer):
    hidden_size: PositiveInt = Field(description="Features of the hidden state, per direction.")
    num_layers: PositiveInt = Field(1, description="Recurrent layers stacked, each reading the previous one's output sequence.")
    bidirectional: bool = Field(False, description="Also run backwards in time and concatenate both directions' features, doubling the output width.")
    dropout: Probability = Field(0.0, description="Dropout on the outputs of every stacked layer but the last while training, as in PyTorch; ignored when num_layers is 1.")
    output: Literal["last", "sequence"] = Field("last", description="last: the last layer's final hidden state, (hidden,); sequence: its output at every time step, (time, hidden); both directions concatenated when bidirectional.")
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
    """Gated recurrent unit over a (time, features) input; flat data needs `model.input.shape: [time, features]` or a `reshape` first."""

    type: Literal["gru"] = Field(description="Selects a GRU over (time, features).")
    _module: ClassVar[str] = "GRU"


class LstmSpec(_Recurrent):
    """Long short-term memory over a (time, features) input; flat data needs `model.input.shape: [time, features]` or a `reshape` first."""

    type: Literal["lstm"] = Field(description="Selects an LSTM over (time, features).")
    _module: ClassVar[str] = "LSTM"


class RnnSpec(_Recurrent):
    """Elman RNN over a (time, features) input; flat data needs `model.input.shape: [time, features]` or a `reshape` first."""

    type: Literal["rnn"] = Field(description="Selects an Elman RNN over (time, features).")
    nonlinearity: Literal["tanh", "relu"] = Field("tanh", description="Activation of the recurrent cell.")
    _module: ClassVar[str] = "RNN"

    def _extra(self) -> dict:
        return {"nonlinearity": self.nonlinearity}
