"""Metric names per task (plain Python, shared by the schema's rules and the runtime)."""

from __future__ import annotations

TASK_METRICS = {
    "classification": ["loss", "accuracy", "f1", "precision", "recall", "log_loss"],
    "binary": ["loss", "accuracy", "f1", "precision", "recall", "log_loss", "auc"],
    "regression": ["loss", "mse", "rmse", "mae", "r2"],
}
_HIGHER_IS_BETTER = {"accuracy", "f1", "precision", "recall", "auc", "r2"}


def monitors(task: str) -> list[str]:
    """Every name a scheduler or early stopping may monitor for this task."""
    return [f"val_{m}" for m in TASK_METRICS[task]]


def metric_mode(monitor: str) -> str:
    """'max' for metrics where higher is better, else 'min'."""
    return "max" if monitor.removeprefix("val_") in _HIGHER_IS_BETTER else "min"
