"""KServe V1 endpoints: predict, classify, model list and metadata, and their errors."""

import base64

import numpy as np
import pytest
import onnx_fixtures as fx


def test_predict_matches_the_model(client):
    x = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    r = client.post("/v1/models/iris:predict", json={"instances": x.tolist()})
    assert r.status_code == 200 and r.headers["x-model-version"] == "1"
    preds = r.json()["predictions"]
    ref = fx.reference("iris", x)
    assert [p["class_index"] for p in preds] == ref["class_index"].tolist()
    assert [p["label"] for p in preds] == [["setosa", "versicolor", "virginica"][k] for k in ref["class_index"]]
    got = np.array([list(p["probabilities"].values()) for p in preds])
    np.testing.assert_allclose(got, ref["probabilities"], rtol=1e-5, atol=1e-6)


def test_predict_with_a_version_and_a_regressor(client):
    r = client.post("/v1/models/housing/versions/1:predict", json={"instances": [[1, 2, 3], [0, 0, 0]]})
    assert r.status_code == 200
    ref = fx.reference("housing", np.array([[1, 2, 3], [0, 0, 0]], np.float32))["values"]
    values = [list(p["values"].values()) for p in r.json()["predictions"]]
    np.testing.assert_allclose(values, ref, rtol=1e-5)
    assert list(r.json()["predictions"][0]["values"]) == ["price", "rent"]


def test_predict_table_objects_and_raw_lists(client):
    body = {"instances": [{"age": 30, "color": "blue", "income": 2.5}, [30, "blue", 2.5]]}
    preds = client.post("/v1/models/credit:predict", json=body).json()["predictions"]
    assert preds[0] == preds[1] and set(preds[0]["probabilities"]) == {"no", "yes"}
    ref = fx.reference("credit", np.array([[30, 0, 0, 1, 2.5]], np.float32))
    assert preds[0]["probabilities"]["yes"] == pytest.approx(float(ref["probabilities"][0, 1]), rel=1e-5)


def test_predict_images_as_arrays_or_base64(client):
    pixels = np.arange(64).reshape(8, 8).astype(np.uint8)
    as_array = client.post("/v1/models/digits8:predict", json={"instances": [[pixels.tolist()]]}).json()
    as_b64 = client.post("/v1/models/digits8:predict",
                         json={"instances": [{"b64": base64.b64encode(fx.png(pixels)).decode()}]}).json()
    assert as_array == as_b64
    ref = fx.reference("digits8", pixels[None, None].astype(np.float32))
    assert as_array["predictions"][0]["class_index"] == int(ref["class_index"][0])


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, '{"instances"'),
    (b'{"inputs": [[1, 2, 3, 4]]}', 400, '{"instances"'),
    (b'{"instances": []}', 400, "non-empty"),
    (b'{"instances": [[1, 2, 3]]}', 400, "instances[0]: expected a list of length 4 (instance shape [4])"),
    (b'{"instances": [[1, 2, 3, "x"]]}', 400, "instances[0][3]: expected a number"),
    (b'{"instances": [[1, 2, 3, 1e39]]}', 400, "instances[0][3]: expected a finite"),
    (b'{"instances": [[1, 2, 3, NaN]]}', 400, "not valid JSON"),
    (b'{"instances": {"a": 1}}', 400, "non-empty list"),
])
def test_predict_bad_input_is_a_400_naming_the_field(client, body, status, words):
    r = client.post("/v1/models/iris:predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and words in r.json()["error"]


def test_predict_table_errors_name_the_feature(client):
    r = client.post("/v1/models/credit:predict", json={"instances": [{"age": 1, "color": "red"}]})
    assert r.status_code == 400 and r.json()["error"].startswith("instances[0].income: missing feature")


def test_too_many_instances_is_413(client):
    r = client.post("/v1/models/iris:predict", json={"instances": [[0, 0, 0, 0]] * 1025})
    assert r.status_code == 413 and "1025 > 1024" in r.json()["error"]


@pytest.mark.parametrize("path, status", [
    ("/v1/models/nope:predict", 404),
    ("/v1/models/Bad:predict", 400),
    ("/v1/models/iris/versions/9:predict", 404),
    ("/v1/models/iris/versions/0:predict", 400),
    ("/v1/models/iris/versions/x:predict", 400),
])
def test_model_and_version_are_validated(client, path, status):
    r = client.post(path, json={"instances": [[0, 0, 0, 0]]})
    assert r.status_code == status and "error" in r.json()


def test_classify_image_files(client):
    digits = [np.full((8, 8), 30 * d, np.uint8) for d in range(3)]
    files = [("files", (f"{d}.png", fx.png(img), "image/png")) for d, img in enumerate(digits)]
    r = client.post("/v1/models/digits8:classify", files=files)
    assert r.status_code == 200
    preds = r.json()["predictions"]
    ref = fx.reference("digits8", np.stack(digits)[:, None].astype(np.float32))
    assert [p["class_index"] for p in preds] == ref["class_index"].tolist()
    assert [p["file"] for p in preds] == ["0.png", "1.png", "2.png"]


def test_classify_errors(client):
    bad = client.post("/v1/models/digits8:classify", files=[("files", ("x.png", b"not an image"))])
    assert bad.status_code == 400 and bad.json()["error"].startswith("files[0]: not a decodable image")
    wrong_model = client.post("/v1/models/iris:classify", files=[("files", ("x.png", fx.png(np.zeros((8, 8)))))])
    assert wrong_model.status_code == 400 and "does not take images" in wrong_model.json()["error"]
    missing = client.post("/v1/models/digits8:classify", files=[("other", ("o.txt", b"1"))])
    assert missing.status_code == 400 and "files" in missing.json()["error"]
    form = client.post("/v1/models/digits8:classify", data={"files": "1"})  # urlencoded: what a web form sends
    assert form.status_code == 415 and form.json()["error"] == "Content-Type must be multipart/form-data"


def test_model_list_and_metadata(client):
    assert client.get("/v1/models").json() == {"models": ["credit", "digits8", "housing", "iris"]}
    info = client.get("/v1/models/credit").json()
    assert info["ready"] and info["versions"] == [1]
    assert info["metadata"]["features"][1]["categories"] == ["red", "green", "blue"]
    assert client.get("/v1/models/nope").status_code == 404
    assert client.get("/v1/models/NOPE").status_code == 400


def test_unknown_routes_and_methods_answer_json_errors(client):
    assert client.get("/nowhere").json() == {"error": "Not Found"}
    r = client.get("/v1/models/iris:predict")
    assert r.status_code in (400, 404, 405) and "error" in r.json()
