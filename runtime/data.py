"""Data for training: load the source, split it (seeded, optionally stratified), fit normalization on
the training split only, and keep every split as tensors on the training device; or, for an image
folder too large for memory, stream each split's images from disk through a DataLoader."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nnspec.compiler.data import DataError, RawData, read_image
from nnspec.compiler.spec import Spec

NUM_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))  # DataLoader processes decoding streamed images
FIT_BATCH = 256  # images per batch of the streamed normalization-fitting pass


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
        if per_channel:  # images: the same one-pass sums as a streamed folder, over ~64 MB chunks
            step = max(1, 2**26 // max(1, x[:1].nbytes))
            return cls.fit_channels(kind, (x[i : i + step] for i in range(0, len(x), step)), x.shape[1:])
        if kind == "standardize":
            shift, scale = x.mean(axis=0), x.std(axis=0)
        elif kind == "minmax":
            shift = x.min(axis=0)
            scale = x.max(axis=0) - shift
        else:
            shift, scale = np.zeros(x.shape[1:], np.float32), np.ones(x.shape[1:], np.float32)
        return cls._of(shift, scale)

    @classmethod
    def fit_channels(cls, kind: str, batches, sample_shape) -> "Normalizer":
        """Per-channel statistics over (n, C, ...) batches in one pass of float64 running sums (exact for
        pixel values, so the result does not depend on how the samples are batched)."""
        if kind not in ("standardize", "minmax"):
            return cls._of(np.zeros(sample_shape, np.float32), np.ones(sample_shape, np.float32))
        count, total, squares, lo, hi = 0, 0.0, 0.0, np.inf, -np.inf
        for b in batches:
            axes = (0, *range(2, b.ndim))
            b64 = b.astype(np.float64)
            count += b.size // b.shape[1]
            total = total + b64.sum(axis=axes)
            squares = squares + np.square(b64).sum(axis=axes)
            lo, hi = np.minimum(lo, b.min(axis=axes)), np.maximum(hi, b.max(axis=axes))
        if kind == "standardize":
            shift = total / count
            scale = np.sqrt(np.maximum(squares / count - shift**2, 0.0))
        else:
            shift, scale = lo, hi - lo
        keep = (-1, *[1] * (len(sample_shape) - 1))  # (C, 1, 1): broadcasts over each channel's pixels
        return cls._of(np.reshape(shift, keep), np.reshape(scale, keep))

    @classmethod
    def _of(cls, shift, scale) -> "Normalizer":
        scale = np.where(scale > 1e-8, scale, 1.0)  # constant features (blank pixels) pass through
        return cls(np.asarray(shift).astype(np.float32), np.asarray(scale).astype(np.float32))

    def state(self) -> dict:
        """As tensors, for checkpoints."""
        return {"shift": torch.from_numpy(np.ascontiguousarray(self.shift)), "scale": torch.from_numpy(np.ascontiguousarray(self.scale))}


@dataclass
class Split:
    """One split on the device: x in the model's input shape (normalized), y ready for the loss."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def device(self) -> torch.device:
        return self.y.device

    def batches(self, perm: torch.Tensor, slices: list[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) of each slice of perm, gathered on the device."""
        perm = perm.to(self.x.device)
        for sl in slices:
            idx = perm[sl]
            yield self.x[idx], self.y[idx]

    def inputs(self, batch: int) -> Iterator[torch.Tensor]:
        """x in order, `batch` samples at a time."""
        for i in range(0, len(self), batch):
            yield self.x[i : i + batch]


class ImageFiles(Dataset):
    """Image files decoded one per item (in DataLoader workers) as the in-memory path decodes them,
    then normalized and reshaped to `shape`; raw pixels 0..255 without a normalizer."""

    def __init__(self, files: list[Path], image: dict, shape, norm: Normalizer | None):
        self.files, self.size, self.color, self.shape, self.norm = files, tuple(image["size"]), image["color"], tuple(shape), norm

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = read_image(self.files[i], self.size, self.color)
        if self.norm is not None:
            x = self.norm(x)
        return torch.from_numpy(np.ascontiguousarray(x.reshape(self.shape), dtype=np.float32))


def stream(dataset: ImageFiles, batches: list[list[int]], pin: bool = False) -> Iterator[torch.Tensor]:
    """The stacked items of each index list, decoded by NUM_WORKERS processes. A worker's DataError
    arrives wrapped in its traceback; it is raised again with its own one-line message. The loader seeds
    its workers from a generator of its own: drawing from the global RNG would change the model's
    initialization and the augmentations' draws, which must match the resident path's."""
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=NUM_WORKERS, pin_memory=pin, generator=torch.Generator())
    try:
        yield from loader
    except DataError as e:
        raise DataError(str(e).rstrip().splitlines()[-1].split("DataError: ", 1)[-1]) from None


def _in_order(n: int, batch: int) -> list[list[int]]:
    return [list(range(i, min(i + batch, n))) for i in range(0, n, batch)]


@dataclass
class StreamedSplit:
    """One split of an image folder too large for memory: images decoded from disk batch by batch, y on the device."""

    images: ImageFiles
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    @property
    def device(self) -> torch.device:
        return self.y.device

    def batches(self, perm: torch.Tensor, slices: list[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The same batches as Split.batches, each decoded by the DataLoader and moved to the device."""
        dev = self.y.device
        on_device = perm.to(dev)
        xs = stream(self.images, [perm[sl].tolist() for sl in slices], pin=dev.type == "cuda")
        for sl, xb in zip(slices, xs):
            yield xb.to(dev, non_blocking=True), self.y[on_device[sl]]

    def inputs(self, batch: int) -> Iterator[torch.Tensor]:
        """x in order, `batch` samples at a time."""
        for xb in stream(self.images, _in_order(len(self), batch), pin=self.device.type == "cuda"):
            yield xb.to(self.device, non_blocking=True)


@dataclass
class Prepared:
    """Everything the loop and the export need to know about the data."""

    raw: RawData
    train: Split | StreamedSplit
    validation: Split | StreamedSplit | None
    test: Split | StreamedSplit | None
    x_norm: Normalizer
    y_norm: Normalizer | None  # regression targets, when normalize_target
    train_targets: np.ndarray  # raw training labels/targets (class weights need them)

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


def _split(spec: Spec, raw: RawData):
    """(train, validation, test) indices; no test indices when the source brings its own test split."""
    split = spec.data.split
    test = 0.0 if raw.fixed_test is not None else split.test
    return split_indices(len(raw.y), raw.y if raw.labels is not None else None, split.validation, test, split.seed, split.stratify)


def raw_rows(spec: Spec, limit: int) -> np.ndarray:
    """Up to `limit` raw validation inputs in the data's own layout (the first samples when there is no
    validation split), decoding only those images of a streamed folder: the export's parity rows."""
    raw = spec.data.source.load(Path.cwd(), spec.task)
    _, val_idx, _ = _split(spec, raw)
    idx = (val_idx if len(val_idx) else np.arange(len(raw.y)))[:limit]
    if raw.files is None:
        return raw.x[idx]
    return np.stack([read_image(raw.files[i], raw.image["size"], raw.image["color"]) for i in idx])


def prepare_raw(spec: Spec, raw: RawData, device) -> Prepared:
    """prepare_data for already-loaded arrays (or a streamed image folder's file list)."""
    x, y = raw.x, raw.y
    if x is not None and not np.isfinite(x).all():
        rows = np.where(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))[0]
        raise DataError(f"inputs contain NaN or infinite values (rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''})")
    if raw.labels is not None and len(np.unique(y)) < 2:
        raise DataError(f"the data has only one class ({raw.labels[int(y[0])] if len(y) else 'none'}); a classifier needs at least two")
    train_idx, val_idx, test_idx = _split(spec, raw)
    kind = spec.data.preprocessing.normalize
    if raw.files is not None:  # one streamed pass over the training images
        images = ImageFiles([raw.files[i] for i in train_idx], raw.image, raw.shape, None)
        x_norm = Normalizer.fit_channels(kind, (b.numpy() for b in stream(images, _in_order(len(images), FIT_BATCH))), raw.shape)
    else:
        x_norm = Normalizer.fit(kind, x[train_idx], raw.image is not None)
    y_train = y[train_idx]
    y_norm = None
    if spec.task == "regression" and spec.data.preprocessing.normalize_target:
        y_norm = Normalizer.fit("standardize", y_train, False)
    shape = spec.model.input_shape(raw.shape)

    def to_split(idx, fixed=None) -> Split | StreamedSplit | None:
        xs, ys = fixed if fixed is not None else (None if x is None else x[idx], y[idx])
        if len(ys) == 0:
            return None
        if spec.task == "classification":
            yt = torch.from_numpy(ys.astype(np.int64))
        elif spec.task == "binary":
            yt = torch.from_numpy(ys.astype(np.float32).reshape(-1, 1))
        else:
            yt = torch.from_numpy((y_norm(ys) if y_norm else ys).astype(np.float32))
        if xs is None:
            return StreamedSplit(ImageFiles([raw.files[i] for i in idx], raw.image, shape, x_norm), yt.to(device))
        xt = torch.from_numpy(x_norm(xs).reshape(len(xs), *shape).astype(np.float32))
        return Split(xt.to(device), yt.to(device))

    return Prepared(raw=raw, train=to_split(train_idx), validation=to_split(val_idx),
                    test=to_split(None, raw.fixed_test) if raw.fixed_test is not None else to_split(test_idx),
                    x_norm=x_norm, y_norm=y_norm, train_targets=y_train, task=spec.task)
