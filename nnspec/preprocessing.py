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


# --- tables -----------------------------------------------------------------------------------

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


class TableEncoder:
    """Table features -> float32 columns: a numeric feature is one column as it is, a categorical one
    is one-hot over its training categories. `features` is the manifest's feature list."""

    def __init__(self, features: list[dict]):
        self.features = features
        # (name, {category: column offset} or None for numeric), in tensor order
        self.columns: list[tuple[str, dict[str, int] | None]] = [
            (f["name"], {str(c): i for i, c in enumerate(f["categories"])} if f.get("type") == "categorical" else None)
            for f in features]
        self.names = [name for name, _ in self.columns]
        self.width = sum(1 if cats is None else len(cats) for _, cats in self.columns)

    @classmethod
    def fit(cls, columns: Mapping[str, np.ndarray]) -> "TableEncoder":
        """Feature kinds and categories from training columns: numeric arrays stay numeric, string arrays
        become categorical with their sorted distinct values."""
        features = []
        for name, values in columns.items():
            if values.dtype.kind in "iuf":
                features.append({"name": name, "type": "numeric"})
            else:
                features.append({"name": name, "type": "categorical", "categories": sorted(set(values.tolist()))})
        return cls(features)

    def encode_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Whole training columns (numeric, or strings as category_text spells them) -> (N, width) float32."""
        parts = []
        for name, categories in self.columns:
            values = columns[name]
            if categories is None:
                parts.append(values.astype(np.float32)[:, None])
            else:
                parts.append((values[:, None] == np.array(list(categories))[None, :]).astype(np.float32))
        return np.concatenate(parts, axis=1)

    def encode_instances(self, instances: list, path: str = "instances") -> np.ndarray:
        """JSON rows (objects of named features, or lists of raw values in feature order) -> (N, width)
        float32, or an InputError naming the first bad value."""
        out = np.zeros((len(instances), self.width), dtype=np.float32)
        names = self.names
        for i, instance in enumerate(instances):
            where = f"{path}[{i}]"
            if isinstance(instance, dict):
                unknown = [k for k in instance if k not in names]
                if unknown:
                    raise InputError(f"{where}.{unknown[0]}", f"unknown feature; expected {names}")
                missing = [n for n in names if n not in instance]
                if missing:
                    raise InputError(f"{where}.{missing[0]}", f"missing feature; expected {names}")
                values = [(instance[n], f"{where}.{n}") for n in names]
            elif isinstance(instance, list):
                if len(instance) != len(names):
                    raise InputError(where, f"expected {len(names)} raw feature values {names} "
                                            f"or an object of named features, got a list of length {len(instance)}")
                values = [(v, f"{where}[{j}]") for j, v in enumerate(instance)]
            else:
                raise InputError(where, f"expected an object of features {names}, got {show_value(instance)}")
            column = 0
            for (name, categories), (value, at) in zip(self.columns, values):
                if categories is None:
                    if isinstance(value, bool) or not isinstance(value, (int, float)):
                        raise InputError(at, f"feature {name!r} expects a number, got {show_value(value)}")
                    if not finite_float32(value):
                        raise InputError(at, f"feature {name!r} expects a finite number, got {value!r}")
                    out[i, column] = value
                    column += 1
                else:
                    key = category_text(value)
                    if key not in categories:
                        raise InputError(at, f"feature {name!r}: unknown category {show_value(value)}; "
                                             f"expected one of {list(categories)[:20]}")
                    out[i, column + categories[key]] = 1.0
                    column += len(categories)
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
                bad = np.flatnonzero(~np.isfinite(numbers))
                if len(bad):
                    raise InputError(f"{path}[{bad[0]}]", f"feature {name!r} expects a finite number, "
                                                          f"got {show_value(values[bad[0]].item())}")
                out[:, column] = numbers
                column += 1
            else:
                for row, value in enumerate(values.tolist()):
                    offset = categories.get(value)
                    if offset is None:
                        raise InputError(f"{path}[{row}]", f"feature {name!r}: unknown category {show_value(value)}; "
                                                           f"expected one of {list(categories)[:20]}")
                    out[row, column + offset] = 1.0
                column += len(categories)
        return out
