"""`nnspec init`: a first spec drafted from a data file, commented, that validates and trains as written.

What it infers from the data: the task (strings or a few integer values -> classification, two
classes -> binary, other numbers -> regression), the classes, the features and their kinds, missing
values, the input shape; and it picks a default network for the data's kind (an MLP for tables and
feature vectors, a small 1-D CNN for signals, a small 2-D CNN for images), Adam, early stopping on the
validation loss and a batch size that suits the number of samples.
"""

from __future__ import annotations

import json
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnspec.compiler.data import DataError, open_npz
from nnspec.compiler.spec import Task
from nnspec.preprocessing import IMAGE_SUFFIXES

TASKS = typing.get_args(Task)
MAX_CLASSES = 20  # integer targets with at most this many values are classes, not quantities
SIGNAL_LENGTH = 32  # 2-D npz features at least this wide are one signal per row, not a feature vector


@dataclass
class Draft:
    """A drafted spec: its YAML text and what was inferred, one line each."""

    text: str
    inferred: list[str] = field(default_factory=list)


@dataclass
class _Data:
    """What the draft needs from a data file."""

    source: str  # the data.source mapping, as YAML flow text
    samples: int
    targets: np.ndarray  # raw target values
    kind: str  # table | vector | signal | image
    shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)  # comments for the spec and lines for the user


def model_name(path: Path) -> str:
    """A valid model name from a file name: `Penguins Size.csv` -> `penguins-size`."""
    return (re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_") or "model")[:64]


def infer_task(targets: np.ndarray) -> tuple[str, int]:
    """(task, distinct target values): strings, booleans or a few whole numbers are classes; other numbers a regression."""
    values = targets[~_missing(targets)]
    distinct = len(set(values.tolist()))
    whole = values.dtype.kind in "iub" or (values.dtype.kind == "f" and bool(np.all(np.mod(values, 1) == 0)))
    if values.dtype.kind not in "iuf" or (whole and distinct <= MAX_CLASSES):
        return ("binary" if distinct == 2 else "classification"), distinct
    return "regression", distinct


def _missing(values: np.ndarray) -> np.ndarray:
    """Which values are empty cells (NaN or None)."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in values.tolist()], dtype=bool)
    return np.zeros(len(values), dtype=bool)


def _quoted(text: str) -> str:
    """A name as a YAML string whatever it holds (`a, b`, `#x`, `true`): JSON's quoting is valid YAML."""
    return json.dumps(text, ensure_ascii=False)


def _relative(data: Path, spec_dir: Path) -> str:
    return Path(os.path.relpath(data.resolve(), spec_dir.resolve())).as_posix()


def _read_table(data: Path, spec_dir: Path, target: str | None) -> tuple[_Data, str]:
    import pandas as pd

    try:
        frame = pd.read_parquet(data) if data.suffix.lower() == ".parquet" else pd.read_csv(data)
    except Exception as e:  # the reader's own message is the useful part
        raise DataError(f"cannot read {data.name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if frame.shape[1] < 2:
        raise DataError(f"{data.name} has {frame.shape[1]} column; a table needs a target and at least one feature")
    notes = []
    if target is None:
        target = str(frame.columns[-1])
        notes.append(f"target: the last column, '{target}' (choose another with --target)")
    elif target not in frame.columns:
        raise DataError(f"no column '{target}' in {data.name}; columns: {', '.join(map(str, frame.columns))}")
    features = [c for c in frame.columns if c != target]
    kinds = ["numeric" if frame[c].dtype.kind in "iuf" else "categorical" for c in features]
    notes.append("features: " + ", ".join(f"{c} ({k})" for c, k in zip(features, kinds)))
    gaps = {str(c): int(frame[c].isna().sum()) for c in features if frame[c].isna().any()}
    if gaps:
        notes.append("missing values: " + ", ".join(f"{c} ({n})" for c, n in gaps.items())
                     + "; filled as data.preprocessing.missing says (numeric: median, categorical: its own category)")
    if frame[target].isna().any():
        notes.append(f"{int(frame[target].isna().sum())} rows have no '{target}': training drops them")
    source_type = "parquet" if data.suffix.lower() == ".parquet" else "csv"
    source = f"{{type: {source_type}, path: {_quoted(_relative(data, spec_dir))}, target: {_quoted(target)}}}"
    return _Data(source, len(frame), frame[target].to_numpy(), "table", notes=notes), target


def _read_npz(data: Path, spec_dir: Path) -> _Data:
    try:
        with open_npz(data) as archive:
            if "x" not in archive or "y" not in archive:
                raise DataError(f"{data.name}: nnspec init needs arrays named x and y; found {', '.join(archive.files)}")
            x, y = archive["x"], archive["y"]
    except DataError:
        raise
    except (OSError, ValueError) as e:  # an array in the archive that cannot be read
        raise DataError(f"cannot read {data.name}: {e}") from None
    if x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{data.name}: x needs one row per sample, (N, ...) with N = len(y); got x {x.shape}, y {y.shape}")
    shape = x.shape[1:]
    if len(shape) == 1:
        kind = "signal" if shape[0] >= SIGNAL_LENGTH else "vector"
    else:
        kind = "signal" if len(shape) == 2 else "image"
    notes = [f"x: {len(x)} samples of shape {tuple(shape)}, read as "
             + {"vector": "a feature vector", "signal": "a signal (channels, length)", "image": "an image (C, H, W)"}[kind]]
    source = f"{{type: npz, path: {_quoted(_relative(data, spec_dir))}}}"
    return _Data(source, len(x), y.reshape(len(y), -1)[:, 0] if y.ndim > 1 else y, kind, shape, notes)


def _read_images(data: Path, spec_dir: Path) -> _Data:
    from PIL import Image

    classes = sorted(p.name for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = {c: [f for f in sorted((data / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES] for c in classes}
    labels = [c for c in classes for _ in files[c]]
    if len(classes) < 2 or not labels:
        raise DataError(f"{data} needs one subfolder of images per class (at least two); found {len(classes)} with "
                        f"{len(labels)} images")
    sample = [f for c in classes for f in files[c][:10]]
    sizes, gray = [], True
    for f in sample:
        try:
            with Image.open(f) as img:
                sizes.append(max(img.size))
                gray = gray and img.mode in ("1", "L", "LA", "I", "I;16")
        except OSError:
            raise DataError(f"{f}: not a decodable image") from None
    side = int(min(64, max(8, np.median(sizes))))
    color = "grayscale" if gray else "rgb"
    notes = [f"images: {len(labels)} in {len(classes)} classes ({', '.join(classes)}), read as {color} "
             f"{side}x{side} (data.source.image_size)"]
    source = f"{{type: image_folder, path: {_quoted(_relative(data, spec_dir))}, image_size: {side}, color: {color}}}"
    return _Data(source, len(labels), np.array(labels), "image", (1 if gray else 3, side, side), notes)


def _layers(kind: str, shape: tuple[int, ...], outputs: int) -> tuple[list[str], str | None]:
    """The default network for a kind of data, as YAML flow lines, and the model.input.shape (or None)."""
    if kind in ("table", "vector"):
        return ["{type: linear, out_features: 64}", "{type: relu}", "{type: dropout, p: 0.1}",
                "{type: linear, out_features: 64}", "{type: relu}", f"{{type: linear, out_features: {outputs}}}"], None
    if kind == "signal":
        reshape = f"[1, {shape[0]}]" if len(shape) == 1 else None
        return ["{type: conv1d, out_channels: 32, kernel_size: 5, padding: 2}", "{type: relu}",
                "{type: max_pool1d, kernel_size: 2}",
                "{type: conv1d, out_channels: 32, kernel_size: 3, padding: 1}", "{type: relu}",
                "{type: global_avg_pool}", f"{{type: linear, out_features: {outputs}}}"], reshape
    return ["{type: conv2d, out_channels: 16, kernel_size: 3, padding: 1}", "{type: relu}",
            "{type: max_pool2d, kernel_size: 2}",
            "{type: conv2d, out_channels: 32, kernel_size: 3, padding: 1}", "{type: relu}",
            "{type: global_avg_pool}", f"{{type: linear, out_features: {outputs}}}"], None


def batch_size_for(samples: int) -> int:
    """A power of two near 1/40 of the samples, between 16 and 128: a few dozen steps per epoch."""
    return int(min(128, max(16, 2 ** round(math.log2(max(1, samples / 40))))))


def draft_spec(data: Path, spec_path: Path, target: str | None = None, task: str | None = None) -> Draft:
    """A commented spec for `data` (CSV, Parquet, npz or an image folder), to be written to spec_path."""
    data, spec_dir = Path(data), Path(spec_path).parent
    if not data.exists():
        raise DataError(f"{data} does not exist")
    if target is not None and not (data.is_file() and data.suffix.lower() in (".csv", ".parquet")):
        raise DataError("--target names a column: it applies to CSV and Parquet files only")
    if data.is_dir():
        info = _read_images(data, spec_dir)
    elif data.suffix.lower() in (".csv", ".parquet"):
        info, target = _read_table(data, spec_dir, target)
    elif data.suffix.lower() == ".npz":
        info = _read_npz(data, spec_dir)
    else:
        raise DataError(f"{data.name}: nnspec init reads .csv, .parquet, .npz files or an image folder")
    found, classes = infer_task(info.targets)
    if task is None:
        task = found
    elif task != "regression" and found == "regression" and info.targets.dtype.kind == "f":
        raise DataError(f"--task {task}: the target holds {classes} different fractional values; a classifier needs classes")
    elif task == "regression" and info.targets.dtype.kind not in "iuf":
        raise DataError("--task regression: the target is not numeric")
    elif task == "binary" and classes != 2:
        raise DataError(f"--task binary: the target has {classes} classes, not 2")
    outputs = 1 if task in ("binary", "regression") else classes
    layers, reshape = _layers(info.kind, info.shape, outputs)
    loss = {"classification": "cross_entropy", "binary": "bce", "regression": "mse"}[task]
    stratify = "true" if task != "regression" else "false"
    inferred = [f"task: {task}" + (f" ({classes} classes)" if task != "regression" else ""), *info.notes]
    lines = [f"# nnspec train {Path(spec_path).as_posix()}", "# Drafted by nnspec init from " + data.name + ": check it, then train it.",
             *[f"# {n}" for n in inferred], "version: 1", f"name: {model_name(data)}", f"task: {task}", "",
             "data:", f"  source: {info.source}",
             f"  split: {{validation: 0.15, test: 0.15, stratify: {stratify}, seed: 0}}"]
    if task == "regression":
        lines.append("  preprocessing: {normalize: standardize, normalize_target: true}")
    lines += ["", "model:"]
    if reshape:
        lines.append(f"  input: {{shape: {reshape}}}          # each row is one signal: (channels, length)")
    lines.append("  layers:")
    lines += [f"    - {layer}" for layer in layers]
    batch = batch_size_for(int(info.samples * 0.7))
    lines += ["", "training:", "  epochs: 200                   # early stopping usually ends it sooner",
              f"  batch_size: {batch}", f"  loss: {{type: {loss}}}", "  optimizer: {type: adam, lr: 0.001}",
              "  early_stopping: {monitor: val_loss, patience: 15, restore_best: true}", ""]
    inferred += [f"network: {'an MLP' if info.kind in ('table', 'vector') else 'a small CNN'} of {len(layers)} layers, "
                 f"Adam, batch size {batch}, early stopping on val_loss"]
    return Draft("\n".join(lines), inferred)
