"""Data for training: load the source, split it (seeded, optionally stratified), fit normalization on
the training split only, and keep every split as tensors on the training device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnspec.compiler.data import DataError, RawData
from nnspec.compiler.rules import input_shape
from nnspec.compiler.spec import Spec


@dataclass
class Normalizer:
    """x -> (x - shift) / scale, in the data's own layout; kept for the ONNX export."""

    shift: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.shift) / self.scale

    @classmethod
    def fit(cls, kind: str, x: np.ndarray, per_channel: bool) -> "Normalizer":
        """Statistics over the samples (and, for images, over each channel's pixels)."""
        axes = (0, *range(2, x.ndim)) if per_channel else (0,)
        if kind == "standardize":
            shift, scale = x.mean(axis=axes, keepdims=True)[0], x.std(axis=axes, keepdims=True)[0]
        elif kind == "minmax":
            shift = x.min(axis=axes, keepdims=True)[0]
            scale = x.max(axis=axes, keepdims=True)[0] - shift
        else:
            shift, scale = np.zeros(x.shape[1:], np.float32), np.ones(x.shape[1:], np.float32)
        scale = np.where(scale > 1e-8, scale, 1.0)  # constant features (blank pixels) pass through
        return cls(shift.astype(np.float32), scale.astype(np.float32))

    def state(self) -> dict:
        """As tensors, for checkpoints."""
        return {"shift": torch.from_numpy(np.ascontiguousarray(self.shift)), "scale": torch.from_numpy(np.ascontiguousarray(self.scale))}

    @classmethod
    def from_state(cls, state: dict) -> "Normalizer":
        """Inverse of state()."""
        return cls(state["shift"].numpy(), state["scale"].numpy())


@dataclass
class Split:
    """One split on the device: x in the model's input shape (normalized), y ready for the loss."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Prepared:
    """Everything the loop and the export need to know about the data."""

    raw: RawData
    train: Split
    validation: Split | None
    test: Split | None
    x_norm: Normalizer
    y_norm: Normalizer | None  # regression targets, when normalize_target
    train_targets: np.ndarray  # raw training labels/targets (class weights need them)
    validation_raw: np.ndarray | None  # raw validation inputs, for the export's parity check

    task: str = "classification"

    @property
    def num_outputs(self) -> int:
        """Classes for classification, 1 for binary, targets for regression."""
        return {"classification": len(self.raw.labels or []), "binary": 1, "regression": len(self.raw.targets or [])}[self.task]


def split_indices(n: int, y: np.ndarray | None, validation: float, test: float, seed: int, stratify: bool):
    """Seeded (train, validation, test) index arrays; stratified on y when asked."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    parts = {}
    rest = idx
    for name, frac in (("test", test), ("validation", validation)):
        share = frac / (len(rest) / n) if frac else 0
        if share <= 0:
            parts[name] = np.array([], dtype=np.int64)
            continue
        try:
            rest, held = train_test_split(rest, test_size=share, random_state=seed, stratify=y[rest] if stratify else None)
        except ValueError as e:  # e.g. a class with a single sample cannot be stratified
            raise DataError(f"cannot split {n} samples into {name}={frac}: {e}", None) from None
        parts[name] = np.sort(held)
    return np.sort(rest), parts["validation"], parts["test"]


def prepare_data(spec: Spec, device: torch.device | str = "cpu") -> Prepared:
    """Load, split, normalize and move to the device, as the spec says."""
    raw = spec.data.source.load(Path.cwd(), spec.task)  # load_spec made data paths absolute
    return prepare_raw(spec, raw, device)


def prepare_raw(spec: Spec, raw: RawData, device) -> Prepared:
    """prepare_data for already-loaded arrays."""
    x, y = raw.x, raw.y
    if not np.isfinite(x).all():
        rows = np.where(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0]
        raise DataError(f"inputs contain NaN or infinite values (rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''})")
    if raw.labels is not None and len(np.unique(y)) < 2:
        raise DataError(f"the data has only one class ({raw.labels[int(y[0])] if len(y) else 'none'}); a classifier needs at least two")
    split = spec.data.split
    classes = raw.labels is not None
    if raw.fixed_test is not None:  # the source's own test split (mnist1d)
        train_idx, val_idx, _ = split_indices(len(x), y if classes else None, split.validation, 0.0, split.seed, split.stratify)
        x_test, y_test = raw.fixed_test
    else:
        train_idx, val_idx, test_idx = split_indices(len(x), y if classes else None, split.validation, split.test, split.seed, split.stratify)
        x_test, y_test = x[test_idx], y[test_idx]
    x_train, y_train = x[train_idx], y[train_idx]
    per_channel = raw.image is not None
    x_norm = Normalizer.fit(spec.data.preprocessing.normalize, x_train, per_channel)
    y_norm = None
    if spec.task == "regression" and spec.data.preprocessing.normalize_target:
        y_norm = Normalizer.fit("standardize", y_train, False)
    shape = input_shape(spec, raw)

    def to_split(xs, ys) -> Split | None:
        if len(xs) == 0:
            return None
        xt = torch.from_numpy(x_norm(xs).reshape(len(xs), *shape).astype(np.float32))
        if spec.task == "classification":
            yt = torch.from_numpy(ys.astype(np.int64))
        elif spec.task == "binary":
            yt = torch.from_numpy(ys.astype(np.float32).reshape(-1, 1))
        else:
            yt = torch.from_numpy((y_norm(ys) if y_norm else ys).astype(np.float32))
        return Split(xt.to(device), yt.to(device))

    return Prepared(raw=raw, train=to_split(x_train, y_train), validation=to_split(x[val_idx], y[val_idx]),
                    test=to_split(x_test, y_test), x_norm=x_norm, y_norm=y_norm, train_targets=y_train,
                    validation_raw=x[val_idx] if len(val_idx) else None, task=spec.task)
