"""nnspec.preprocessing: training and serving encode the same raw input to the same tensor."""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from nnspec.compiler.data import CsvSource, ImageFolderSource
from nnspec.preprocessing import (IMAGE_SUFFIXES, ImageError, InputError, TableEncoder, decode_image, shape_text,
                                  show_value)


def _image_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def test_a_training_folder_reads_every_suffix_that_predict_accepts(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    for label, fmt, suffix in (("a", "PNG", ".png"), ("b", "PPM", ".pgm"), ("c", "BMP", ".bmp")):
        (tmp_path / label).mkdir()
        (tmp_path / label / f"x{suffix}").write_bytes(_image_bytes(pixels, fmt))
    assert ".pgm" in IMAGE_SUFFIXES and ".ppm" in IMAGE_SUFFIXES
    source = ImageFolderSource(type="image_folder", path=str(tmp_path), image_size=[6, 5], color="grayscale")
    raw = source.load(tmp_path, "classification")
    assert raw.x.shape == (3, 1, 6, 5) and raw.labels == ["a", "b", "c"]
    # the server decodes the same file bytes to the same pixels
    served = decode_image((tmp_path / "b" / "x.pgm").read_bytes(), (6, 5), "grayscale")
    np.testing.assert_array_equal(served, raw.x[1])
    assert served.dtype == np.float32 and 0 <= served.min() and served.max() <= 255


def test_decode_image_colors_sizes_and_refusals():
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 0] = 255
    x = decode_image(_image_bytes(rgb, "PNG"), (4, 6), "rgb")
    assert x.shape == (3, 4, 6) and x[0].min() == 255 and x[1:].max() == 0
    assert decode_image(_image_bytes(rgb, "PNG"), (2, 3), "grayscale").shape == (1, 2, 3)
    with pytest.raises(ImageError, match=r"image too large \(6x4\)"):
        decode_image(_image_bytes(rgb, "PNG"), (2, 3), "rgb", max_pixels=23)
    with pytest.raises(ImageError, match="not a decodable image"):
        decode_image(b"not an image", (2, 3), "rgb")


def test_table_rows_encode_the_same_in_training_and_serving(tmp_path):
    frame = pd.DataFrame({"age": [30, 41, 25], "color": ["red", "blue", "red"], "member": [True, False, True],
                          "size": [1, 2, 2], "y": ["a", "b", "a"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    raw = CsvSource(type="csv", path="t.csv", target="y").load(tmp_path, "classification")
    assert [f["type"] for f in raw.features] == ["numeric", "categorical", "categorical", "numeric"]
    assert raw.features[2]["categories"] == ["False", "True"]  # a boolean column's categories
    rows = [{"age": 30, "color": "red", "member": True, "size": 1},
            {"age": 41, "color": "blue", "member": False, "size": 2},
            ["25", "red", "True", 2]]
    with pytest.raises(InputError, match=r"instances\[2\]\[0\]: feature 'age' expects a number, got '25'"):
        TableEncoder(raw.features).encode_instances(rows)
    rows[2] = [25, "red", "True", 2]  # a boolean feature takes JSON true or the CSV spelling "True"
    np.testing.assert_array_equal(TableEncoder(raw.features).encode_instances(rows), raw.x)
    with pytest.raises(InputError, match=r"instances\[0\].color: feature 'color': unknown category 'green'"):
        TableEncoder(raw.features).encode_instances([rows[0] | {"color": "green"}])
    with pytest.raises(InputError, match=r"feature 'member': unknown category 1\.5"):
        TableEncoder(raw.features).encode_instances([rows[0] | {"member": 1.5}])


def test_messages_spell_shapes_and_values_one_way():
    assert shape_text((64,)) == "(64,)" and shape_text((1, 8, 8)) == "(1, 8, 8)"
    assert shape_text(("N", 4), "list") == "[N, 4]"
    assert [show_value(v) for v in (True, None, "x", [1, 2])] == ["true", "null", "'x'", "[1, 2]"]
    assert show_value("y" * 80) == "'" + "y" * 36 + "..."


def test_predict_reads_a_csv_cell_as_missing_exactly_where_pandas_does():
    from pandas._libs.parsers import STR_NA_VALUES

    from nnspec.preprocessing import MISSING_CELLS

    assert MISSING_CELLS == STR_NA_VALUES


GAPPY = [{"name": "age", "type": "numeric", "missing": {"strategy": "median", "fill": 40.0, "indicator": False}},
         {"name": "size", "type": "numeric"},
         {"name": "color", "type": "categorical", "categories": ["blue", "red", None], "missing": {"strategy": "missing_category"}},
         {"name": "shape", "type": "categorical", "categories": ["round", "square"],
          "missing": {"strategy": "most_frequent", "fill": "square"}, "unknown": "ignore"}]


def test_served_missing_values_and_unseen_categories():
    encoder = TableEncoder(GAPPY)
    rows = [{"age": None, "size": 1, "color": None, "shape": None},  # null
            {"size": 2},  # left-out keys
            [float("nan"), 3, "red", "oval"]]  # NaN, and a shape never seen in training: all zeros
    x = encoder.encode_instances(rows)
    np.testing.assert_array_equal(x, [[np.nan, 1, 0, 0, 1, 0, 1], [np.nan, 2, 0, 0, 1, 0, 1], [np.nan, 3, 0, 1, 0, 0, 0]])
    assert encoder.fillable.tolist() == [True, False, False, False, False, True, True]  # where the graph fills NaN
    with pytest.raises(InputError, match=r"instances\[0\].size: feature 'size' expects a number, got null"):
        encoder.encode_instances([{"age": 1, "size": None, "color": "red", "shape": "round"}])
    with pytest.raises(InputError, match=r"instances\[0\].size: missing feature"):
        encoder.encode_instances([{"age": 1}])
    with pytest.raises(InputError, match=r"instances\[0\].color: feature 'color': unknown category 'green'; expected one of \['blue', 'red'\]"):
        encoder.encode_instances([{"size": 1, "color": "green"}])
    strict = TableEncoder([GAPPY[1], {"name": "shape", "type": "categorical", "categories": ["round", "square"]}])
    with pytest.raises(InputError, match=r"instances\[0\]\[1\]: feature 'shape': missing value, and the training data had none in this column"):
        strict.encode_instances([[1, None]])


def test_training_columns_with_gaps_encode_like_served_rows(tmp_path):
    pd.DataFrame({"age": [30, None, 25, 40], "color": ["red", "blue", None, "red"], "y": ["a", "b", "a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    raw = CsvSource(type="csv", path="t.csv", target="y").load(tmp_path, "classification")
    assert raw.features[1]["categories"] == ["blue", "red", None]
    np.testing.assert_array_equal(raw.x, [[30, 0, 1, 0], [np.nan, 1, 0, 0], [25, 0, 0, 1], [40, 0, 1, 0]])
    served = TableEncoder(raw.features).encode_instances([{"age": 30, "color": "red"}, {"age": None, "color": "blue"},
                                                          {"age": 25}, {"age": 40, "color": "red"}])
    np.testing.assert_array_equal(served, raw.x)
