"""Data source specs: each knows its shape cheaply (for validation) and loads its arrays (for training)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
from pydantic import Field, model_validator

from nnspec.preprocessing import IMAGE_SUFFIXES, Categories, ImageError, TableEncoder, decode_image, show_value

from .base import FiniteFloat, Pair, PositiveInt, Shape, StrictModel
from .tables import (Columns, TableStream, csv_batches, is_numeric, missing_cells, number_categories, parquet_batches, read_csv,
                     read_parquet, scan)
from .bundled import read_bundled

IN_MEMORY_LIMIT = 2 * 1024**3  # bytes of decoded float32 images above which `in_memory: auto` streams from disk
FIXED_ORDER = ("validation", "test")  # a source's own splits follow its main samples, in this order


class DataError(ValueError):
    """The data behind a spec is missing or unusable; `field` names the data.source key at fault, or is
    the whole spec path (a tuple) of the setting at fault."""

    def __init__(self, message: str, field: str | tuple | None = None):
        super().__init__(message)
        self.message, self.field = message, field

    @property
    def path(self) -> tuple:
        """Where in the spec the error points."""
        if isinstance(self.field, tuple):
            return self.field
        return ("data", "source") + ((self.field,) if self.field else ())


@dataclass
class FixedSplit:
    """A split the source brings itself (mnist1d's test set, a test_path file, x_test/y_test, a test/ folder),
    used instead of a fraction of data.split."""

    samples: int
    by: str  # what brings it, for messages: "mnist1d", "test_path (animals_test.csv)"
    origin: str  # where its samples come from, for the summary: "test_path animals_test.csv"
    key: str | None = None  # the data.source key that brings it (pointed at when data.split sets the fraction too)


@dataclass
class DataInfo:
    """What validation needs to know about a data source: sample shape, labels or targets, features."""

    shape: Shape
    labels: list[str] | None = None  # classifiers: class names in output order
    targets: list[str] | None = None  # regressors: output names
    features: list[dict] | None = None  # tables: manifest-style feature list
    image: dict | None = None  # image folders: {"size": [H, W], "color": ...}
    origin: str = ""  # where the main samples come from, for the summary: "animals.csv", "iris"
    fixed: dict[str, FixedSplit] = field(default_factory=dict)  # "validation"/"test" -> the source's own split

    @property
    def net_shape(self) -> Shape:
        """The per-sample shape the exported graph hands the network: the input shape plus one was-missing
        column per feature with `missing.indicator` (appended inside the graph)."""
        extra = sum(1 for f in self.features or () if (f.get("missing") or {}).get("indicator"))
        return (self.shape[0] + extra,) if extra else tuple(self.shape)


@dataclass
class RawData(DataInfo):
    """The loaded arrays: x float32 (N, *shape); y class indices (int64) or targets (float32, (N, T)).
    The source's own validation and test samples (`fixed`) come after its main ones, in FIXED_ORDER."""

    x: np.ndarray = field(default=None)
    y: np.ndarray = field(default=None)
    files: list[Path] | None = None  # streamed image folders: sample i is read_image(files[i], ...); x is None
    table: TableStream | None = None  # streamed tables: the files, read batch by batch; x is None
    notes: list[str] = field(default_factory=list)  # one line each, for the training log (e.g. dropped rows)
    gaps: dict[str, int] = field(default_factory=dict)  # tables: missing cells per feature column with gaps

    def parts(self) -> tuple[int, dict[str, np.ndarray]]:
        """How many main samples come first, and the indices of each of the source's own splits."""
        start = len(self.y) - sum(f.samples for f in self.fixed.values())
        main, out = start, {}
        for name in FIXED_ORDER:
            if name in self.fixed:
                out[name] = np.arange(start, start + self.fixed[name].samples)
                start += self.fixed[name].samples
        return main, out


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays one after another; a single array as it is (no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _label_text(value) -> str:
    return str(int(value)) if isinstance(value, float) and float(value).is_integer() else str(value)


def _distinct(values) -> tuple[list, np.ndarray]:
    """The distinct values of an array or Categories and each row's index among them, without a Python loop per row."""
    if isinstance(values, Categories):  # codes are small integers: counted, not sorted
        used = np.flatnonzero(np.bincount(values.codes, minlength=len(values.texts)))
        rank = np.zeros(len(values.texts), dtype=np.int64)
        rank[used] = np.arange(len(used))
        return [values.texts[i] for i in used.tolist()], rank[values.codes]
    uniques, inverse = np.unique(np.asarray(values), return_inverse=True)
    return uniques.tolist(), inverse.reshape(-1)


def encode_labels(values) -> tuple[list[str], np.ndarray]:
    """Class names in a stable order (numeric order when all are numbers) and each value's index."""
    uniques, inverse = _distinct(values)
    try:
        order = sorted(range(len(uniques)), key=lambda i: float(uniques[i]))
    except (TypeError, ValueError):
        order = sorted(range(len(uniques)), key=lambda i: str(uniques[i]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return [_label_text(uniques[i]) for i in order], rank[inverse]


def index_labels(labels: list[str], values, where: str) -> np.ndarray:
    """Each value's index in labels (a fixed split's classes are the training data's), or a DataError."""
    index = {name: i for i, name in enumerate(labels)}
    uniques, inverse = _distinct(values)
    texts = [_label_text(v) for v in uniques]
    unknown = next((t for t in texts if t not in index), None)
    if unknown is not None:
        raise DataError(f"{where}: class {unknown!r} does not occur in the training data ({', '.join(labels[:10])})")
    return np.array([index[t] for t in texts], dtype=np.int64)[inverse]


class MissingSpec(StrictModel):
    """Missing values (empty cells, NA) in csv/parquet feature columns: filled from the training split inside the export, or refused."""

    numeric: Literal["median", "mean", "constant", "error"] = Field("median", description="Numeric columns with gaps: filled with the training split's median or mean, or with fill_value (constant), inside the exported graph; error refuses the data and names every such column.")
    fill_value: FiniteFloat | None = Field(None, description="The number that numeric: constant fills gaps with; required by constant, refused by the other strategies.")
    categorical: Literal["missing_category", "most_frequent", "error"] = Field("missing_category", description="String and boolean columns with gaps: missing becomes a one-hot category of its own (null in the manifest), or the training split's most frequent category; error refuses the data.")
    indicator: bool = Field(False, description="Give each numeric column with gaps a was-missing 0/1 input, computed inside the exported graph (the network sees it; clients do not send it).")


class PreprocessingSpec(StrictModel):
    """Input normalization and missing-value fills, fitted on the training split (and kept in the export)."""

    normalize: Literal["standardize", "minmax", "none"] = Field("standardize", description="Input scaling fitted on the training split and built into the export: standardize (zero mean, unit variance), minmax (0..1) or none; per input value, per channel for images.")
    normalize_target: bool = Field(False, description="Regression only: standardize the targets for training; the export undoes it, so predictions come out in the data's own units.")
    missing: MissingSpec = Field(MissingSpec(), description="Missing values in table features; a column has gaps when any of the source's files (path, validation_path, test_path) has an empty cell in it, so this is known when the spec is validated.")
    unknown_category: Literal["error", "ignore"] = Field("error", description="A category the training file does not have, in a fixed validation/test file or a served request: an error, or ignore (an all-zero one-hot).")


DEFAULT_PREPROCESSING = PreprocessingSpec()


class _Source(StrictModel):
    def describe(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> DataInfo:
        """Shape, labels and features, as cheaply as the source allows."""
        return self.load(base, task, preprocessing)

    def load(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> RawData:  # pragma: no cover - abstract
        """All samples as arrays (the source's own validation and test samples after the main ones)."""
        raise NotImplementedError

    def _path(self, base: Path, key: str = "path") -> Path:
        path = (base / getattr(self, key)).resolve()
        if not path.exists():
            raise DataError(f"{path} does not exist", key)
        return path


_BUILTIN = {  # name: (shape, labels or None for regression, own test samples)
    "digits": ((64,), [str(i) for i in range(10)], 0),
    "iris": ((4,), ["setosa", "versicolor", "virginica"], 0),
    "wine": ((13,), ["class_0", "class_1", "class_2"], 0),
    "breast_cancer": ((30,), ["malignant", "benign"], 0),
    "diabetes": ((10,), None, 0),
    "mnist1d": ((40,), [str(i) for i in range(10)], 1000),
}


class BuiltinSource(_Source):
    """scikit-learn's bundled data sets and MNIST-1D, all generated or read offline."""

    type: Literal["builtin"] = Field(description="Selects a bundled data set, read or generated offline.")
    name: Literal["digits", "iris", "wine", "breast_cancer", "diabetes", "mnist1d"] = Field(
        description="Which data set: digits (8x8 images as 64 values), iris, wine or breast_cancer (two classes) for classifiers, "
                    "diabetes for regression, or mnist1d (40-value signals with its own 1000-sample test set).")

    def describe(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> DataInfo:
        shape, labels, own_test = _BUILTIN[self.name]
        fixed = {"test": FixedSplit(own_test, self.name, f"{self.name}'s own test set")} if own_test else {}
        return DataInfo(shape=shape, labels=labels, targets=None if labels else ["target"], origin=self.name, fixed=fixed)

    def load(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> RawData:
        info = self.describe(base, task)
        if self.name == "mnist1d":
            return _load_mnist1d(info)
        x, target, names = read_bundled(self.name)
        features = [{"name": n, "type": "numeric"} for n in names] if names else None
        y = target.astype(np.int64) if info.labels else target.astype(np.float32).reshape(-1, 1)
        return RawData(**vars(info) | {"features": features}, x=x.astype(np.float32), y=y)


def _load_mnist1d(info: DataInfo) -> RawData:
    """MNIST-1D generated locally with the package's own default arguments (never its download path);
    its test samples follow the training ones."""
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    x = np.concatenate([d["x"], d["x_test"]]).astype(np.float32)
    y = np.concatenate([d["y"], d["y_test"]]).astype(np.int64)
    return RawData(**vars(info), x=x, y=y)


@dataclass
class _Table:
    """One file of a table source: its columns, the data.source key naming it, and how messages number its rows."""

    part: str  # train, validation or test
    key: str
    file: str
    columns: Columns
    first_row: int
    row_word: str
    kept: np.ndarray | None = None  # the file positions of the rows kept (None: every row)

    def __len__(self) -> int:
        return len(self.columns)

    def rows(self, positions) -> str:
        """Rows as messages name them (`file rows 5, 9`), counted in the file as written."""
        positions = np.asarray(positions) if self.kept is None else self.kept[positions]
        shown = ", ".join(str(p + self.first_row) for p in positions[:5]) + (" ..." if len(positions) > 5 else "")
        return f"{self.row_word} {shown}"

    def where(self, positions) -> str:
        """rows() in a fixed file also names the file (the main file is named at the message's start)."""
        return self.rows(positions) if self.part == "train" else f"{self.file} {self.rows(positions)}"


_TABLE_FILES = (("train", "path"), ("validation", "validation_path"), ("test", "test_path"))  # FIXED_ORDER after train
_handed_on: dict = {}  # the table describe() read last, for the load() that follows it in the same command


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


class _TableSource(_Source):
    _first_row: ClassVar[int] = 1  # how the file numbers its first data row, for messages
    _row_word: ClassVar[str] = "rows"
    path: str = Field(description="The table file, relative to the spec's folder.")
    target: str = Field(description="Column holding the class labels, or the numeric target for regression; rows without one are dropped (with a note).")
    features: list[str] | None = Field(None, min_length=1, description="Input columns in this order; null takes every column but the target. Numeric columns stay numbers; others (strings, booleans) are one-hot encoded.")
    validation_path: str | None = Field(None, description="A file with the same columns used as the validation set instead of a fraction of path (leave data.split.validation unset).")
    test_path: str | None = Field(None, description="A file with the same columns used as the test set (scored on exactly its rows) instead of a fraction of path (leave data.split.test unset).")
    in_memory: bool = Field(True, description="true: read the table into memory once; false: keep it on disk and read it in record batches (Parquet row groups, CSV blocks) every epoch, shuffled within a buffer, for tables larger than memory (a streamed CSV takes its column types from its first block).")

    def _read(self, path: Path, target: str) -> Columns:  # pragma: no cover - abstract
        raise NotImplementedError

    def _batches(self, path: Path, target: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _handoff_key(self, base: Path, task: str, preprocessing: PreprocessingSpec) -> tuple:
        """What a loaded table depends on: the source, the task, the preprocessing and each file's identity."""
        files = tuple(_file_key(self._path(base, key)) for _, key in _TABLE_FILES if getattr(self, key) is not None)
        return self.model_dump_json(), task, preprocessing.model_dump_json(), files

    def describe(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> DataInfo:
        """Loads the table (its columns' kinds, categories and gaps decide the input) and hands what it read
        to the load() that follows in the same command, so a command reads each table once."""
        raw = self._load(base, task, preprocessing)
        _handed_on.clear()
        _handed_on[self._handoff_key(base, task, preprocessing)] = raw
        return DataInfo(**{f: getattr(raw, f) for f in DataInfo.__dataclass_fields__})

    def load(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> RawData:
        handed = _handed_on.pop(self._handoff_key(base, task, preprocessing), None)
        return handed if handed is not None else self._load(base, task, preprocessing)

    def _load(self, base: Path, task: str, preprocessing: PreprocessingSpec) -> RawData:
        tables = {part: self._table(base, part, key) for part, key in _TABLE_FILES if getattr(self, key) is not None}
        main = tables["train"]
        names = self.features or [c for c in main.columns.names if c != self.target]
        for table in tables.values():
            self._check_columns(table, names)
        notes = [note for table in tables.values() if (note := self._drop_missing_targets(table))]
        kinds = {name: is_numeric(main.columns.values[name]) for name in names}
        gaps = _gaps(tables, names)
        _refuse_gaps(gaps, kinds, preprocessing.missing, tables)
        columns = {part: _columns(table, names, kinds, main) for part, table in tables.items()}
        encoder = TableEncoder.fit(columns["train"], {str(n) for n in gaps}, preprocessing.missing.model_dump(),
                                   preprocessing.unknown_category)
        if preprocessing.unknown_category == "error":
            for part, table in tables.items():
                if part != "train":
                    _check_categories(table, columns[part], encoder, main)
        targets = self._targets(task, tables)
        targets["gaps"] = {str(name): sum(len(rows) for rows in parts.values()) for name, parts in gaps.items()}
        fixed = {part: FixedSplit(len(t), f"{t.key} ({t.file})", f"{t.key} {t.file}", t.key)
                 for part, t in tables.items() if part != "train"}
        if not self.in_memory:
            stream = TableStream([(self._path(base, t.key), t.kept) for t in tables.values()], self._batches, self.target,
                                 encoder.features, {str(n): kind for n, kind in kinds.items()})
            return RawData(shape=(encoder.width,), features=encoder.features, origin=main.file, fixed=fixed, notes=notes,
                           table=stream, **targets)
        x = np.empty((sum(len(t) for t in tables.values()), encoder.width), dtype=np.float32)
        start = 0
        for part, table in tables.items():
            encoder.encode_columns(columns.pop(part), out=x[start : start + len(table)])  # each file's columns freed once encoded
            start += len(table)
        return RawData(shape=(x.shape[1],), features=encoder.features, origin=main.file, fixed=fixed, x=x, notes=notes, **targets)

    def _targets(self, task: str, tables: dict[str, _Table]) -> dict:
        """y of every file, with the labels (the main file's classes) or the target's name."""
        values = {part: t.columns.values[self.target] for part, t in tables.items()}
        if task == "regression":
            for part, table in tables.items():
                if not is_numeric(values[part]):
                    raise DataError(f"{table.file}: regression target '{self.target}' must be numeric")
            return {"targets": [self.target], "y": _stack([v.astype(np.float32).reshape(-1, 1) for v in values.values()])}
        labels, y = encode_labels(values["train"])
        ys = [y] + [index_labels(labels, values[part], f"{t.file}: column '{self.target}'")
                    for part, t in tables.items() if part != "train"]
        return {"labels": labels, "y": _stack(ys)}

    def _table(self, base: Path, part: str, key: str) -> _Table:
        path = self._path(base, key)
        try:
            columns = self._read(path, self.target) if self.in_memory else scan(self._batches(path, self.target), self.target)
        except Exception as e:  # the table library's own message is the useful part
            hint = "" if self.in_memory else " (in_memory: false reads the file in blocks, each CSV column typed by the first block)"
            raise DataError(f"cannot read {path.name}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}{hint}",
                            key) from None
        return _Table(part, key, path.name, columns, self._first_row, self._row_word)

    def _check_columns(self, table: _Table, names: list[str]) -> None:
        columns = table.columns.names
        if self.target not in columns:
            raise DataError(f"no column '{self.target}' in {table.file}; columns: {', '.join(map(str, columns))}",
                            "target" if table.part == "train" else table.key)
        absent = [n for n in names if n not in columns]
        if absent:
            raise DataError(f"no column {absent[0]!r} in {table.file}", "features" if table.part == "train" else table.key)

    def _drop_missing_targets(self, table: _Table) -> str | None:
        """Drop the rows without a target (never imputed); the note that says so, or None."""
        absent = missing_cells(table.columns.values[self.target])
        if not absent.any():
            return None
        count = int(absent.sum())
        note = (f"{table.file}: {count} {'row' if count == 1 else 'rows'} without a target ({self.target}) dropped "
                f"({table.rows(np.flatnonzero(absent))})")
        table.kept = np.flatnonzero(~absent)
        table.columns = table.columns.take(table.kept)
        return note


def _gaps(tables: dict[str, _Table], names: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """{column: {part: positions of its missing cells}} for the columns with gaps, in column order."""
    gaps: dict[str, dict[str, np.ndarray]] = {}
    for name in names:
        for part, table in tables.items():
            rows = np.flatnonzero(missing_cells(table.columns.values[name]))
            if len(rows):
                gaps.setdefault(name, {})[part] = rows
    return gaps


def _refuse_gaps(gaps: dict, numeric: dict, missing: MissingSpec, tables: dict[str, _Table]) -> None:
    """A DataError naming every column with gaps whose strategy is error."""
    refused = [name for name in gaps if (missing.numeric if numeric[name] else missing.categorical) == "error"]
    if not refused:
        return
    detail = "; ".join(f"column '{name}' has missing values ({'; '.join(tables[p].where(rows) for p, rows in gaps[name].items())})"
                       for name in refused)
    kind = "numeric" if numeric[refused[0]] else "categorical"
    raise DataError(f"{tables['train'].file}: {detail}", ("data", "preprocessing", "missing", kind))


def _columns(table: _Table, names: list[str], numeric: dict[str, bool], main: _Table) -> dict:
    """The feature columns as TableEncoder takes them, each of the kind it has in the main file: numbers
    (float32, NaN gaps) or Categories; a fixed file's numbers in a categorical column become their text."""
    out = {}
    for name in names:
        values = table.columns.values[name]
        if numeric[name] and not is_numeric(values):
            raise DataError(f"{table.file}: column '{name}' must be numeric, as it is in {main.file}", table.key)
        out[str(name)] = values if numeric[name] or not is_numeric(values) else number_categories(values)
    return out


def _check_categories(table: _Table, columns: dict, encoder: TableEncoder, main: _Table) -> None:
    """A DataError for the first category of a fixed file that the training file does not have."""
    for feature in encoder.features:
        if feature["type"] != "categorical":
            continue
        values = columns[feature["name"]]
        unknown = np.flatnonzero((values.offsets(feature["categories"]) < 0) & (values.codes >= 0))
        if len(unknown):
            bad = int(unknown[0])
            raise DataError(f"{table.file}: column '{feature['name']}': unknown category {show_value(values.text(bad))} ({table.rows([bad])}), "
                            f"not in {main.file}; data.preprocessing.unknown_category: ignore encodes it as all zeros", table.key)


class CsvSource(_TableSource):
    """A CSV file: one target column, numeric and string (one-hot) feature columns."""

    type: Literal["csv"] = Field(description="Selects a CSV file with a header row.")
    _first_row: ClassVar[int] = 2  # line 1 is the header
    _row_word: ClassVar[str] = "file rows"

    def _read(self, path: Path, target: str) -> Columns:
        return read_csv(path, target)

    def _batches(self, path: Path, target: str):
        return csv_batches(path, target)


class ParquetSource(_TableSource):
    """A Parquet file, read like a CSV."""

    type: Literal["parquet"] = Field(description="Selects a Parquet file.")

    def _read(self, path: Path, target: str) -> Columns:
        return read_parquet(path, target)

    def _batches(self, path: Path, target: str):
        return parquet_batches(path, target)


def open_npz(path: Path):
    """An .npz archive of named arrays (pickles refused), or a DataError saying why the file is not one."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path.name}: {e}", "path") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path.name} holds one array, not an .npz archive of named arrays (np.savez writes one)", "path")
    return archive


_NPZ_PARTS = (("validation", "_val"), ("test", "_test"))  # a split's arrays: the x and y names plus this suffix


class NpzSource(_Source):
    """A NumPy .npz archive with a features array and a labels/targets array (and optionally its own validation and test arrays)."""

    type: Literal["npz"] = Field(description="Selects a NumPy .npz archive; arrays named like x and y plus _val or _test (x_val, y_val, x_test, y_test) are used as the validation and test sets.")
    path: str = Field(description="The .npz archive, relative to the spec's folder.")
    x: str = Field("x", description="Name of the numeric inputs array, one row per sample: shape (N, ...).")
    y: str = Field("y", description="Name of the targets array: class labels (N,) for classifiers, numeric (N,) or (N, T) for regression.")

    def load(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> RawData:
        path = self._path(base)
        try:
            with open_npz(path) as archive:
                for key in (self.x, self.y):
                    if key not in archive:
                        raise DataError(f"no array '{key}' in {path.name}; arrays: {', '.join(archive.files)}", "x" if key == self.x else "y")
                arrays = {"train": (self.x, self.y)}
                for part, suffix in _NPZ_PARTS:
                    keys = (self.x + suffix, self.y + suffix)
                    present = [k for k in keys if k in archive]
                    if len(present) == 1:
                        absent = next(k for k in keys if k not in archive)
                        raise DataError(f"{path.name} has '{present[0]}' but no '{absent}'; the {part} set needs both", "path")
                    if present:
                        arrays[part] = keys
                loaded = {part: (archive[xk], archive[yk]) for part, (xk, yk) in arrays.items()}
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {path.name}: {e}", "path") from None
        for part, (xk, yk) in arrays.items():
            self._check(path, task, xk, yk, *loaded[part], loaded["train"][0].shape[1:] if part != "train" else None)
        x = _stack([loaded[part][0].astype(np.float32) for part in arrays])
        fixed = {part: FixedSplit(len(loaded[part][1]), f"{path.name} ({xk}, {yk})", f"{xk}/{yk} in {path.name}", "path")
                 for part, (xk, yk) in arrays.items() if part != "train"}
        info = dict(shape=x.shape[1:], origin=path.name, fixed=fixed, x=x)
        if task == "regression":
            y = _stack([loaded[part][1].astype(np.float32).reshape(len(loaded[part][1]), -1) for part in arrays])
            return RawData(**info, targets=[f"target_{i}" for i in range(y.shape[1])] if y.shape[1] > 1 else ["target"], y=y)
        labels, y = encode_labels(loaded["train"][1].reshape(-1))
        ys = [y] + [index_labels(labels, loaded[part][1].reshape(-1), f"{path.name}: '{yk}'")
                    for part, (_, yk) in arrays.items() if part != "train"]
        return RawData(**info, labels=labels, y=_stack(ys))

    def _check(self, path: Path, task: str, xk: str, yk: str, x: np.ndarray, y: np.ndarray, shape) -> None:
        """One (x, y) pair of arrays as a task needs them, or a DataError naming the array."""
        if len(x) != len(y):
            raise DataError(f"{path.name}: '{xk}' has {len(x)} rows but '{yk}' has {len(y)}")
        if x.dtype.kind not in "biuf":
            raise DataError(f"{path.name}: '{xk}' must be numeric, got dtype {x.dtype}")
        if x.ndim < 2:
            raise DataError(f"{path.name}: '{xk}' needs one row per sample, shape (N, ...); got shape {x.shape}", "x")
        if shape is not None and x.shape[1:] != shape:
            raise DataError(f"{path.name}: '{xk}' has samples of shape {x.shape[1:]}, but '{self.x}' has {shape}", "path")
        if task == "regression" and y.dtype.kind not in "biuf":
            raise DataError(f"{path.name}: regression targets '{yk}' must be numeric, got dtype {y.dtype}", "y")
        if task != "regression" and (y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1)):
            raise DataError(f"{path.name}: class labels '{yk}' need one label per sample, shape (N,); got shape {y.shape}"
                            " (one-hot labels: store the class index instead)", "y")
def read_image(file: Path, size: tuple[int, int], color: str) -> np.ndarray:
    """One training image as the model sees it (nnspec.preprocessing.decode_image), or a DataError naming the file."""
    try:
        return decode_image(file, size, color)
    except ImageError as e:
        raise DataError(f"{file}: {e}") from None


class ImageFolderSource(_Source):
    """A folder with one subfolder of images per class (or train/, test/ and val/ folders of them), decoded with Pillow and resized."""

    type: Literal["image_folder"] = Field(description="Selects a folder of images, one subfolder per class (or train/ and test/ folders of them).")
    path: str = Field(description="The folder, relative to the spec's folder; each subfolder's name is a class label; when it holds train/ and test/ (and optionally val/ or validation/), those are the splits, each with one subfolder per class.")
    image_size: Pair[PositiveInt] = Field(description="[height, width] in pixels every image is resized to (bilinear); one integer means a square.")
    color: Literal["grayscale", "rgb"] = Field("rgb", description="Color mode images are converted to: grayscale (1 channel) or rgb (3 channels).")
    in_memory: Literal["auto", True, False] = Field("auto", description=f"true: decode every image into memory up front; false: stream batches from disk; auto: stream when the decoded float32 images exceed {IN_MEMORY_LIMIT / 1024**3:g} GiB.")

    @model_validator(mode="before")
    @classmethod
    def _square(cls, data):
        if isinstance(data, dict) and isinstance(data.get("image_size"), int) and not isinstance(data.get("image_size"), bool):
            data = {**data, "image_size": [data["image_size"]] * 2}
        return data

    def _layout(self, base: Path) -> tuple[Path, dict[str, Path]]:
        """The folder and its parts: {"train": folder}, or the train/, test/ (and val/ or validation/) subfolders
        when the folder holds train/ and test/."""
        root = self._path(base)
        if not root.is_dir():
            raise DataError(f"{root} is not a folder; image_folder needs a folder with one subfolder per class", "path")
        if not ((root / "train").is_dir() and (root / "test").is_dir()):
            return root, {"train": root}
        validation = [root / n for n in ("val", "validation") if (root / n).is_dir()]
        if len(validation) > 1:
            raise DataError(f"{root} has both val/ and validation/; keep one as the validation set", "path")
        return root, {"train": root / "train", **({"validation": validation[0]} if validation else {}), "test": root / "test"}

    def _classes(self, folder: Path) -> list[str]:
        classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise DataError(f"{folder} has no class subfolders", "path")
        return classes

    def _images(self, folder: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
        """The images under folder (sorted, class by class) and their class indices; a DataError when there are none."""
        files, ys = [], []
        for index, name in enumerate(classes):
            if (folder / name).is_dir():
                for file in sorted((folder / name).iterdir()):
                    if file.suffix.lower() in IMAGE_SUFFIXES:
                        files.append(file)
                        ys.append(index)
        if not files:
            raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}", "path")
        return files, ys

    def _fixed_classes(self, folder: Path, classes: list[str]) -> None:
        extra = sorted(set(self._classes(folder)) - set(classes))
        if extra:
            raise DataError(f"{folder} has class folders the training folder lacks: {', '.join(extra)}", "path")

    def _info(self, root: Path, parts: dict[str, Path], classes: list[str], counts: dict[str, int]) -> dict:
        channels = 1 if self.color == "grayscale" else 3
        fixed = {part: FixedSplit(counts[part], f"{root.name} ({folder.name}/)", f"folder {root.name}/{folder.name}", "path")
                 for part, folder in parts.items() if part != "train"}
        origin = root.name if parts["train"] == root else f"{root.name}/{parts['train'].name}"
        return dict(shape=(channels, *self.image_size), labels=classes, image={"size": list(self.image_size), "color": self.color},
                    origin=origin, fixed=fixed)

    def describe(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> DataInfo:
        root, parts = self._layout(base)
        classes = self._classes(parts["train"])
        counts = {}
        for part, folder in parts.items():
            if part != "train":
                self._fixed_classes(folder, classes)
                counts[part] = len(self._images(folder, classes)[0])
        return DataInfo(**self._info(root, parts, classes, counts))

    def streams(self, count: int) -> bool:
        """Whether `count` images are read from disk batch by batch rather than decoded into memory up front."""
        if self.in_memory == "auto":
            channels = 1 if self.color == "grayscale" else 3
            return count * channels * self.image_size[0] * self.image_size[1] * 4 > IN_MEMORY_LIMIT
        return not self.in_memory

    def load(self, base: Path, task: str, preprocessing: PreprocessingSpec = DEFAULT_PREPROCESSING) -> RawData:
        """Every image decoded into x; or, when streaming, the file list alone (sorted, class by class;
        the test/ and val/ images after the training ones)."""
        root, parts = self._layout(base)
        classes = self._classes(parts["train"])
        files, ys, counts = [], [], {}
        for part, folder in parts.items():
            if part != "train":
                self._fixed_classes(folder, classes)
            part_files, part_ys = self._images(folder, classes)
            files += part_files
            ys += part_ys
            counts[part] = len(part_files)
        info = self._info(root, parts, classes, counts)
        y = np.array(ys, dtype=np.int64)
        if self.streams(len(files)):
            return RawData(**info, y=y, files=files)
        return RawData(**info, x=np.stack([read_image(f, self.image_size, self.color) for f in files]), y=y)


DataSource = Annotated[Union[BuiltinSource, CsvSource, ParquetSource, NpzSource, ImageFolderSource], Field(discriminator="type")]
