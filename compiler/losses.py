"""Loss specs: each builds a callable (outputs, targets) -> scalar loss."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field

from .base import PositiveFloat, Probability, StrictModel


class CrossEntropySpec(StrictModel):
    """Softmax cross-entropy for classification; targets may be indices or (mixup) probabilities."""

    type: Literal["cross_entropy"] = Field(description="Selects softmax cross-entropy (classification).")
    task: ClassVar[str] = "classification"  # the task this loss is for
    label_smoothing: Probability = Field(0.0, description="Share of each target's probability spread evenly over all classes; 0 trains on hard targets.")
    class_weights: Literal["balanced"] | list[PositiveFloat] | None = Field(None, description="Per-class loss weights: balanced (samples / (classes · class count), counted on the training split), one weight per class in label order, or null for equal weights.")

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

    type: Literal["bce"] = Field(description="Selects binary cross-entropy on one logit (binary).")
    task: ClassVar[str] = "binary"  # the task this loss is for
    pos_weight: PositiveFloat | None = Field(None, description="Weight of the positive class's loss term, e.g. negatives / positives for imbalanced data; null weighs both classes equally.")

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.BCEWithLogitsLoss."""
        import torch
        import torch.nn as nn

        pos_weight = None if self.pos_weight is None else torch.tensor([self.pos_weight])
        return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


class MseSpec(StrictModel):
    """Mean squared error."""

    type: Literal["mse"] = Field(description="Selects mean squared error (regression).")
    task: ClassVar[str] = "regression"  # the task this loss is for

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.MSELoss."""
        import torch.nn as nn

        return nn.MSELoss()


class L1Spec(StrictModel):
    """Mean absolute error."""

    type: Literal["l1"] = Field(description="Selects mean absolute error (regression).")
    task: ClassVar[str] = "regression"  # the task this loss is for

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.L1Loss."""
        import torch.nn as nn

        return nn.L1Loss()


class HuberSpec(StrictModel):
    """Squared error below delta, absolute error above."""

    type: Literal["huber"] = Field(description="Selects the Huber loss (regression).")
    task: ClassVar[str] = "regression"  # the task this loss is for
    delta: PositiveFloat = Field(1.0, description="Error size, in target units (normalized ones with normalize_target), where the loss turns from squared to absolute.")

    def build(self, train_targets: np.ndarray, num_classes: int):
        """nn.HuberLoss."""
        import torch.nn as nn

        return nn.HuberLoss(delta=self.delta)


LossSpec = Annotated[Union[CrossEntropySpec, BceSpec, MseSpec, L1Spec, HuberSpec], Field(discriminator="type")]
