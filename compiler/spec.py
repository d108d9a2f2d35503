"""The spec language: one pydantic model per section, closed and typed (see DESIGN.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .augmentation import AugmentationSpec
from .base import NonNegativeFloat, PositiveFloat, PositiveInt, Probability, StrictModel
from .data import DataInfo, DataSource, PreprocessingSpec, RawData
from .layers import InitSpec, LayerSpec
from .losses import LossSpec
from .optimizers import AdamSpec, OptimizerSpec
from .schedulers import SchedulerSpec
from .tracking import TrackingSpec

Task = Literal["classification", "binary", "regression"]


class SplitSpec(StrictModel):
    """How samples are divided into train, validation and test (seeded)."""

    validation: Probability = Field(0.15, description="Share of all samples held out for validation metrics, early stopping and plateau schedules; 0 means no validation split, and validation + test must stay below 1; sources with their own validation set (validation_path, x_val/y_val, a val/ folder) use that instead.")
    test: Probability = Field(0.15, description="Share of all samples held out for the final test metrics; sources with their own test set (mnist1d, test_path, x_test/y_test, a test/ folder) use that instead, so leave it unset there.")
    stratify: bool = Field(False, description="Keep each class's share of samples equal across train, validation and test; classification and binary tasks only.")
    seed: int = Field(0, description="Random seed of the split, separate from training.seed, so the same samples stay held out when training settings change.")

    @model_validator(mode="after")
    def _leaves_training(self):
        if self.validation + self.test >= 1:
            raise ValueError(f"validation + test must leave samples to train on, got {self.validation} + {self.test}")
        return self


class DataSpec(StrictModel):
    """Where samples come from and how they are split and normalized."""

    source: DataSource = Field(description="Where the samples come from; `type` selects the kind of source.")
    split: SplitSpec = Field(SplitSpec(), description="How the samples are divided into train, validation and test.")
    preprocessing: PreprocessingSpec = Field(PreprocessingSpec(), description="Normalization of inputs (and regression targets) and missing-value fills, fitted on the training split only.")

    def describe(self, base: Path, task: str) -> DataInfo:
        """What the source tells about itself (shape, labels, features), read as preprocessing says."""
        return self.source.describe(base, task, self.preprocessing)

    def load(self, base: Path, task: str) -> RawData:
        """Every sample, read as preprocessing says (missing values, unknown categories)."""
        return self.source.load(base, task, self.preprocessing)


class InputSpec(StrictModel):
    """The per-sample shape the network sees; each sample is reshaped to it."""

    shape: list[PositiveInt] | None = Field(None, min_length=1, description="Per-sample shape without the batch axis, e.g. [1, 8, 8]; each sample is reshaped to it (element counts must match); null keeps the data's own shape.")


class ModelSpec(StrictModel):
    """The network: an input shape, a default init, and a list of layers."""

    input: InputSpec = Field(InputSpec(), description="The per-sample shape the first layer sees; the data's own shape when omitted.")
    init: InitSpec = Field(InitSpec(), description="Model-wide initialization of linear, convolution and recurrent weights and biases; a layer's or container's own init overrides it.")
    layers: list[LayerSpec] = Field(min_length=1, description="The network's layers in order; the last must give a flat (outputs,) shape: one per class, one logit for binary, one per regression target.")

    def input_shape(self, data_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The per-sample shape the first layer sees: `input.shape` when set, else the data's own shape."""
        return tuple(self.input.shape) if self.input.shape else tuple(data_shape)


class RegularizationSpec(StrictModel):
    """Penalty terms on weights (not biases or norm parameters) and gradient clipping."""

    l2: NonNegativeFloat = Field(0.0, description="λ of the penalty λ·Σθ² added to the training loss over weight matrices and kernels only (not biases or norm parameters); separate from the optimizer's weight_decay; 0 disables it.")
    l1: NonNegativeFloat = Field(0.0, description="λ of the penalty λ·Σ|θ| added to the training loss over the same weights as l2; 0 disables it.")
    grad_clip_norm: PositiveFloat | None = Field(None, description="Largest global L2 norm of all gradients; larger gradients are scaled down to it before each optimizer step; null disables clipping.")


class EarlyStoppingSpec(StrictModel):
    """Stop when the monitored validation metric has not improved for `patience` epochs."""

    monitor: str = Field("val_loss", description="Validation metric to watch: val_ plus one of the task's metrics (e.g. val_loss, val_accuracy, val_rmse); needs data.split.validation > 0.")
    patience: PositiveInt = Field(10, description="Stop after this many consecutive epochs without improvement of the monitored metric.")
    min_delta: NonNegativeFloat = Field(0.0, description="Smallest change of the monitored metric, in its own units, that counts as an improvement.")
    restore_best: bool = Field(True, description="End with the best epoch's weights (reported, evaluated and exported) instead of the last epoch's.")


class TrainingSpec(StrictModel):
    """How the network is fitted."""

    epochs: PositiveInt = Field(description="Passes over the training split; the most that run when early stopping is set.")
    batch_size: PositiveInt = Field(64, description="Samples per optimizer step (per process under torchrun); a trailing single sample joins the previous batch.")
    shuffle: bool = Field(True, description="Draw a new seeded sample order every epoch; false keeps the same batch order every epoch, as some reference loops do.")
    loss: LossSpec = Field(description="The training loss; it must suit the task: cross_entropy (classification), bce (binary), mse, l1 or huber (regression).")
    optimizer: OptimizerSpec = Field(AdamSpec(type="adam"), description="The optimizer; Adam with its defaults when omitted.")
    scheduler: SchedulerSpec | None = Field(None, description="Learning-rate schedule over the epochs; null keeps the optimizer's lr constant.")
    regularization: RegularizationSpec = Field(RegularizationSpec(), description="Weight penalties added to the loss and gradient clipping.")
    early_stopping: EarlyStoppingSpec | None = Field(None, description="Stop when a validation metric stops improving; null trains every epoch.")
    augmentation: list[AugmentationSpec] = Field([], description="Random transforms applied in order to each training batch on the device, after normalization; validation, test and the export never see them.")
    device: str = Field("auto", pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="Where to train: auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps; under torchrun each rank uses its local GPU.")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Autocast of the forward pass: fp32 (none), bf16 (CUDA or CPU; MPS runs fp32) or fp16 (CUDA only, with gradient scaling); weights stay float32.")
    seed: int = Field(0, description="Seed of Python, NumPy and torch: weight initialization, shuffling, dropout and augmentation.")
    deterministic: bool = Field(False, description="Demand deterministic torch kernels for repeatable runs; slower, and an operation without a deterministic kernel is an error.")
    log_train_metrics: bool = Field(False, description="Also score the whole training split every epoch (train_accuracy, ...) in metrics.csv and the curves; the training loss is always logged; costs one more pass per epoch.")
    threads: PositiveInt | None = Field(None, description="torch intra-op threads; null: OMP_NUM_THREADS when set, else one per physical core this process may use (affinity and cgroup quota), shared among torchrun's local ranks.")
    tracking: TrackingSpec = Field(TrackingSpec(), description="Report the run to MLflow and/or TensorBoard besides its run directory; both off by default.")


class ExportSpec(StrictModel):
    """ONNX export and its parity check against PyTorch."""

    opset: int = Field(18, ge=17, le=23, description="ONNX opset version of the exported graph.")
    atol: PositiveFloat = Field(1e-4, description="Absolute part of the parity check's tolerance: an output passes where |onnxruntime - PyTorch| <= atol + rtol·|PyTorch|; beyond it the export fails.")
    rtol: NonNegativeFloat = Field(1e-5, description="Relative part of the parity check's tolerance (see atol), so outputs in the thousands (a regression target around 4000) export with the defaults.")


class ServingSpec(StrictModel):
    """Dynamic batching limits for the served model."""

    max_batch_size: PositiveInt = Field(64, description="Most rows that concurrent requests are merged into for one inference run; written to the manifest and Triton's config.pbtxt.")
    max_queue_delay_ms: NonNegativeFloat = Field(2.0, description="Milliseconds a batch may wait after its oldest request for requests already on their way; a lone request never waits.")


class Spec(StrictModel):
    """A whole nnspec file."""

    version: Literal[1] = Field(description="Version of the spec language; always 1.")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64, description="The model's name: its folder in the model repository (models/) and under the run directory (runs/).")
    task: Task = Field(description="classification (one of K classes), binary (two classes, one logit) or regression (numeric targets); decides the loss, metrics and outputs.")
    data: DataSpec = Field(description="Where the samples come from and how they are split and normalized.")
    model: ModelSpec = Field(description="The network: input shape, default initialization and layers.")
    training: TrainingSpec = Field(description="How the network is fitted: epochs, loss, optimizer, schedule, regularization, device.")
    export: ExportSpec = Field(ExportSpec(), description="ONNX export settings and its parity check.")
    serving: ServingSpec = Field(ServingSpec(), description="Dynamic batching limits of the served model.")
