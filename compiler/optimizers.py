"""Optimizer specs: each builds its torch.optim class."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from .base import NonNegativeFloat, Pair, PositiveFloat, Probability, StrictModel


class _Optimizer(StrictModel):
    lr: PositiveFloat = 0.001
    weight_decay: NonNegativeFloat = 0.0

    def build(self, params):
        """The torch optimizer over params."""
        import torch.optim

        return getattr(torch.optim, self._torch_name)(params, **self.model_dump(exclude={"type"}))


class SgdSpec(_Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    type: Literal["sgd"]
    lr: PositiveFloat = 0.01
    momentum: Probability = 0.0
    nesterov: bool = False
    dampening: Probability = 0.0
    _torch_name: ClassVar[str] = "SGD"

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        return self


class AdagradSpec(_Optimizer):
    """Per-parameter rates scaled by accumulated squared gradients."""

    type: Literal["adagrad"]
    lr: PositiveFloat = 0.01
    eps: PositiveFloat = 1e-10
    _torch_name: ClassVar[str] = "Adagrad"


class RmspropSpec(_Optimizer):
    """Rates scaled by a moving average of squared gradients."""

    type: Literal["rmsprop"]
    lr: PositiveFloat = 0.01
    alpha: Probability = 0.99
    eps: PositiveFloat = 1e-8
    momentum: Probability = 0.0
    centered: bool = False
    _torch_name: ClassVar[str] = "RMSprop"


class AdamSpec(_Optimizer):
    """Adam: bias-corrected first and second moment estimates (L2-coupled weight decay)."""

    type: Literal["adam"]
    betas: Pair[Probability] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    amsgrad: bool = False
    _torch_name: ClassVar[str] = "Adam"


class AdamwSpec(AdamSpec):
    """Adam with decoupled weight decay."""

    type: Literal["adamw"]
    weight_decay: NonNegativeFloat = 0.01
    _torch_name: ClassVar[str] = "AdamW"


OptimizerSpec = Annotated[Union[SgdSpec, AdagradSpec, RmspropSpec, AdamSpec, AdamwSpec], Field(discriminator="type")]
