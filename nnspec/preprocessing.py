"""Raw inputs -> the model's input tensor, torch-free, shared by training and serving.

Training (`compiler.data`), the server and `nnspec predict` (`runtime.session`) decode images and
encode table rows with these functions, so the transforms a model was trained with and the ones it
is served with cannot drift. Messages about shapes and values are spelled here too.
"""

from __future__ import annotations

import datetime
import io
import os
from typing import Literal, Mapping

import numpy as np

# Files a training folder or `nnspec predict` treats as images (all of them decode with Pillow).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm", ".ppm")
MAX_IMAGE_PIXELS = 40_000_000  # refuse decompression bombs before decoding
ENCODE_ROWS = 1 << 14  # rows of a table encoded at a time


class InputError(ValueError):
    """Bad input, with the path of the offending value (`instances[3].age`)."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class ImageError(ValueError):
    """An image that cannot be decoded, or is too large to."""


class PixelBudgetError(InputError):
    """Images that together hold more pixels than a request may decode."""


# --- messages ---------------------------------------------------------------------------------

def shape_text(shape, style: Literal["tuple", "list"] = "tuple") -> str:
    """A shape as messages write it: `(64,)` in spec messages (a 1-tuple keeps its comma), `[N, 64]` for JSON clients."""
    items = ", ".join(str(d) for d in shape)
    if style == "list":
        return f"[{items}]"
    return f"({items}{',' if len(shape) == 1 else ''})"


def show_value(value: object) -> str:
    """A value as YAML and JSON spell it (true, null, 'text', [1, 2]), cut to 40 characters."""
    if value is None or isinstance(value, (bool, datetime.date)):
        text = "null" if value is None else str(value).lower() if isinstance(value, bool) else value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- images -----------------------------------------------------------------------------------

def decode_image(source: bytes | str | os.PathLike, size: tuple[int, int] | list[int], color: str,
                 max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image file (bytes or path) as float32 pixels 0..255 in (C, H, W): converted to `color`
    (grayscale or rgb) and resized bilinearly to `size` (H, W); ImageError if it cannot be."""
    from PIL import Image, UnidentifiedImageError  # Pillow only when images are used

    height, width = size
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            if img.width * img.height > max_pixels:
                raise ImageError(f"image too large ({img.width}x{img.height})")
            img = img.convert("L" if color == "grayscale" else "RGB").resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        if isinstance(e, ImageError):
            raise
        raise ImageError(f"not a decodable image ({type(e).__name__})") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def check_pixel_budget(images: list[bytes], budget: int, path: str = "images") -> None:
    """Raise PixelBudgetError once the images' sizes, read from their headers without decoding a pixel,
    add up to more than `budget` pixels (InputError for a file that is not an image)."""
    from PIL import Image, UnidentifiedImageError

    total = 0
    for i, data in enumerate(images):
        try:
            with Image.open(io.BytesIO(data)) as img:
                total += img.width * img.height
        except Image.DecompressionBombError:  # Pillow refuses the header itself
            raise PixelBudgetError(f"{path}[{i}]", "image too large to decode") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
            raise InputError(f"{path}[{i}]", f"not a decodable image ({type(e).__name__})") from None
        if total > budget:
            raise PixelBudgetError(f"{path}[{i}]", f"the request's images reach {total} pixels, over the "
                                                   f"budget of {budget} pixels per request")


# --- tables ---------------------------------------------------------------------------------

# The cells pandas' read_csv reads as missing by default, so that `nnspec predict` reads a CSV row's
# gaps as training read them (a test keeps this equal to pandas' own list).
MISSING_CELLS = frozenset({"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                           "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def category_text(value: object) -> str | None:
    """A raw value as a category: strings as they are, integers and booleans as a training column
    spells them (`3`, `True`); None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int)):
        return str(value)
    return None


def finite_float32(value: object) -> bool:
    """A finite number float32 can hold; NaN fails the comparison, and a huge int compares exactly (no overflow)."""
    return abs(value) <= 3.4e38


def _missing_entry(feature: dict, missing: Mapping) -> dict:
    """The manifest's `missing` entry of a column with gaps, for the spec's strategies (fills come from training)."""
    if feature["type"] == "numeric":
        strategy = missing["numeric"]
        return {"strategy": strategy, "fill": missing["fill_value"] if strategy == "constant" else None,
                "indicator": bool(missing["indicator"])}
    strategy = missing["categorical"]
    return {"strategy": strategy} if strategy == "missing_category" else {"strategy": strategy, "fill": None}


def _lookup(feature: dict) -> dict | None:
    """A categorical feature's {category text, or None for a missing value: one-hot offset}; None when numeric."""
    if feature.get("type") != "categorical":
        return None
    lookup = {None if c is None else str(c): i for i, c in enumerate(feature["categories"])}
    missing = feature.get("missing") or {}
    if missing.get("strategy") == "most_frequent" and missing.get("fill") is not None:
        lookup[None] = lookup[str(missing["fill"])]  # a missing value is the training split's most frequent category
    return lookup


class Categories:
    """A column of category texts without a Python object per row: `codes` index `texts` (its distinct
    values, in any order), -1 marks a missing value."""

    def __init__(self, codes: np.ndarray, texts: list[str]):
        self.codes, self.texts = codes, texts

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, rows) -> "Categories":
        return Categories(self.codes[rows], self.texts)

    def present(self) -> list[str]:
        """The distinct texts that occur, sorted."""
        counts = np.bincount(self.codes[self.codes >= 0], minlength=len(self.texts))
        return sorted(self.texts[i] for i in np.flatnonzero(counts).tolist())

    def offsets(self, categories: list) -> np.ndarray:
        """Each row's position in `categories` (None there is the missing value's); -1 where it has none."""
        where = {c: i for i, c in enumerate(categories)}
        # codes of -1 pick the last entry: the missing value's position
        table = np.array([where.get(t, -1) for t in self.texts] + [where.get(None, -1)], dtype=np.int64)
        return table[self.codes]

    def text(self, row: int) -> str | None:
        """One row's category, None when missing."""
        code = int(self.codes[row])
        return None if code < 0 else self.texts[code]


class TableEncoder:
    """Table features -> float32 columns: a numeric feature is one column as it is, a categorical one
    is one-hot over its training categories. `features` is the manifest's feature list.

    Missing values: a numeric feature with a `missing` entry takes null (or a left-out key) as NaN, which
    the exported graph fills; a categorical one maps it to its `null` category (missing_category) or to the
    training split's most frequent category. `unknown: ignore` makes an unseen category an all-zero one-hot."""

    def __init__(self, features: list[dict]):
        self.features = features
        # (name, {category: column offset} or None for numeric), in tensor order
        self.columns: list[tuple[str, dict | None]] = [(f["name"], _lookup(f)) for f in features]
        self.names = [name for name, _ in self.columns]
        widths = [1 if f.get("type") != "categorical" else len(f["categories"]) for f in features]
        starts = np.cumsum([0, *widths]).tolist()
        self.spans = list(zip(starts[:-1], starts[1:]))  # each feature's [start, stop) columns
        self.width = starts[-1]
        self.optional = {f["name"] for f in features if f.get("missing")}  # null or a left-out key is a missing value
        self.ignore = {f["name"] for f in features if f.get("unknown") == "ignore"}

    @property
    def fillable(self) -> np.ndarray:
        """(width,) bool: the columns where the exported graph replaces NaN (numeric features with gaps,
        and the one-hot block of a most_frequent feature)."""
        mask = np.zeros(self.width, dtype=bool)
        for feature, (start, stop) in zip(self.features, self.spans):
            if (feature.get("missing") or {}).get("strategy") not in (None, "missing_category"):
                mask[start:stop] = True
        return mask

    def refused(self, x: np.ndarray) -> np.ndarray:
        """Which values of an encoded (N, width) batch are not finite, except a NaN the exported graph fills."""
        return ~np.isfinite(x) & ~(np.isnan(x) & self.fillable)

    @classmethod
    def fit(cls, columns: Mapping[str, "np.ndarray | Categories"], gaps=frozenset(), missing: Mapping | None = None,
            unknown: str = "error") -> "TableEncoder":
        """Feature kinds and categories from training columns: numeric arrays stay numeric, Categories become
        categorical with their sorted distinct texts. `gaps` names the columns with missing values anywhere in
        the source, handled by `missing` (data.preprocessing.missing as a mapping); `unknown` is
        data.preprocessing.unknown_category."""
        features = []
        for name, values in columns.items():
            if not isinstance(values, Categories):
                feature = {"name": name, "type": "numeric"}
            else:
                feature = {"name": name, "type": "categorical", "categories": values.present()}
                if unknown != "error":
                    feature["unknown"] = unknown
            if name in gaps:
                feature["missing"] = _missing_entry(feature, missing)
                if feature["missing"]["strategy"] == "missing_category":
                    feature["categories"].append(None)  # "missing" is a category of its own, the last one-hot column
            features.append(feature)
        return cls(features)

    def encode_columns(self, columns: Mapping[str, "np.ndarray | Categories"], out: np.ndarray | None = None) -> np.ndarray:
        """Whole training columns (numbers with NaN gaps, or Categories) -> (N, width) float32, written into
        `out` when given. Gaps of numeric and most_frequent features stay NaN (across the one-hot block) for the
        imputation fitted on the training split; a category outside the training ones is all zero."""
        rows = len(columns[self.names[0]])
        out = np.empty((rows, self.width), dtype=np.float32) if out is None else out
        offsets = {name: columns[name].offsets(f["categories"]) for (name, lookup), f in zip(self.columns, self.features) if lookup}
        for first in range(0, rows, ENCODE_ROWS):  # row blocks that stay in cache: a column-wise write strides through x
            part = slice(first, first + ENCODE_ROWS)
            block_rows = out[part]
            for (name, lookup), feature, (start, stop) in zip(self.columns, self.features, self.spans):
                if lookup is None:
                    block_rows[:, start] = columns[name][part]
                    continue
                block = block_rows[:, start:stop]
                block[:] = 0.0
                at = offsets[name][part]
                hit = np.flatnonzero(at >= 0)
                block[hit, at[hit]] = 1.0
                if (feature.get("missing") or {}).get("strategy") == "most_frequent":
                    block[columns[name].codes[part] < 0] = np.nan
        return out

    def encode_instances(self, instances: list, path: str = "instances") -> np.ndarray:
        """JSON rows (objects of named features, or lists of raw values in feature order) -> (N, width)
        float32, or an InputError naming the first bad value. null (or a left-out key) is a missing value,
        taken where the feature had gaps in training."""
        out = np.zeros((len(instances), self.width), dtype=np.float32)
        names = self.names
        for i, instance in enumerate(instances):
            where = f"{path}[{i}]"
            if isinstance(instance, dict):
                unknown = [k for k in instance if k not in names]
                if unknown:
                    raise InputError(f"{where}.{unknown[0]}", f"unknown feature; expected {names}")
                missing = [n for n in names if n not in instance and n not in self.optional]
                if missing:
                    raise InputError(f"{where}.{missing[0]}", f"missing feature; expected {names}")
                values = [(instance.get(n), f"{where}.{n}") for n in names]
            elif isinstance(instance, list):
                if len(instance) != len(names):
                    raise InputError(where, f"expected {len(names)} raw feature values {names} "
                                            f"or an object of named features, got a list of length {len(instance)}")
                values = [(v, f"{where}[{j}]") for j, v in enumerate(instance)]
            else:
                raise InputError(where, f"expected an object of features {names}, got {show_value(instance)}")
            for (name, categories), (start, _), (value, at) in zip(self.columns, self.spans, values):
                if categories is None:
                    out[i, start] = self._number(name, value, at)
                else:
                    offset = self._offset(name, categories, value, at)
                    if offset is not None:
                        out[i, start + offset] = 1.0
        return out

    def encode_feature_columns(self, columns: Mapping[str, np.ndarray], paths: Mapping[str, str]) -> np.ndarray:
        """One column per feature name (numbers, or strings for a categorical feature), all of one length ->
        (N, width) float32, or an InputError naming the first bad value at `paths[name][row]`."""
        rows = len(columns[self.names[0]])
        out = np.zeros((rows, self.width), dtype=np.float32)
        column = 0
        for name, categories in self.columns:
            values, path = columns[name], paths[name]
            if categories is None:
                with np.errstate(over="ignore", invalid="ignore"):
                    numbers = values.astype(np.float32)
                finite = np.isfinite(numbers) | (np.isnan(numbers) if name in self.optional else False)
                bad = np.flatnonzero(~finite)
                if len(bad):
                    raise InputError(f"{path}[{bad[0]}]", f"feature {name!r} expects a finite number, "
                                                          f"got {show_value(values[bad[0]].item())}")
                out[:, column] = numbers
                column += 1
            else:
                for row, value in enumerate(values.tolist()):
                    offset = self._offset(name, categories, value, f"{path}[{row}]")
                    if offset is not None:
                        out[row, column + offset] = 1.0
                column += len(categories)
        return out

    def _number(self, name: str, value: object, at: str) -> float:
        """A numeric feature's value; NaN for a missing value where the graph fills it."""
        if name in self.optional and (value is None or (isinstance(value, float) and value != value)):
            return np.nan
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(at, f"feature {name!r} expects a number, got {show_value(value)}")
        if not finite_float32(value):
            raise InputError(at, f"feature {name!r} expects a finite number, got {value!r}")
        return value

    def _offset(self, name: str, categories: dict, value: object, at: str) -> int | None:
        """A categorical feature's one-hot offset; None for an unseen category the feature ignores."""
        if value is None:
            if None not in categories:
                raise InputError(at, f"feature {name!r}: missing value, and the training data had none in this column")
            return categories[None]
        key = category_text(value)
        if key is not None and key in categories:
            return categories[key]
        if name in self.ignore:
            return None
        shown = [c for c in categories if c is not None][:20]
        raise InputError(at, f"feature {name!r}: unknown category {show_value(value)}; expected one of {shown}")
