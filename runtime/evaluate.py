"""Evaluate a finished run's weights on one of its splits."""

from __future__ import annotations

from pathlib import Path

from nnspec.compiler.compile import compile_model

from .checkpoint import load_checkpoint
from .data import prepare_data
from .rundir import load_run
from .train import evaluate_split


def run_weights(run_dir: Path, spec) -> Path:
    """The weights the run ended with: best.pt under early stopping with restore_best, else last.pt."""
    es = spec.training.early_stopping
    for name in (["best.pt"] if es and es.restore_best else []) + ["last.pt"]:
        if (run_dir / name).is_file():
            return run_dir / name
    raise FileNotFoundError(f"{run_dir} has no checkpoint (last.pt)")


def evaluate_run(run_dir: str | Path, split: str = "test") -> dict[str, float]:
    """Loss and metrics of the run's weights on its validation or test split."""
    run_dir = Path(run_dir)
    spec, _ = load_run(run_dir)
    data = prepare_data(spec, "cpu")
    net = compile_model(spec, data.raw)
    net.load_state_dict(load_checkpoint(run_weights(run_dir, spec))["model"])
    chosen = getattr(data, split)
    if chosen is None:
        raise RuntimeError(f"the run has no {split} split")
    loss_fn = spec.training.loss.build(data.train_targets, data.num_outputs)
    return evaluate_split(spec, net, loss_fn, chosen, data.y_norm, "fp32")
