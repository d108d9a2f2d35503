"""Learning-rate schedule specs. Durations are in epochs; schedules start after `warmup_epochs`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field, field_validator

from .base import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, Probability, StrictModel

Monitor = str  # checked against the task's metrics by the cross-field rules


class LRSchedule:
    """A torch scheduler plus linear warmup; the loop calls step_batch after every optimizer step
    and step_epoch after every validation."""

    def __init__(self, optimizer, main, warmup_steps: int, per_batch: bool, monitor: str | None = None):
        self.optimizer, self.main, self.warmup_steps, self.per_batch = optimizer, main, warmup_steps, per_batch
        self.monitor = monitor  # the metric an epoch-wise (plateau) schedule steps on
        self.base = [g["lr"] for g in optimizer.param_groups]  # the main schedule's first lr
        self.t = 0
        self._warm()

    def _warm(self):
        if self.t < self.warmup_steps:  # step t uses base * (t + 1) / warmup_steps
            for g, base in zip(self.optimizer.param_groups, self.base):
                g["lr"] = base * (self.t + 1) / self.warmup_steps

    def step_batch(self):
        """After each optimizer step."""
        self.t += 1
        if self.t < self.warmup_steps:
            self._warm()
        elif self.t == self.warmup_steps:
            for g, base in zip(self.optimizer.param_groups, self.base):
                g["lr"] = base
        elif self.per_batch:
            self.main.step()

    def step_epoch(self, metrics: dict[str, float]):
        """After each epoch's validation; only plateau listens."""
        if not self.per_batch and self.t >= self.warmup_steps:
            self.main.step(metrics[self.monitor])

    def state_dict(self) -> dict:
        """Everything needed to resume."""
        return {"t": self.t, "base": self.base, "main": self.main.state_dict()}

    def load_state_dict(self, state: dict):
        """Restore from state_dict()."""
        self.t, self.base = state["t"], state["base"]
        self.main.load_state_dict(state["main"])


class _Scheduler(StrictModel):
    warmup_epochs: NonNegativeInt = Field(0, description="Epochs of linear warmup, rising every optimizer step to the schedule's starting lr (the optimizer's lr; max_lr / 25 for one_cycle); must be less than training.epochs.")
    per_batch: ClassVar[bool] = True

    def _main(self, optimizer, steps_per_epoch: int, epochs: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def build(self, optimizer, steps_per_epoch: int, epochs: int) -> LRSchedule:
        """The schedule for this optimizer, counting steps_per_epoch optimizer steps per epoch."""
        main = self._main(optimizer, steps_per_epoch, max(epochs - self.warmup_epochs, 1))
        return LRSchedule(optimizer, main, self.warmup_epochs * steps_per_epoch, self.per_batch, getattr(self, "monitor", None))


class StepSpec(_Scheduler):
    """Multiply the lr by gamma every step_size epochs."""

    type: Literal["step"] = Field(description="Selects step decay.")
    step_size: PositiveInt = Field(description="Epochs between decays, counted after warmup.")
    gamma: PositiveFloat = Field(0.1, description="Factor the lr is multiplied by at each decay.")

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import StepLR

        return StepLR(optimizer, self.step_size * spe, self.gamma)


class MultistepSpec(_Scheduler):
    """Multiply the lr by gamma at each milestone epoch (counted from the start of training)."""

    type: Literal["multistep"] = Field(description="Selects decay at milestone epochs.")
    milestones: list[PositiveInt] = Field(min_length=1, description="Epochs, counted from the start of training, strictly increasing and after warmup_epochs, at which the lr is multiplied by gamma.")
    gamma: PositiveFloat = Field(0.1, description="Factor the lr is multiplied by at each milestone.")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, milestones, info):
        if any(b <= a for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {milestones}")
        warmup = info.data.get("warmup_epochs", 0)
        if milestones[0] <= warmup:
            raise ValueError(f"milestones must come after warmup_epochs={warmup}, got {milestones}")
        return milestones

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import MultiStepLR

        return MultiStepLR(optimizer, [(m - self.warmup_epochs) * spe for m in self.milestones], self.gamma)


class ExponentialSpec(_Scheduler):
    """Multiply the lr by gamma every epoch (smoothly, per step)."""

    type: Literal["exponential"] = Field(description="Selects exponential decay.")
    gamma: PositiveFloat = Field(description="Factor the lr is multiplied by per epoch, applied as gamma^(1/steps) after every optimizer step.")

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import ExponentialLR

        return ExponentialLR(optimizer, self.gamma ** (1.0 / spe))


class PlateauSpec(_Scheduler):
    """Multiply the lr by factor when the monitored validation metric stops improving."""

    type: Literal["plateau"] = Field(description="Selects reduce-on-plateau, stepped once per epoch after validation.")
    monitor: Monitor = Field("val_loss", description="Validation metric to watch: val_ plus one of the task's metrics; needs data.split.validation > 0.")
    factor: Probability = Field(0.1, description="Factor the lr is multiplied by when the metric stops improving.")
    patience: NonNegativeInt = Field(10, description="Epochs without improvement tolerated before the lr is reduced.")
    min_lr: NonNegativeFloat = Field(0.0, description="Lowest lr the reductions go to.")
    per_batch: ClassVar[bool] = False

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import ReduceLROnPlateau

        from .metrics import metric_mode

        return ReduceLROnPlateau(optimizer, mode=metric_mode(self.monitor), factor=self.factor, patience=self.patience, min_lr=self.min_lr)


class CosineSpec(_Scheduler):
    """Cosine decay from the lr to eta_min over the remaining epochs."""

    type: Literal["cosine"] = Field(description="Selects cosine annealing.")
    eta_min: NonNegativeFloat = Field(0.0, description="The lr reached at the end of training.")

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import CosineAnnealingLR

        return CosineAnnealingLR(optimizer, epochs * spe, self.eta_min)


class CosineRestartsSpec(_Scheduler):
    """Cosine decay restarted every t_0 epochs, the period growing by t_mult."""

    type: Literal["cosine_restarts"] = Field(description="Selects cosine annealing with warm restarts.")
    t_0: PositiveInt = Field(description="Length of the first cycle, in epochs.")
    t_mult: PositiveInt = Field(1, description="Factor by which each cycle is longer than the one before; 1 keeps them equal.")
    eta_min: NonNegativeFloat = Field(0.0, description="The lr at the end of each cycle.")

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts

        return CosineAnnealingWarmRestarts(optimizer, self.t_0 * spe, self.t_mult, self.eta_min)


class OneCycleSpec(_Scheduler):
    """Ramp the lr from max_lr / 25 up to max_lr over pct_start of the steps, then cosine-anneal it to max_lr / 250000."""

    type: Literal["one_cycle"] = Field(description="Selects the one-cycle policy.")
    max_lr: PositiveFloat = Field(description="Peak lr; the cycle starts at max_lr / 25 and ends far below it, replacing the optimizer's lr.")
    pct_start: Probability = Field(0.3, description="Share of the steps after warmup spent rising to max_lr.")

    def _main(self, optimizer, spe, epochs):
        from torch.optim.lr_scheduler import OneCycleLR

        # momentum is cycled too, where the optimizer has one (Adagrad has neither momentum nor betas)
        cycle = "momentum" in optimizer.defaults or "betas" in optimizer.defaults
        return OneCycleLR(optimizer, self.max_lr, total_steps=epochs * spe + 1, pct_start=self.pct_start, cycle_momentum=cycle)


SchedulerSpec = Annotated[
    Union[StepSpec, MultistepSpec, ExponentialSpec, PlateauSpec, CosineSpec, CosineRestartsSpec, OneCycleSpec],
    Field(discriminator="type"),
]
