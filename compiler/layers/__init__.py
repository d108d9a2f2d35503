"""Every layer the spec language offers; the discriminated union below is the registry."""

from typing import Annotated, Union

from pydantic import Field

from .activations import EluSpec, GeluSpec, LeakyReluSpec, ReluSpec, SigmoidSpec, SiluSpec, TanhSpec
from .base import InitSpec, LayerBase
from .containers import ConcatSpec, ResidualSpec, SequentialSpec, build_chain, chain_shapes
from .conv import AvgPool1dSpec, AvgPool2dSpec, Conv1dSpec, Conv2dSpec, GlobalAvgPoolSpec, MaxPool1dSpec, MaxPool2dSpec
from .dense import FlattenSpec, LinearSpec, ReshapeSpec
from .recurrent import GruSpec, LstmSpec, RnnSpec
from .regularization import BatchNormSpec, Dropout1dSpec, Dropout2dSpec, DropoutSpec, LayerNormSpec

LAYER_CLASSES = (
    LinearSpec, Conv1dSpec, Conv2dSpec, MaxPool1dSpec, MaxPool2dSpec, AvgPool1dSpec, AvgPool2dSpec,
    GlobalAvgPoolSpec, FlattenSpec, ReshapeSpec, DropoutSpec, Dropout1dSpec, Dropout2dSpec,
    BatchNormSpec, LayerNormSpec, ReluSpec, LeakyReluSpec, EluSpec, GeluSpec, SiluSpec, SigmoidSpec,
    TanhSpec, GruSpec, LstmSpec, RnnSpec, SequentialSpec, ResidualSpec, ConcatSpec,
)

LayerSpec = Annotated[Union[LAYER_CLASSES], Field(discriminator="type")]

for _cls in (SequentialSpec, ResidualSpec, ConcatSpec):
    _cls.model_rebuild(_types_namespace={"LayerSpec": LayerSpec})

__all__ = ["LayerSpec", "LayerBase", "InitSpec", "LAYER_CLASSES", "build_chain", "chain_shapes"] + [c.__name__ for c in LAYER_CLASSES]
