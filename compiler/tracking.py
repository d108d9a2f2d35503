"""training.tracking: where a run is reported besides its run directory (MLflow, TensorBoard); both off by default."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import StrictModel

Backend = Literal["mlflow", "tensorboard"]


class MlflowTracking(StrictModel):
    """One MLflow run per training: parameters, per-epoch metrics, artifacts and the exported ONNX model."""

    experiment: str | None = Field(None, min_length=1, description="MLflow experiment the run goes into (created when missing); null: the spec's name.")
    uri: str | None = Field(None, min_length=1, description="Tracking URI (http://host:5000, sqlite:///mlflow.db, databricks, ...); null: MLFLOW_TRACKING_URI, else MLflow's local default (sqlite:///mlflow.db in the working directory).")


class TensorBoardTracking(StrictModel):
    """TensorBoard event files: scalars per epoch, hyperparameters with the final metrics, the model graph."""

    dir: str | None = Field(None, min_length=1, description="Folder of the event files (relative to the working directory); null: the run directory's tb/ folder.")


class TrackingSpec(StrictModel):
    """Experiment trackers the run reports to; `nnspec train --track mlflow|tensorboard` switches one on with its defaults."""

    mlflow: MlflowTracking | None = Field(None, description="Log the run to MLflow; {} takes the defaults; null: off. Needs the `track` extra.")
    tensorboard: TensorBoardTracking | None = Field(None, description="Write TensorBoard event files; {} takes the defaults; null: off. Needs the `track` extra.")

    def enabled(self, backends: list[str] | tuple = ()) -> TrackingSpec:
        """This section with each named backend switched on (its defaults unless the spec configures it)."""
        defaults = {"mlflow": MlflowTracking(), "tensorboard": TensorBoardTracking()}
        return self.model_copy(update={b: getattr(self, b) or defaults[b] for b in backends})

    @property
    def active(self) -> bool:
        """Whether any tracker is on."""
        return self.mlflow is not None or self.tensorboard is not None
