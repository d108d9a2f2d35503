"""CSV and Parquet files read with pyarrow into lean columns: numbers straight to float32 (NaN gaps),
anything else (strings, booleans) dictionary-encoded as `Categories` (no Python object per row).

Columns are converted one at a time and each arrow column is dropped once converted, so a table never
exists as float64 and float32 at once; Parquet is read column by column. The cells read as missing are
pandas' defaults (`MISSING_CELLS`), so `nnspec predict` reads a CSV row's gaps as training read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from nnspec.preprocessing import MISSING_CELLS, Categories, TableEncoder

STREAM_BLOCK = 1 << 22  # bytes of CSV text per record batch when a table streams
STREAM_ROWS = 1 << 16  # rows per record batch of a streamed Parquet file


@dataclass
class Columns:
    """A file's columns as read: {name: float32 array or Categories}, in file order."""

    names: list[str]
    values: dict[str, "np.ndarray | Categories"]

    def __len__(self) -> int:
        return len(next(iter(self.values.values()))) if self.values else 0

    def take(self, rows: np.ndarray) -> "Columns":
        """Only these rows."""
        return Columns(self.names, {n: v[rows] for n, v in self.values.items()})


def is_numeric(values) -> bool:
    """Whether a column read by this module is numbers, not Categories."""
    return not isinstance(values, Categories)


def missing_cells(values) -> np.ndarray:
    """(N,) bool: the column's missing cells (NaN numbers, -1 codes)."""
    if isinstance(values, NumericGaps):
        return values.missing()
    return np.isnan(values) if is_numeric(values) else values.codes < 0


def number_categories(values: np.ndarray) -> Categories:
    """Numbers as Categories, spelled as a CSV holds them (`3` for an integral value)."""
    present = ~np.isnan(values)
    uniques, codes = np.unique(values[present], return_inverse=True)
    out = np.full(len(values), -1, np.int32)
    out[present] = codes
    return Categories(out, [str(int(v)) if v.is_integer() else str(v) for v in uniques.tolist()])


def _bits(buffer, offset: int, length: int) -> np.ndarray:
    """An arrow bitmap (validity or booleans) as a bool array."""
    return np.unpackbits(np.frombuffer(buffer, np.uint8), count=offset + length, bitorder="little")[offset:].astype(bool)


def _primitive(chunk, missing) -> np.ndarray:
    """An arrow array of numbers or booleans read from its buffers (Array.to_numpy would import pandas),
    `missing` where it has nulls."""
    import pyarrow as pa

    kind = chunk.type
    if pa.types.is_boolean(kind):
        values = _bits(chunk.buffers()[1], chunk.offset, len(chunk))
    else:
        dtype = np.dtype(f"{'f' if pa.types.is_floating(kind) else 'i' if pa.types.is_signed_integer(kind) else 'u'}{kind.bit_width // 8}")
        values = np.frombuffer(chunk.buffers()[1], dtype, count=chunk.offset + len(chunk))[chunk.offset :]
    if chunk.null_count:
        values = np.where(_bits(chunk.buffers()[0], chunk.offset, len(chunk)), values, missing)
    return values


def _chunks_to_numpy(column, dtype, missing) -> np.ndarray:
    """A chunked array of numbers or booleans as one NumPy array of `dtype`, nulls as `missing`, chunk by
    chunk into one allocation."""
    out = np.empty(len(column), dtype)
    start = 0
    for chunk in column.chunks:
        out[start : start + len(chunk)] = _primitive(chunk, missing)
        start += len(chunk)
    return out


def _convert(column, exact: bool = False) -> "np.ndarray | Categories":
    """One arrow (chunked) array as a lean column: integers, floats and all-null columns as float32 with NaN
    gaps (NaN counts as missing, as in pandas); strings and booleans as Categories spelled like a raw CSV row
    (`True`); other types (dates, decimals) as pandas spells them. `exact`: numbers as float64 (a target)."""
    import pyarrow as pa

    if isinstance(column, pa.Array):  # a record batch's column
        column = pa.chunked_array([column])
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_null(kind):
        return np.full(len(column), np.nan, np.float64 if exact else np.float32)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _chunks_to_numpy(column, np.float64 if exact else np.float32, np.nan)
    if pa.types.is_boolean(kind):
        return Categories(_chunks_to_numpy(column, np.int32, -1), ["False", "True"])
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        texts = column.to_pandas().astype(str).to_numpy(dtype=object)  # rare types: spelled as pandas spells them
        texts[column.is_null().to_numpy(zero_copy_only=False)] = None
        column = pa.chunked_array([pa.array(texts.tolist(), pa.string())])
    encoded = column.dictionary_encode().unify_dictionaries()
    texts = encoded.chunk(0).dictionary.to_pylist() if encoded.num_chunks else []
    return Categories(_chunks_to_numpy(pa.chunked_array([c.indices for c in encoded.chunks]), np.int32, -1), texts)


def _columns(table, target: str | None = None, names: list[str] | None = None) -> Columns:
    """An arrow table as Columns (the target's numbers exact), dropping each arrow column once converted."""
    names = table.column_names if names is None else names
    arrays = dict(zip(table.column_names, table.columns))
    del table
    values = {}
    for name in names:
        values[name] = _convert(arrays.pop(name), name == target)
    return Columns(names, values)


def _check_unique(names: list[str], file: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"column {name!r} appears twice in {file}")
        seen.add(name)


def _csv_options(types: dict | None = None, block: int | None = None):
    import pyarrow.csv as csv

    read = csv.ReadOptions(block_size=block) if block else csv.ReadOptions()
    convert = csv.ConvertOptions(null_values=sorted(MISSING_CELLS), strings_can_be_null=True,
                                 true_values=["True", "TRUE", "true"], false_values=["False", "FALSE", "false"],
                                 column_types=types or {})
    return read, convert


def _temporal(schema) -> dict:
    """Columns pyarrow reads as dates or times, which pandas keeps as their text: to be read as strings."""
    import pyarrow as pa

    return {f.name: pa.string() for f in schema if pa.types.is_temporal(f.type)}


def read_csv(path: Path, target: str | None = None) -> Columns:
    """A whole CSV file, block by block into lean columns (the file's text and float64 values never held
    whole); when a column's type changes after the first block, read again with the types inferred over
    every row (as pandas infers them)."""
    import pyarrow as pa
    import pyarrow.csv as csv

    try:
        columns = gather(csv_batches(path, target))
    except pa.ArrowInvalid:
        columns = None
    if columns is not None:
        return columns
    read, convert = _csv_options()
    table = csv.read_csv(path, read_options=read, convert_options=convert)
    _check_unique(table.column_names, path.name)
    if texts := _temporal(table.schema):
        read, convert = _csv_options(texts)
        table = csv.read_csv(path, read_options=read, convert_options=convert)
    return _columns(table, target)


def gather(batches: Iterator[Columns]) -> Columns | None:
    """Record batches' columns joined into whole columns (None when there are no batches)."""
    names, parts = None, {}
    for batch in batches:
        names = names or batch.names
        for name, values in batch.values.items():
            parts.setdefault(name, []).append(values)
    if names is None:
        return None
    values = {}
    for name in names:
        chunks = parts.pop(name)  # each column's blocks freed once joined
        if isinstance(chunks[0], Categories) != all(isinstance(c, Categories) for c in chunks):
            return None  # a column typed differently in later blocks: whole-file inference decides
        values[name] = concat_categories(chunks) if isinstance(chunks[0], Categories) else np.concatenate(chunks)
    return Columns(names, values)


def _pandas_index(schema) -> set[str]:
    """The columns pandas' to_parquet wrote for a frame's index (not data)."""
    meta = schema.pandas_metadata or {}
    return {c for c in meta.get("index_columns", []) if isinstance(c, str)}


def read_parquet(path: Path, target: str | None = None) -> Columns:
    """A whole Parquet file, column by column (one column's arrow buffers alive at a time)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        names = [n for n in file.schema_arrow.names if n not in _pandas_index(file.schema_arrow)]
        _check_unique(names, path.name)
        return Columns(names, {name: _convert(file.read(columns=[name]).column(0), name == target) for name in names})


class NumericGaps:
    """A numeric column of a streamed table as describing it needs it: its length and missing cells (the
    values stay on disk)."""

    def __init__(self, length: int, rows: np.ndarray):
        self.length, self.rows = length, rows

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, kept: np.ndarray) -> "NumericGaps":
        return NumericGaps(len(kept), np.flatnonzero(np.isin(kept, self.rows)))

    def missing(self) -> np.ndarray:
        mask = np.zeros(self.length, dtype=bool)
        mask[self.rows] = True
        return mask


def concat_categories(parts: list[Categories]) -> Categories:
    """Categories one after another, over the union of their texts."""
    texts = list(dict.fromkeys(t for part in parts for t in part.texts))
    index = {t: i for i, t in enumerate(texts)}
    codes = [np.array([index[t] for t in part.texts] + [-1], dtype=np.int32)[part.codes] for part in parts]
    return Categories(np.concatenate(codes) if codes else np.zeros(0, np.int32), texts)


def scan(batches: Iterator[Columns], target: str) -> Columns:
    """A streamed table's columns as describing it needs them, batch by batch: the target's values, every
    categorical column's codes, and the numeric columns' missing cells only."""
    names, parts, start = None, {}, 0
    for batch in batches:
        names = names or batch.names
        for name, values in batch.values.items():
            if is_numeric(values) and name != target:
                values = start + np.flatnonzero(np.isnan(values))
            parts.setdefault(name, []).append(values)
        start += len(batch)
    if names is None:
        raise ValueError("the file holds no rows")
    out = {}
    for name in names:
        chunks = parts[name]
        if isinstance(chunks[0], Categories) != all(isinstance(c, Categories) for c in chunks):
            raise ValueError(f"column {name!r} changes from numbers to text between blocks")
        if isinstance(chunks[0], Categories):
            out[name] = concat_categories(chunks)
        elif name == target:
            out[name] = np.concatenate(chunks)
        else:
            out[name] = NumericGaps(start, np.concatenate(chunks))
    return Columns(names, out)


def csv_batches(path: Path, target: str | None = None) -> Iterator[Columns]:
    """A CSV file as Columns of consecutive blocks of about STREAM_BLOCK bytes; every block takes the column
    types pyarrow infers from the first one (a column with no value there is numeric)."""
    import pyarrow as pa
    import pyarrow.csv as csv

    read, convert = _csv_options(block=STREAM_BLOCK)
    with csv.open_csv(path, read_options=read, convert_options=convert) as first:
        schema = first.schema
    _check_unique(schema.names, path.name)
    types = {f.name: pa.float64() if pa.types.is_null(f.type) else f.type for f in schema} | _temporal(schema)
    read, convert = _csv_options(types, STREAM_BLOCK)
    with csv.open_csv(path, read_options=read, convert_options=convert) as reader:
        for batch in reader:
            yield _columns(batch, target)


def parquet_batches(path: Path, target: str | None = None) -> Iterator[Columns]:
    """A Parquet file as Columns of record batches, row group after row group."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        names = [n for n in file.schema_arrow.names if n not in _pandas_index(file.schema_arrow)]
        _check_unique(names, path.name)
        for batch in file.iter_batches(batch_size=STREAM_ROWS, columns=names):
            yield _columns(batch, target)


@dataclass
class TableStream:
    """A table left on disk (`in_memory: false`): its files in order (main, then fixed), each with the
    positions of the rows kept (None: all), read in record batches and encoded as an in-memory table is."""

    parts: list[tuple[Path, np.ndarray | None]]
    read: Callable[[Path, str], Iterator[Columns]]
    target: str
    features: list[dict]
    numeric: dict[str, bool]  # each feature's kind in the main file

    def batches(self) -> Iterator[np.ndarray]:
        """(n, width) float32 raw encoded rows, batch after batch, in the order of the source's samples."""
        encoder = TableEncoder(self.features)
        for path, kept in self.parts:
            start = 0
            for columns in self.read(path, self.target):
                count = len(columns)
                if kept is not None:
                    lo, hi = np.searchsorted(kept, [start, start + count])
                    columns = columns.take(kept[lo:hi] - start)
                start += count
                values = {name: columns.values[name] for name in encoder.names}
                yield encoder.encode_columns({name: v if self.numeric[name] or not is_numeric(v) else number_categories(v)
                                              for name, v in values.items()})

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The raw encoded rows at these sample indices (read up to the last of them)."""
        order = np.argsort(indices, kind="stable")
        wanted = np.asarray(indices)[order]
        out = np.empty((len(wanted), TableEncoder(self.features).width), dtype=np.float32)
        start = 0
        for x in self.batches():
            lo, hi = np.searchsorted(wanted, [start, start + len(x)])
            out[order[lo:hi]] = x[wanted[lo:hi] - start]
            start += len(x)
            if hi == len(wanted):
                break
        return out
