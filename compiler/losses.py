"""Loss specs: each builds a callable (outputs, targets) -> scalar loss."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field

from .base import PositiveFloat, Probability, StrictModel


class CrossEntropySpec(StrictModel):
    """Softmax cross-entropy for classification; targets may be indices or (mixup) probabilities."""

    type: Literal["cross_entropy"]
    task: ClassVar[str] = "classification"  # the task this loss is for
    label_smoothing: Probability = 0.0
    class_weights: Literal["balanced"] | list[PositiveFloat] | None = None

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.CrossEntropyLoss with the spec's smoothing and weights (balanced: n / (k · count))."""
        import torch
        import torch.nn as nn

        weight = None
        if self.class_weights == "balanced":
            counts = np.bincount(train_targets, minlength=num_classes).astype(np.float64)
            weight = torch.tensor(len(train_targets) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)
        elif self.class_weights is not None:
            weight = torch.tensor(self.class_weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=self.label_smoothing)


class BceSpec(StrictModel):
    """Binary cross-entropy on one logit (the sigmoid is part of the loss, and of the export)."""

    type: Literal["bce"]
    task: ClassVar[str] = "binary"  # the task this loss is for
    pos_weight: PositiveFloat | None = None

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.BCEWithLogitsLoss."""
        import torch
        import torch.nn as nn

        pos_weight = None if self.pos_weight is None else torch.tensor([self.pos_weight])
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


class MseSpec(StrictModel):
    """Mean squared error."""

    type: Literal["mse"]
    task: ClassVar[str] = "regression"  # the task this loss is for

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.MSELoss."""
        import torch.nn as nn

        return nn.MSELoss()


class L1Spec(StrictModel):
    """Mean absolute error."""

    type: Literal["l1"]
    task: ClassVar[str] = "regression"  # the task this loss is for

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.L1Loss."""
        import torch.nn as nn

        return nn.L1Loss()


class HuberSpec(StrictModel):
    """Squared error below delta, absolute error above."""

    type: Literal["huber"]
    task: ClassVar[str] = "regression"  # the task this loss is for
    delta: PositiveFloat = 1.0

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.HuberLoss."""
        import torch.nn as nn

        return nn.HuberLoss(delta=self.delta)


LossSpec = Annotated[Union[CrossEntropySpec, BceSpec, MseSpec, L1Spec, HuberSpec], Field(discriminator="type")]
