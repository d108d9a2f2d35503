import base64
import json
import re

import numpy as np
import onnx_fixtures as fx
import pytest

from nnspec.preprocessing import InputError
from nnspec.runtime.session import ModelSession

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return fx.build_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="module")
def sessions(repo):
    return {name: ModelSession(repo / name / "1", intra_op_threads=1) for name in fx.MODELS}


def test_classifier_predictions_match_numpy(sessions):
    s = sessions["iris"]
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out = s.run(x)
    ref = fx.reference("iris", x)
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], rtol=1e-5, atol=1e-6)
    preds = s.predict(x.tolist())
    assert [p["class_index"] for p in preds] == ref["class_index"].tolist()
    assert preds[0]["label"] == s.labels[preds[0]["class_index"]]
    assert set(preds[0]["probabilities"]) == {"setosa", "versicolor", "virginica"}
    assert sum(preds[0]["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert s.max_batch_size == 64 and s.version == 1 and s.is_classifier


def test_regressor_predictions_name_targets(sessions):
    preds = sessions["housing"].predict([[1, 2, 3]])
    expected = fx.reference("housing", np.array([[1, 2, 3]], np.float32))["values"][0]
    assert list(preds[0]["values"]) == ["price", "rent"]
    assert list(preds[0]["values"].values()) == pytest.approx(expected.tolist(), rel=1e-5)


def test_table_objects_and_raw_lists_one_hot_categories(sessions):
    s = sessions["credit"]
    x = s.encode_instances([{"age": 30, "color": "blue", "income": 2.5}, [40, "red", 1]])
    np.testing.assert_array_equal(x, [[30, 0, 0, 1, 2.5], [40, 1, 0, 0, 1]])
    assert x.dtype == np.float32
    assert s.predict([{"income": 1, "color": "green", "age": 5}])[0]["label"] in ("no", "yes")


@pytest.mark.parametrize("instances, path, words", [
    ([{"age": 1, "color": "red"}], "instances[0].income", "missing feature"),
    ([{"age": 1, "color": "red", "income": 1, "zip": 9}], "instances[0].zip", "unknown feature"),
    ([{}, {"age": 1, "color": "pink", "income": 1}], "instances[0].age", "missing"),
    ([{"age": 1, "color": "pink", "income": 1}], "instances[0].color", "unknown category"),
    ([{"age": "old", "color": "red", "income": 1}], "instances[0].age", "expects a number"),
    ([{"age": True, "color": "red", "income": 1}], "instances[0].age", "expects a number"),
    ([{"age": float("nan"), "color": "red", "income": 1}], "instances[0].age", "finite"),
    ([[1, "red", 2], [1, "red"]], "instances[1]", "3 raw feature values"),
    ([[1, "red", 1e39]], "instances[0][2]", "finite"),
    ([[1, "red", 10**400]], "instances[0][2]", "finite"),  # too big for a float: no OverflowError
    ([7], "instances[0]", "object of features"),
    ([], "instances", "non-empty"),
])
def test_table_errors_name_the_value(sessions, instances, path, words):
    with pytest.raises(InputError) as err:
        sessions["credit"].encode_instances(instances)
    assert err.value.path == path and words in err.value.message


@pytest.mark.parametrize("instances, path, words", [
    ([[1, 2, 3, 4], [1, 2, 3]], "instances[1]", "length 4 (instance shape [4])"),
    ([[1, 2, 3, 4], [1, 2, "x", 4]], "instances[1][2]", "expected a number"),
    ([[1, 2, 3, 4], [1, 2, [3], 4]], "instances[1][2]", "expected a number"),
    ([[1, 2, 3, float("inf")]], "instances[0][3]", "finite"),
    ([[1, 2, 3, 1e39]], "instances[0][3]", "finite"),
    ([[True, False, True, True]], "instances[0][0]", "expected a number"),
    ([5], "instances[0]", "length 4"),
    ([[10**40, 1, 1, 1]], "instances[0][0]", "finite"),
    ([[10**400, 1, 1, 1]], "instances[0][0]", "finite"),
    ("nope", "instances", "non-empty list"),
])
def test_array_errors_name_the_value_and_shape(sessions, instances, path, words):
    with pytest.raises(InputError) as err:
        sessions["iris"].encode_instances(instances)
    assert err.value.path == path and words in err.value.message


def test_big_python_ints_are_numbers(sessions):
    assert sessions["iris"].encode_instances([[10**30, 1, 2, 3]])[0, 0] == np.float32(1e30)


def test_images_decode_resize_and_match_nested_arrays(sessions):
    s = sessions["digits8"]
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    x = s.encode_images([fx.png(pixels), fx.png(np.stack([pixels] * 3, -1))])
    assert x.shape == (2, 1, 8, 8) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0], pixels)
    np.testing.assert_allclose(x[1, 0], pixels, atol=1)  # RGB -> L rounding
    big = s.encode_images([fx.png(np.full((32, 20), 200, np.uint8))])
    assert big.shape == (1, 1, 8, 8) and np.allclose(big, 200)
    b64 = s.encode_instances([{"b64": base64.b64encode(fx.png(pixels)).decode()}])
    np.testing.assert_array_equal(b64, x[:1])
    np.testing.assert_array_equal(s.encode_instances(x[:1].tolist()), x[:1])


def test_image_errors(sessions):
    with pytest.raises(InputError, match=r"images\[1\]: not a decodable image"):
        sessions["digits8"].encode_images([fx.png(np.zeros((8, 8))), b"not an image"])
    with pytest.raises(InputError, match=r"instances\[0\].b64: not valid base64"):
        sessions["digits8"].encode_instances([{"b64": "@@@"}])
    with pytest.raises(InputError, match="does not take images"):
        sessions["iris"].encode_images([b""])


def test_run_checks_shape_dtype_and_finiteness(sessions):
    s = sessions["iris"]
    with pytest.raises(InputError, match=r"expected shape \[N, 4\], got \[2, 3\]"):
        s.run(np.zeros((2, 3), np.float32))
    with pytest.raises(InputError, match=r"got \[0, 4\]"):
        s.run(np.zeros((0, 4), np.float32))
    with pytest.raises(InputError, match="numeric"):
        s.run(np.array([["a"] * 4]))
    with pytest.raises(InputError, match=r"input\[1\]\[2\]"):
        s.run(np.array([[0, 0, 0, 0], [0, 0, np.nan, 0]]))
    assert s.run(np.zeros((2, 4), np.float64))["probabilities"].dtype == np.float32


def test_bad_model_folder(tmp_path):
    (tmp_path / "nnspec.json").write_text(json.dumps(fx.manifest("iris")))
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot load"):
        ModelSession(tmp_path)


@pytest.mark.parametrize("shape", [[5], [4, 1], [2, 2]])
def test_a_manifest_shape_that_contradicts_the_graph_is_refused(tmp_path, shape):
    (tmp_path / "nnspec.json").write_text(json.dumps(fx.manifest("iris") | {"input": {"name": "input", "shape": shape}}))
    (tmp_path / "model.onnx").write_bytes(fx.build_onnx("iris"))  # input [batch, 4]
    words = f"manifest input.shape {shape} does not match the graph input [batch, 4]"
    with pytest.raises(ValueError, match=re.escape(words)):
        ModelSession(tmp_path)
