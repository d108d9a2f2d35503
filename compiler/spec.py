"""The spec language: one pydantic model per section, closed and typed (see DESIGN.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .augmentation import AugmentationSpec
from .base import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, StrictModel
from .data import DataSource
from .layers import InitSpec, LayerSpec
from .losses import LossSpec
from .optimizers import AdamSpec, OptimizerSpec
from .schedulers import SchedulerSpec

Task = Literal["classification", "binary", "regression"]


class SplitSpec(StrictModel):
    """How samples are divided into train, validation and test (seeded)."""

    validation: Probability = 0.15
    test: Probability = 0.15
    stratify: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _leaves_training(self):
        if self.validation + self.test >= 1:
            raise ValueError(f"validation + test must leave samples to train on, got {self.validation} + {self.test}")
        return self


class PreprocessingSpec(StrictModel):
    """Input normalization fitted on the training split (and kept in the export)."""

    normalize: Literal["standardize", "minmax", "none"] = "standardize"
    normalize_target: bool = False  # regression: standardize targets for training, undone in the export


class DataSpec(StrictModel):
    """Where samples come from and how they are split and normalized."""

    source: DataSource
    split: SplitSpec = SplitSpec()
    preprocessing: PreprocessingSpec = PreprocessingSpec()


class InputSpec(StrictModel):
    """The per-sample shape the network sees; each sample is reshaped to it."""

    shape: list[PositiveInt] | None = Field(None, min_length=1)


class ModelSpec(StrictModel):
    """The network: an input shape, a default init, and a list of layers."""

    input: InputSpec = InputSpec()
    init: InitSpec = InitSpec()
    layers: list[LayerSpec] = Field(min_length=1)


class RegularizationSpec(StrictModel):
    """Penalty terms on weights (not biases or norm parameters) and gradient clipping."""

    l2: NonNegativeFloat = 0.0
    l1: NonNegativeFloat = 0.0
    grad_clip_norm: PositiveFloat | None = None


class EarlyStoppingSpec(StrictModel):
    """Stop when the monitored validation metric has not improved for `patience` epochs."""

    monitor: str = "val_loss"
    patience: PositiveInt = 10
    min_delta: NonNegativeFloat = 0.0
    restore_best: bool = True


class TrainingSpec(StrictModel):
    """How the network is fitted."""

    epochs: PositiveInt
    batch_size: PositiveInt = 64
    shuffle: bool = True  # false: the same batch order every epoch, as some reference loops do
    loss: LossSpec
    optimizer: OptimizerSpec = AdamSpec(type="adam")
    scheduler: SchedulerSpec | None = None
    regularization: RegularizationSpec = RegularizationSpec()
    early_stopping: EarlyStoppingSpec | None = None
    augmentation: list[AugmentationSpec] = []
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$")
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    seed: int = 0
    deterministic: bool = False


class ExportSpec(StrictModel):
    """ONNX export and its parity check against PyTorch."""

    opset: int = Field(18, ge=17, le=23)
    atol: PositiveFloat = 1e-4


class ServingSpec(StrictModel):
    """Dynamic batching limits for the served model."""

    max_batch_size: PositiveInt = 64
    max_queue_delay_ms: NonNegativeFloat = 2.0


class Spec(StrictModel):
    """A whole nnspec file."""

    version: Literal[1]
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    task: Task
    data: DataSpec
    model: ModelSpec
    training: TrainingSpec
    export: ExportSpec = ExportSpec()
    serving: ServingSpec = ServingSpec()
