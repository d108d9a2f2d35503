"""Data for training: load the source, split it (seeded, optionally stratified; a split the source brings
itself is used as it is), fit missing-value fills and normalization on the training split only, and keep
every split as tensors on the training device; or, for an image folder too large for memory, stream each
split's images from disk through a DataLoader."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nnspec.compiler.data import DataError, RawData, read_image
from nnspec.compiler.tables import TableStream
from nnspec.compiler.spec import Spec
from nnspec.preprocessing import TableEncoder

from .split import split_off

NUM_WORKERS = min(4, max(0, (os.cpu_count() or 1) - 1))  # DataLoader processes decoding streamed images
FIT_BATCH = 256  # images per batch of the streamed normalization-fitting pass
TABLE_BUFFER = 1 << 18  # rows of a streamed table's split held at once: batches are shuffled within such windows
PARITY_ROWS = 1024  # raw validation rows (the first samples without a validation split) the export checks parity on


@dataclass
class Normalizer:
    """x -> (x - shift) / scale, in the data's own layout; kept for the ONNX export."""

    shift: np.ndarray
    scale: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.shift) / self.scale

    def apply_(self, x: np.ndarray) -> np.ndarray:
        """__call__ in place on a float32 array of the caller's own (the same float32 arithmetic, no copies)."""
        np.subtract(x, self.shift, out=x)
        np.divide(x, self.scale, out=x)
        return x

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
class Imputer:
    """x -> x with NaN replaced by per-column fill values, then one was-missing 0/1 column appended per
    indicated column; fitted on the training split and kept for the ONNX export, which does the same."""

    fill: np.ndarray  # (width,) float32: the fill of every column the graph fills, NaN elsewhere
    indicate: np.ndarray  # int64 columns that get a was-missing column, in order

    def __call__(self, x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        out = np.where(missing, self.fill, x)
        if len(self.indicate):
            out = np.concatenate([out, missing[:, self.indicate].astype(np.float32)], axis=1)
        return out

    @classmethod
    def fit(cls, features: list[dict], x_train: np.ndarray) -> tuple["Imputer", list[dict]]:
        """Fills from the training rows (a numeric column's median, mean or constant; a most_frequent column's
        commonest category), and the features with their fills written into `missing`."""
        fill = np.full(x_train.shape[1], np.nan, np.float32)
        indicate, fitted = [], []
        for feature, (start, stop) in zip(features, TableEncoder(features).spans):
            missing = feature.get("missing")
            if missing is None or missing["strategy"] == "missing_category":  # nothing to fill: the encoder did it
                fitted.append(feature)
                continue
            block = x_train[:, start:stop]
            if np.isnan(block[:, 0]).all():
                raise DataError(f"column '{feature['name']}' has no values in the training split to fill its gaps with")
            if feature["type"] == "numeric":
                strategy, column = missing["strategy"], block[:, 0]
                fill[start] = (float(missing["fill"]) if strategy == "constant" else
                               float(np.nanmedian(column)) if strategy == "median" else float(np.nanmean(column, dtype=np.float64)))
                value = float(str(fill[start]))  # the float32 the graph holds, spelled shortest
                if missing["indicator"]:
                    indicate.append(start)
            else:  # most_frequent: the one-hot of the commonest training category
                mode = int(np.nansum(block, axis=0).argmax())
                fill[start:stop] = np.eye(stop - start, dtype=np.float32)[mode]
                value = feature["categories"][mode]
            fitted.append({**feature, "missing": {**missing, "fill": value}})
        return cls(fill, np.array(indicate, dtype=np.int64)), fitted

    def state(self) -> dict:
        """As tensors, for checkpoints."""
        return {"fill": torch.from_numpy(self.fill.copy()), "indicate": torch.from_numpy(self.indicate.copy())}


def missing_text(feature: dict) -> str:
    """How a feature's missing values are handled, in words: `filled with median 44.45`."""
    missing = feature["missing"]
    strategy, fill = missing["strategy"], missing.get("fill")
    if strategy == "missing_category":
        return "kept as a category of their own"
    if strategy == "most_frequent":
        return f"filled with the most frequent category {fill!r}"
    return f"filled with {strategy} {fill:.6g}" + (", plus a was-missing column" if missing.get("indicator") else "")


def missing_notes(features: list[dict] | None, gaps: dict[str, int], samples: int) -> list[str]:
    """One line per column with gaps: how many of the samples miss it, and how they are filled."""
    return [f"{f['name']}: {gaps[f['name']]} missing ({100 * gaps[f['name']] / max(1, samples):.1f} %), {missing_text(f)}"
            for f in features or () if f.get("missing")]


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


def table_parts(table: TableStream, rows: np.ndarray, refused) -> Iterator[np.ndarray]:
    """The raw encoded rows at these (ascending) sample indices, record batch by record batch, each
    checked for values the model cannot take."""
    start = 0
    for x in table.batches():
        lo, hi = np.searchsorted(rows, [start, start + len(x)])
        if hi > lo:
            part = x[rows[lo:hi] - start]
            _check_finite(part, refused, rows[lo:hi])
            yield part
        start += len(x)


class _SomeColumns:
    """The training rows' columns that the imputation fills, addressed by their numbers in the full
    width: what Imputer.fit reads, without holding the other columns of a streamed table."""

    def __init__(self, values: np.ndarray, columns: np.ndarray, width: int):
        self.values, self.columns, self.shape = values, columns, (len(values), width)

    @classmethod
    def of(cls, parts: Iterator[np.ndarray], encoder: TableEncoder) -> "_SomeColumns":
        columns = np.flatnonzero(encoder.fillable)
        return cls(np.concatenate([part[:, columns] for part in parts]), columns, encoder.width)

    def __getitem__(self, key):
        rows, span = key
        lo, hi = np.searchsorted(self.columns, [span.start, span.stop])
        return self.values[rows, lo:hi]


@dataclass
class StreamedRows:
    """One split of a table streamed from disk (`in_memory: false`): its rows read batch by batch, filled and
    normalized as resident rows are, y on the device. An epoch's batches follow the loop's permutation within
    windows of TABLE_BUFFER consecutive rows (taken in file order), so a split that fits one window gets
    exactly the resident batches."""

    table: TableStream
    rows: np.ndarray  # the split's sample indices, ascending
    prepare: Callable[[np.ndarray], np.ndarray]  # raw encoded rows -> model input
    y: torch.Tensor
    refused: Callable[[np.ndarray], np.ndarray]  # which raw values are refused (TableEncoder.refused)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def device(self) -> torch.device:
        return self.y.device

    def _windows(self) -> Iterator[np.ndarray]:
        """The split's prepared rows in order, TABLE_BUFFER at a time."""
        held, count = [], 0
        for raw in table_parts(self.table, self.rows, self.refused):
            held.append(self.prepare(raw))
            count += len(raw)
            while count >= TABLE_BUFFER:
                block = np.concatenate(held)
                yield block[:TABLE_BUFFER]
                held, count = [block[TABLE_BUFFER:]], count - TABLE_BUFFER
        if count:
            yield np.concatenate(held)

    def batches(self, perm: torch.Tensor, slices: list[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loop's batches: perm's order within each window, the windows in file order."""
        order = perm.numpy()
        order = order[np.argsort(order // TABLE_BUFFER, kind="stable")]
        windows, held, upcoming = self._windows(), {}, 0
        for sl in slices:
            idx = order[sl]
            numbers = idx // TABLE_BUFFER
            while upcoming <= numbers[-1]:  # windows come in order: read up to the last one this batch needs
                held[upcoming] = next(windows)
                upcoming += 1
            for k in [k for k in held if k < numbers[0]]:
                del held[k]
            xb = np.concatenate([held[k][idx[numbers == k] - k * TABLE_BUFFER] for k in np.unique(numbers).tolist()])
            yield torch.from_numpy(xb).to(self.device), self.y[torch.from_numpy(idx).to(self.device)]

    def inputs(self, batch: int) -> Iterator[torch.Tensor]:
        """x in order, at most `batch` samples at a time."""
        for window in self._windows():
            for i in range(0, len(window), batch):
                yield torch.from_numpy(window[i : i + batch]).to(self.device)


@dataclass
class Prepared:
    """Everything the loop and the export need to know about the data."""

    raw: RawData
    train: Split | StreamedSplit | StreamedRows
    validation: Split | StreamedSplit | StreamedRows | None
    test: Split | StreamedSplit | StreamedRows | None
    x_norm: Normalizer
    y_norm: Normalizer | None  # regression targets, when normalize_target
    train_targets: np.ndarray  # raw training labels/targets (class weights need them)

    task: str = "classification"
    imputer: Imputer | None = None  # missing-value fills, when a feature with gaps is filled in the graph
    notes: list[str] = field(default_factory=list)  # for the training log: dropped rows, missing values
    splits: dict[str, str] = field(default_factory=dict)  # how each split was made, in words (the summary's)
    parity_rows: np.ndarray | None = None  # raw_rows() of resident data, kept for the export

    @property
    def num_outputs(self) -> int:
        """Classes for classification, 1 for binary, targets for regression."""
        return {"classification": len(self.raw.labels or []), "binary": 1, "regression": len(self.raw.targets or [])}[self.task]


def split_indices(n: int, y: np.ndarray | None, validation: float, test: float, seed: int, stratify: bool):
    """Seeded (train, validation, test) index arrays; stratified on y when asked."""
    parts = {}
    rest = np.arange(n)
    for name, frac in (("test", test), ("validation", validation)):
        share = frac / (len(rest) / n) if frac else 0
        if share <= 0:
            parts[name] = np.array([], dtype=np.int64)
            continue
        try:
            rest, held = split_off(rest, share, seed, y[rest] if stratify else None)
        except ValueError as e:  # e.g. a class with a single sample cannot be stratified
            raise DataError(f"cannot split {n} samples into {name}={frac}: {e}", None) from None
        parts[name] = np.sort(held)
    return np.sort(rest), parts["validation"], parts["test"]


def prepare_data(spec: Spec, device: torch.device | str = "cpu") -> Prepared:
    """Load, split, normalize and move to the device, as the spec says."""
    raw = spec.data.load(Path.cwd(), spec.task)  # load_spec made data paths absolute
    return prepare_raw(spec, raw, device)


def _split(spec: Spec, raw: RawData):
    """(train, validation, test) indices: the source's own split where it brings one (after its main
    samples), else a seeded fraction of the main samples."""
    split = spec.data.split
    main, fixed = raw.parts()
    validation, test = (0.0 if name in fixed else getattr(split, name) for name in ("validation", "test"))
    y = raw.y[:main] if raw.labels is not None else None
    train_idx, val_idx, test_idx = split_indices(main, y, validation, test, split.seed, split.stratify)
    return train_idx, fixed.get("validation", val_idx), fixed.get("test", test_idx)


def split_origins(spec: Spec, raw: RawData, indices) -> dict[str, str]:
    """How each split was made, for the summary: {"train": "70 % of animals.csv (168 samples)",
    "validation": "fraction 0.15 of animals.csv (36 samples)", "test": "test_path animals_test.csv (150 samples)"}."""
    main = raw.parts()[0]
    out = {}
    for name, idx in zip(("train", "validation", "test"), indices):
        if name in raw.fixed:
            out[name] = f"{raw.fixed[name].origin} ({len(idx)} samples)"
        elif name == "train":
            out[name] = f"{round(100 * len(idx) / max(1, main))} % of {raw.origin} ({len(idx)} samples)"
        else:
            out[name] = f"fraction {getattr(spec.data.split, name):g} of {raw.origin} ({len(idx)} samples)" if len(idx) else "none"
    return out


def _check_finite(x: np.ndarray, refused: Callable[[np.ndarray], np.ndarray] | None, samples: np.ndarray | None = None) -> None:
    """A DataError for NaN or infinite inputs, except NaN in the columns the imputation fills (`refused`
    tells which values are refused; `samples`: the rows' sample numbers when x is a part)."""
    if np.isfinite(x).all():
        return
    bad = refused(x) if refused else ~np.isfinite(x)
    rows = np.where(bad.reshape(len(x), -1).any(axis=1))[0]
    if len(rows):
        rows = rows if samples is None else samples[rows]
        raise DataError(f"inputs contain NaN or infinite values (rows {', '.join(map(str, rows[:5]))}{' ...' if len(rows) > 5 else ''})")


def _parity_indices(raw: RawData, val_idx: np.ndarray, limit: int) -> np.ndarray:
    return (val_idx if len(val_idx) else np.arange(len(raw.y)))[:limit]


def raw_rows(spec: Spec, limit: int) -> np.ndarray:
    """Up to `limit` raw validation inputs in the data's own layout (the first samples when there is no
    validation split), decoding only those images of a streamed folder: the export's parity rows."""
    raw = spec.data.load(Path.cwd(), spec.task)
    _, val_idx, _ = _split(spec, raw)
    idx = _parity_indices(raw, val_idx, limit)
    if raw.table is not None:
        return raw.table.rows(idx)
    if raw.files is None:
        return raw.x[idx]
    return np.stack([read_image(raw.files[i], raw.image["size"], raw.image["color"]) for i in idx])


def prepare_raw(spec: Spec, raw: RawData, device) -> Prepared:
    """prepare_data for already-loaded arrays (or a streamed image folder's file list, or a streamed table)."""
    x, y = raw.x, raw.y
    encoder = TableEncoder(raw.features) if raw.features else None
    if x is not None:
        _check_finite(x, encoder.refused if encoder else None)
    if raw.labels is not None and len(np.unique(y)) < 2:
        raise DataError(f"the data has only one class ({raw.labels[int(y[0])] if len(y) else 'none'}); a classifier needs at least two")
    train_idx, val_idx, test_idx = _split(spec, raw)
    refused = encoder.refused if encoder else None
    imputer = None
    if encoder is not None and encoder.fillable.any():  # only a table with gaps pays for the fills (a copy of x with the was-missing columns)
        if raw.table is not None:  # a streamed pass collects the training rows' columns to fill
            imputer, raw.features = Imputer.fit(raw.features, _SomeColumns.of(table_parts(raw.table, train_idx, refused), encoder))
        else:
            imputer, raw.features = Imputer.fit(raw.features, x[train_idx])
            x = imputer(x)
    notes = raw.notes + missing_notes(raw.features, raw.gaps, len(y))
    kind = spec.data.preprocessing.normalize
    if raw.files is not None:  # one streamed pass over the training images
        images = ImageFiles([raw.files[i] for i in train_idx], raw.image, raw.shape, None)
        x_norm = Normalizer.fit_channels(kind, (b.numpy() for b in stream(images, _in_order(len(images), FIT_BATCH))), raw.shape)
        x_train = None
    elif raw.table is not None:  # one streamed pass over the training rows, filled
        parts = table_parts(raw.table, train_idx, refused)
        x_norm = Normalizer.fit_channels(kind, (imputer(b) if imputer else b for b in parts), raw.net_shape)
        x_train = None
    else:
        x_train = x[train_idx]  # gathered once: fitted on, then normalized in place as the training split
        x_norm = Normalizer.fit(kind, x_train, raw.image is not None)
    y_train = y[train_idx]
    y_norm = None
    if spec.task == "regression" and spec.data.preprocessing.normalize_target:
        y_norm = Normalizer.fit("standardize", y_train, False)
    shape = spec.model.input_shape(raw.net_shape)

    def prepare(rows: np.ndarray) -> np.ndarray:  # a streamed table's raw rows (a copy of its own) -> model input
        return x_norm.apply_(imputer(rows) if imputer else rows).reshape(len(rows), *shape)

    def to_split(idx, xs=None) -> Split | StreamedSplit | StreamedRows | None:
        ys = y[idx]
        if xs is None and x is not None:
            xs = x[idx]
        if len(ys) == 0:
            return None
        if spec.task == "classification":
            yt = torch.from_numpy(ys.astype(np.int64))
        elif spec.task == "binary":
            yt = torch.from_numpy(ys.astype(np.float32).reshape(-1, 1))
        else:
            yt = torch.from_numpy((y_norm(ys) if y_norm else ys).astype(np.float32))
        if raw.table is not None:
            return StreamedRows(raw.table, idx, prepare, yt.to(device), refused)
        if xs is None:
            return StreamedSplit(ImageFiles([raw.files[i] for i in idx], raw.image, shape, x_norm), yt.to(device))
        xt = torch.from_numpy(x_norm.apply_(xs).reshape(len(xs), *shape))
        return Split(xt.to(device), yt.to(device))

    return Prepared(raw=raw, train=to_split(train_idx, x_train), validation=to_split(val_idx), test=to_split(test_idx),
                    x_norm=x_norm, y_norm=y_norm, train_targets=y_train, task=spec.task, imputer=imputer, notes=notes,
                    splits=split_origins(spec, raw, (train_idx, val_idx, test_idx)),
                    parity_rows=None if raw.x is None else raw.x[_parity_indices(raw, val_idx, PARITY_ROWS)])
