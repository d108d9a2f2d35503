"""Data source specs: each knows its shape cheaply (for validation) and loads its arrays (for training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from nnspec.preprocessing import IMAGE_SUFFIXES, ImageError, TableEncoder, decode_image

from .base import Pair, PositiveInt, Shape, StrictModel

IN_MEMORY_LIMIT = 2 * 1024**3  # bytes of decoded float32 images above which `in_memory: auto` streams from disk


class DataError(ValueError):
    """The data behind a spec is missing or unusable; `field` names the data.source key at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass
class DataInfo:
    """What validation needs to know about a data source: sample shape, labels or targets, features."""

    shape: Shape
    labels: list[str] | None = None  # classifiers: class names in output order
    targets: list[str] | None = None  # regressors: output names
    features: list[dict] | None = None  # tables: manifest-style feature list
    image: dict | None = None  # image folders: {"size": [H, W], "color": ...}
    own_test: int = 0  # samples in the source's own test split (data.split.test must stay unset)


@dataclass
class RawData(DataInfo):
    """The loaded arrays: x float32 (N, *shape); y class indices (int64) or targets (float32, (N, T))."""

    x: np.ndarray = field(default=None)
    y: np.ndarray = field(default=None)
    fixed_test: tuple[np.ndarray, np.ndarray] | None = None  # a source's own test split (mnist1d)
    files: list[Path] | None = None  # streamed image folders: sample i is read_image(files[i], ...); x is None


def encode_labels(values) -> tuple[list[str], np.ndarray]:
    """Class names in a stable order (numeric order when all are numbers) and each value's index."""
    values = np.asarray(values)
    uniques = list(dict.fromkeys(values.tolist()))
    try:
        uniques.sort(key=float)
    except (TypeError, ValueError):
        uniques.sort(key=str)
    index = {v: i for i, v in enumerate(uniques)}
    labels = [str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v) for v in uniques]
    return labels, np.array([index[v] for v in values.tolist()], dtype=np.int64)


class _Source(StrictModel):
    def describe(self, base: Path, task: str) -> DataInfo:
        """Shape, labels and features, as cheaply as the source allows."""
        return self.load(base, task)

    def load(self, base: Path, task: str) -> RawData:  # pragma: no cover - abstract
        """All samples as arrays."""
        raise NotImplementedError

    def _path(self, base: Path) -> Path:
        path = (base / self.path).resolve()
        if not path.exists():
            raise DataError(f"{path} does not exist", "path")
        return path


_BUILTIN = {  # name: (shape, labels or None for regression, sklearn loader (None: mnist1d), own test samples)
    "digits": ((64,), [str(i) for i in range(10)], "load_digits", 0),
    "iris": ((4,), ["setosa", "versicolor", "virginica"], "load_iris", 0),
    "wine": ((13,), ["class_0", "class_1", "class_2"], "load_wine", 0),
    "breast_cancer": ((30,), ["malignant", "benign"], "load_breast_cancer", 0),
    "diabetes": ((10,), None, "load_diabetes", 0),
    "mnist1d": ((40,), [str(i) for i in range(10)], None, 1000),
}


class BuiltinSource(_Source):
    """scikit-learn's bundled data sets and MNIST-1D, all generated or read offline."""

    type: Literal["builtin"] = Field(description="Selects a bundled data set, read or generated offline.")
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes", "mnist1d"] = Field(
        description="Which data set: digits (8x8 images as 64 values), iris, wine or breast_cancer (two classes) for classifiers, "
                    "diabetes for regression, or mnist1d (40-value signals with its own 1000-sample test set).")

    def describe(self, base: Path, task: str) -> DataInfo:
        shape, labels, _, own_test = _BUILTIN[self.name]
        return DataInfo(shape=shape, labels=labels, targets=None if labels else ["target"], own_test=own_test)

    def load(self, base: Path, task: str) -> RawData:
        info = self.describe(base, task)
        loader = _BUILTIN[self.name][2]
        if loader is None:
            return _load_mnist1d(info)
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)()
        features = [{"name": str(n), "type": "numeric"} for n in bunch.feature_names] if self.name != "digits" else None
        y = bunch.target.astype(np.int64) if info.labels else bunch.target.astype(np.float32).reshape(-1, 1)
        return RawData(**vars(info) | {"features": features}, x=bunch.data.astype(np.float32), y=y)


def _load_mnist1d(info: DataInfo) -> RawData:
    """MNIST-1D generated locally with the package's own default arguments (never its download path)."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x, y = d["x"].astype(np.float32), d["y"].astype(np.int64)
    xt, yt = d["x_test"].astype(np.float32), d["y_test"].astype(np.int64)
    return RawData(**vars(info), x=x, y=y, fixed_test=(xt, yt))


class _TableSource(_Source):
    _first_row: ClassVar[int] = 1  # how the file numbers its first data row, for messages
    _row_word: ClassVar[str] = "rows"
    path: str = Field(description="The table file, relative to the spec's folder.")
    target: str = Field(description="Column holding the class labels, or the numeric target for regression.")
    features: list[str] | None = Field(None, min_length=1, description="Input columns in this order; null takes every column but the target. Numeric columns stay numbers; others (strings, booleans) are one-hot encoded.")

    def _read(self, path: Path):  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, base: Path, task: str) -> RawData:
        path = self._path(base)
        try:
            frame = self._read(path)
        except Exception as e:  # the table library's own message is the useful part
            raise DataError(f"cannot read {path.name}: {e}", "path") from None
        if self.target not in frame.columns:
            raise DataError(f"no column '{self.target}' in {path.name}; columns: {', '.join(map(str, frame.columns))}", "target")
        names = self.features or [c for c in frame.columns if c != self.target]
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise DataError(f"no column {missing[0]!r} in {path.name}", "features")
        for col in [*names, self.target]:
            bad = np.flatnonzero(frame[col].isna().to_numpy())  # positions: the frame's index may be anything
            if len(bad):
                rows = ", ".join(str(r + self._first_row) for r in bad[:5]) + (" ..." if len(bad) > 5 else "")
                raise DataError(f"{path.name}: column '{col}' has missing values ({self._row_word} {rows})")
        # Numeric columns as numbers; any other (strings, booleans) as categories spelled like a raw CSV row.
        columns = {str(name): frame[name].to_numpy(np.float32) if frame[name].dtype.kind in "iuf"
                   else frame[name].astype(str).to_numpy() for name in names}
        encoder = TableEncoder.fit(columns)
        x, features = encoder.encode_columns(columns), encoder.features
        target = frame[self.target]
        if task == "regression":
            if target.dtype.kind not in "biuf":
                raise DataError(f"{path.name}: regression target '{self.target}' must be numeric")
            return RawData(shape=(x.shape[1],), targets=[self.target], features=features, x=x,
                           y=target.to_numpy(np.float32).reshape(-1, 1))
        labels, y = encode_labels(target.to_numpy())
        return RawData(shape=(x.shape[1],), labels=labels, features=features, x=x, y=y)


class CsvSource(_TableSource):
    """A CSV file: one target column, numeric and string (one-hot) feature columns."""

    type: Literal["csv"] = Field(description="Selects a CSV file with a header row.")
    _first_row: ClassVar[int] = 2  # line 1 is the header
    _row_word: ClassVar[str] = "file rows"

    def _read(self, path: Path):
        import pandas as pd

        return pd.read_csv(path)


class ParquetSource(_TableSource):
    """A Parquet file, read like a CSV."""

    type: Literal["parquet"] = Field(description="Selects a Parquet file.")

    def _read(self, path: Path):
        import pandas as pd

        return pd.read_parquet(path)


class NpzSource(_Source):
    """A NumPy .npz archive with a features array and a labels/targets array."""

    type: Literal["npz"] = Field(description="Selects a NumPy .npz archive.")
    path: str = Field(description="The .npz archive, relative to the spec's folder.")
    x: str = Field("x", description="Name of the numeric inputs array, one row per sample: shape (N, ...).")
    y: str = Field("y", description="Name of the targets array: class labels (N,) for classifiers, numeric (N,) or (N, T) for regression.")

    def load(self, base: Path, task: str) -> RawData:
        path = self._path(base)
        try:
            with np.load(path, allow_pickle=False) as archive:
                for key in (self.x, self.y):
                    if key not in archive:
                        raise DataError(f"no array '{key}' in {path.name}; arrays: {', '.join(archive.files)}", "x" if key == self.x else "y")
                x, y = archive[self.x], archive[self.y]
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path.name}: {e}", "path") from None
        if len(x) != len(y):
            raise DataError(f"{path.name}: '{self.x}' has {len(x)} rows but '{self.y}' has {len(y)}")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path.name}: '{self.x}' must be numeric, got dtype {x.dtype}")
        if x.ndim < 2:
            raise DataError(f"{path.name}: '{self.x}' needs one row per sample, shape (N, ...); got shape {x.shape}", "x")
        x = x.astype(np.float32)
        if task == "regression":
            if y.dtype.kind not in "biuf":
                raise DataError(f"{path.name}: regression targets '{self.y}' must be numeric, got dtype {y.dtype}", "y")
            y = y.astype(np.float32).reshape(len(y), -1)
            return RawData(shape=x.shape[1:], targets=[f"target_{i}" for i in range(y.shape[1])] if y.shape[1] > 1 else ["target"], x=x, y=y)
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
            raise DataError(f"{path.name}: class labels '{self.y}' need one label per sample, shape (N,); got shape {y.shape}"
                            " (one-hot labels: store the class index instead)", "y")
        labels, idx = encode_labels(y.reshape(-1))
        return RawData(shape=x.shape[1:], labels=labels, x=x, y=idx)


def read_image(file: Path, size: tuple[int, int], color: str) -> np.ndarray:
    """One training image as the model sees it (nnspec.preprocessing.decode_image), or a DataError naming the file."""
    try:
        return decode_image(file, size, color)
    except ImageError as e:
        raise DataError(f"{file}: {e}") from None


class ImageFolderSource(_Source):
    """A folder with one subfolder of images per class, decoded with Pillow and resized."""

    type: Literal["image_folder"] = Field(description="Selects a folder of images, one subfolder per class.")
    path: str = Field(description="The folder, relative to the spec's folder; each subfolder's name is a class label.")
    image_size: Pair[PositiveInt] = Field(description="[height, width] in pixels every image is resized to (bilinear); one integer means a square.")
    color: Literal["grayscale", "rgb"] = Field("rgb", description="Color mode images are converted to: grayscale (1 channel) or rgb (3 channels).")
    in_memory: Literal["auto", True, False] = Field("auto", description=f"true: decode every image into memory up front; false: stream batches from disk; auto: stream when the decoded float32 images exceed {IN_MEMORY_LIMIT / 1024**3:g} GiB.")

    @model_validator(mode="before")
    @classmethod
    def _square(cls, data):
        if isinstance(data, dict) and isinstance(data.get("image_size"), int) and not isinstance(data.get("image_size"), bool):
            data = {**data, "image_size": [data["image_size"]] * 2}
        return data

    def _classes(self, base: Path) -> tuple[Path, list[str]]:
        root = self._path(base)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder; image_folder needs a folder with one subfolder per class", "path")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{root} has no class subfolders", "path")
        return root, classes

    def _info(self, classes) -> dict:
        channels = 1 if self.color == "grayscale" else 3
        return dict(shape=(channels, *self.image_size), labels=classes,
                    image={"size": list(self.image_size), "color": self.color})

    def describe(self, base: Path, task: str) -> DataInfo:
        return DataInfo(**self._info(self._classes(base)[1]))

    def streams(self, count: int) -> bool:
        """Whether `count` images are read from disk batch by batch rather than decoded into memory up front."""
        if self.in_memory == "auto":
            channels = 1 if self.color == "grayscale" else 3
            return count * channels * self.image_size[0] * self.image_size[1] * 4 > IN_MEMORY_LIMIT
        return not self.in_memory

    def load(self, base: Path, task: str) -> RawData:
        """Every image decoded into x; or, when streaming, the file list alone (sorted, class by class)."""
        root, classes = self._classes(base)
        files, ys = [], []
        for index, name in enumerate(classes):
            for file in sorted((root / name).iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(file)
                    ys.append(index)
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}", "path")
        y = np.array(ys, dtype=np.int64)
        if self.streams(len(files)):
            return RawData(**self._info(classes), y=y, files=files)
        return RawData(**self._info(classes), x=np.stack([read_image(f, self.image_size, self.color) for f in files]), y=y)


DataSource = Annotated[Union[BuiltinSource, CsvSource, ParquetSource, NpzSource, ImageFolderSource], Field(discriminator="type")]
