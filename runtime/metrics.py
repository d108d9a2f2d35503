"""Evaluation metrics per task, from model outputs (logits) and targets."""

from __future__ import annotations

import math

import numpy as np
import torch


def probabilities(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, K); binary gives (N, 2) as [1 - p, p]."""
    if task == "binary":
        p = torch.sigmoid(logits.float())
        return torch.cat([1 - p, p], dim=1)
    return torch.softmax(logits.float(), dim=1)


def confusion_matrix(true: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Counts (k, k): rows the true class, columns the predicted one."""
    return np.bincount(np.asarray(true) * k + np.asarray(pred), minlength=k * k).reshape(k, k)


def compute_metrics(task: str, logits: torch.Tensor, y: torch.Tensor, y_norm=None) -> dict[str, float]:
    """accuracy, f1, precision, recall, log_loss (+ auc for binary); or mse, rmse, mae, r2."""
    if task == "regression":
        pred, true = logits.float().cpu().numpy(), y.float().cpu().numpy()
        if y_norm is not None:  # report in the target's own units
            pred, true = pred * y_norm.scale + y_norm.shift, true * y_norm.scale + y_norm.shift
        mse = float(np.mean((pred - true) ** 2))
        return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(np.mean(np.abs(pred - true))),
                "r2": _r2(true, pred)}
    probs = probabilities(task, logits).cpu().numpy().astype(np.float64)
    true = y.cpu().numpy().reshape(-1).astype(np.int64)
    pred = probs.argmax(axis=1)
    k = probs.shape[1]
    confusion = confusion_matrix(true, pred, k)
    hits = np.diag(confusion).astype(np.float64)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros(k), where=actual > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=precision + recall > 0)
    seen = (actual > 0) | (predicted > 0)  # macro averages over the classes in the split or its predictions, as scikit-learn's labels=None
    out = {
        "accuracy": float(hits.sum() / max(len(true), 1)),
        "f1": float(f1[seen].mean()),
        "precision": float(precision[seen].mean()),
        "recall": float(recall[seen].mean()),
        "log_loss": float(-np.mean(np.log(np.clip(probs[np.arange(len(true)), true], 1e-15, 1.0)))),
    }
    if task == "binary":
        out["auc"] = roc_auc(true, probs[:, 1])
    return out


def roc_auc(true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of a binary score: the chance that a random positive outranks a random
    negative, ties counting half (Mann-Whitney U from average ranks); NaN unless both classes occur."""
    true = np.asarray(true) == 1
    positives, negatives = int(true.sum()), int((~true).sum())
    if not positives or not negatives:
        return float("nan")
    _, position, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[position]  # tied scores share their average rank (1-based)
    return float((ranks[true].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _r2(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination, averaged over target columns."""
    ss_res = ((true - pred) ** 2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    return float(np.mean(1 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan))) if len(true) > 1 else float("nan")
