"""Optimizer specs: each builds its torch.optim class."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, model_validator

from .base import NonNegativeFloat, Pair, PositiveFloat, Probability, StrictModel


class _Optimizer(StrictModel):
    lr: PositiveFloat = Field(0.001, description="Learning rate: the value a scheduler starts from (one_cycle uses its own max_lr).")
    weight_decay: NonNegativeFloat = Field(0.0, description="The optimizer's own L2 weight decay on every parameter, biases included, added to the gradient (decoupled in adamw); separate from training.regularization.")

    def build(self, params):
        """The torch optimizer over params."""
        import torch.optim

        return getattr(torch.optim, self._torch_name)(params, **self.model_dump(exclude={"type"}))


class SgdSpec(_Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    type: Literal["sgd"] = Field(description="Selects stochastic gradient descent.")
    lr: PositiveFloat = Field(0.01, description="Learning rate: the value a scheduler starts from (one_cycle uses its own max_lr).")
    momentum: Probability = Field(0.0, description="Momentum factor; 0 is plain SGD.")
    nesterov: bool = Field(False, description="Use Nesterov momentum; needs momentum > 0 and dampening = 0.")
    dampening: Probability = Field(0.0, description="Share of each new gradient left out of the momentum buffer.")
    _torch_name: ClassVar[str] = "SGD"

    @model_validator(mode="after")
    def _nesterov(self):
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        return self


class AdagradSpec(_Optimizer):
    """Per-parameter rates scaled by accumulated squared gradients."""

    type: Literal["adagrad"] = Field(description="Selects Adagrad.")
    lr: PositiveFloat = Field(0.01, description="Learning rate: the value a scheduler starts from (one_cycle uses its own max_lr).")
    eps: PositiveFloat = Field(1e-10, description="Added to the denominator for numerical stability.")
    _torch_name: ClassVar[str] = "Adagrad"


class RmspropSpec(_Optimizer):
    """Rates scaled by a moving average of squared gradients."""

    type: Literal["rmsprop"] = Field(description="Selects RMSprop.")
    lr: PositiveFloat = Field(0.01, description="Learning rate: the value a scheduler starts from (one_cycle uses its own max_lr).")
    alpha: Probability = Field(0.99, description="Decay rate of the moving average of squared gradients.")
    eps: PositiveFloat = Field(1e-8, description="Added to the denominator for numerical stability.")
    momentum: Probability = Field(0.0, description="Momentum factor; 0 is none.")
    centered: bool = Field(False, description="Divide by the gradient's estimated variance (squared average minus squared mean) instead of its squared average.")
    _torch_name: ClassVar[str] = "RMSprop"


class AdamSpec(_Optimizer):
    """Adam: bias-corrected first and second moment estimates (L2-coupled weight decay)."""

    type: Literal["adam"] = Field(description="Selects Adam.")
    betas: Pair[Probability] = Field((0.9, 0.999), description="[beta1, beta2]: decay rates of the moving averages of the gradient and of its square.")
    eps: PositiveFloat = Field(1e-8, description="Added to the denominator for numerical stability.")
    amsgrad: bool = Field(False, description="Use the AMSGrad variant, which divides by the largest second-moment estimate so far.")
    _torch_name: ClassVar[str] = "Adam"


class AdamwSpec(AdamSpec):
    """Adam with decoupled weight decay."""

    type: Literal["adamw"] = Field(description="Selects AdamW.")
    weight_decay: NonNegativeFloat = Field(0.01, description="Decoupled weight decay: each step shrinks every parameter, biases included, by lr · weight_decay times its value.")
    _torch_name: ClassVar[str] = "AdamW"


OptimizerSpec = Annotated[Union[SgdSpec, AdagradSpec, RmspropSpec, AdamSpec, AdamwSpec], Field(discriminator="type")]
