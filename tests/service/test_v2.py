"""Open Inference Protocol (V2): health, metadata, config, JSON and binary inference, repository."""

import json

import numpy as np
import onnx_fixtures as fx
import pytest

from nnspec.runtime.repository import triton_config


def infer_body(x, binary_in=False, **extra):
    """A V2 request body and headers, JSON or with the binary tensor extension."""
    tensor = {"name": "input", "shape": list(x.shape), "datatype": "FP32"}
    if not binary_in:
        header = json.dumps({"inputs": [tensor | {"data": x.tolist()}], **extra}).encode()
        return header, {"content-type": "application/json"}
    header = json.dumps({"inputs": [tensor | {"parameters": {"binary_data_size": x.nbytes}}], **extra}).encode()
    return header + x.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(header))}


def parse(response):
    """(JSON header, {output name: array}) of a V2 response, binary or not."""
    length = response.headers.get("inference-header-content-length")
    body = response.content
    header = json.loads(body[:int(length)] if length else body)
    arrays, offset = {}, int(length or 0)
    for out in header["outputs"]:
        dtype = {"FP32": "<f4", "INT64": "<i8"}[out["datatype"]]
        if "data" in out:
            arrays[out["name"]] = np.array(out["data"], dtype).reshape(out["shape"])
        else:
            size = out["parameters"]["binary_data_size"]
            arrays[out["name"]] = np.frombuffer(body[offset:offset + size], dtype).reshape(out["shape"])
            offset += size
    assert offset == len(body) or not length
    return header, arrays


def test_server_health_and_metadata(client):
    assert client.get("/v2").json() == {"name": "nnspec", "version": "0.1.0",
                                        "extensions": ["binary_tensor_data", "model_repository"]}
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/iris").json()
    assert meta == {"name": "iris", "versions": ["1"], "platform": "onnxruntime_onnx",
                    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                    "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                                {"name": "class_index", "datatype": "INT64", "shape": [-1]}]}
    assert client.get("/v2/models/iris/versions/1").json() == meta


def test_readiness_and_config(client):
    assert client.get("/v2/models/iris/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/1/ready").status_code == 200
    assert client.get("/v2/models/iris/versions/2/ready").status_code == 400
    assert client.get("/v2/models/nope/ready").status_code == 400
    config = client.get("/v2/models/digits8/config").json()
    assert config == triton_config(fx.manifest("digits8"))
    assert config["max_batch_size"] == 64 and config["dynamic_batching"] == {"max_queue_delay_microseconds": 2000}
    assert client.get("/v2/models/digits8/versions/1/config").json() == config
    assert client.get("/v2/models/nope/config").status_code == 404


@pytest.mark.parametrize("binary_in", [False, True])
@pytest.mark.parametrize("params", [{}, {"parameters": {"binary_data_output": True}}])
def test_infer_json_and_binary(client, binary_in, params):
    x = np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32)
    body, headers = infer_body(x, binary_in, id="req-7", **params)
    r = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    header, out = parse(r)
    assert header["id"] == "req-7" and header["model_name"] == "iris" and header["model_version"] == "1"
    assert ("inference-header-content-length" in r.headers) == bool(params)
    ref = fx.reference("iris", x)
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["class_index"], ref["class_index"])


def test_infer_nested_data_requested_outputs_and_version_route(client):
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    body = {"inputs": [{"name": "input", "shape": [2, 3], "datatype": "FP32", "data": x.tolist()}],
            "outputs": [{"name": "values", "parameters": {"binary_data": True}}], "parameters": {"custom": 1}}
    r = client.post("/v2/models/housing/versions/1/infer", json=body)
    header, out = parse(r)
    assert [o["name"] for o in header["outputs"]] == ["values"] and "id" not in header
    np.testing.assert_allclose(out["values"], fx.reference("housing", x)["values"], rtol=1e-5)
    body["outputs"] = [{"name": "values"}]
    assert "data" in client.post("/v2/models/housing/infer", json=body).json()["outputs"][0]


def test_infer_images(client):
    x = np.random.default_rng(3).integers(0, 256, (2, 1, 8, 8)).astype(np.float32)
    r = client.post("/v2/models/digits8/infer", content=infer_body(x, True)[0],
                    headers=infer_body(x, True)[1])
    np.testing.assert_array_equal(parse(r)[1]["class_index"], fx.reference("digits8", x)["class_index"])


GOOD = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}


@pytest.mark.parametrize("body, words", [
    ({"inputs": [GOOD | {"name": "x"}]}, "unexpected inference input 'x'"),
    ({"inputs": [GOOD | {"datatype": "INT64"}]}, "expected FP32"),
    ({"inputs": [GOOD | {"shape": [1, 5]}]}, "inputs[0].shape: expected [-1, 4]"),
    ({"inputs": [GOOD | {"shape": [0, 4], "data": []}]}, "inputs[0].shape"),
    ({"inputs": [GOOD | {"shape": [2, 4]}]}, "4 values do not fill shape [2, 4]"),
    ({"inputs": [GOOD | {"data": [1, 2, "x", 4]}]}, "expected a flat or nested list of numbers"),
    ({"inputs": [GOOD | {"data": [1, 2, 3, 1e39]}]}, "finite"),
    ({"inputs": [GOOD, GOOD]}, "exactly one input"),
    ({"inputs": []}, "exactly one input"),
    ({}, "exactly one input"),
    ({"inputs": [GOOD], "outputs": [{"name": "nope"}]}, "unknown output 'nope'"),
    ({"inputs": [GOOD], "outputs": [{"name": "values"}, {"name": "values"}]}, "requested twice"),
    ({"inputs": [GOOD], "outputs": [{"name": "class_index", "parameters": {"classification": 2}}]},
     "classification extension"),
    ({"inputs": [GOOD], "parameters": {"binary_data_output": "yes"}}, "must be a boolean"),
    ({"inputs": [GOOD], "id": 5}, "id must be a string"),
])
def test_infer_errors_are_400(client, body, words):
    model = "housing" if any(o.get("name") == "values" for o in body.get("outputs", [])) else "iris"
    if model == "housing":
        body = body | {"inputs": [GOOD | {"shape": [1, 3], "data": [1, 2, 3]}]}
    r = client.post(f"/v2/models/{model}/infer", json=body)
    assert r.status_code == 400 and words in r.json()["error"], r.text


def test_binary_framing_errors_are_400(client):
    x = np.ones((1, 4), np.float32)
    body, headers = infer_body(x, True)
    cases = [
        (body + b"\0\0", headers, "expected 16 bytes"),
        (body[:-4], headers, "expected 16 bytes"),
        (body, {"Inference-Header-Content-Length": "999"}, "does not fit"),
        (body, {"Inference-Header-Content-Length": "-1"}, "does not fit"),
        (body, {"Inference-Header-Content-Length": "10"}, "not valid JSON"),
        (body, {"Inference-Header-Content-Length": "²".encode("latin-1")}, "does not fit"),  # isdigit(), not ASCII
        (infer_body(x)[0] + b"\0" * 16, {"Inference-Header-Content-Length": str(len(infer_body(x)[0]))},
         "no input has binary_data_size"),
    ]
    nan_body, nan_headers = infer_body(np.array([[1, np.nan, 3, 4]], np.float32), True)
    cases.append((nan_body, nan_headers, "inputs[0].data[0][1]: expected a finite"))
    for content, hdrs, words in cases:
        r = client.post("/v2/models/iris/infer", content=content, headers=hdrs)
        assert r.status_code == 400 and words in r.json()["error"], (words, r.text)
    gz = client.post("/v2/models/iris/infer", content=body, headers=headers | {"Content-Encoding": "gzip"})
    assert gz.status_code == 400 and "not valid gzip" in gz.json()["error"]


def test_an_unexpected_error_is_a_short_json_500(repo, monkeypatch):
    from fastapi.testclient import TestClient

    from nnspec.service.app import create_app
    from nnspec.service.settings import Settings
    from nnspec.service.store import ModelStore

    def broken_index(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(ModelStore, "index", broken_index)
    with TestClient(create_app(Settings(repository=repo, intra_op_threads=1)), raise_server_exceptions=False) as c:
        r = c.post("/v2/repository/index")
    assert r.status_code == 500 and r.json() == {"error": "internal server error"}


def test_unknown_model_and_version_are_404(client):
    body = {"inputs": [GOOD]}
    assert client.post("/v2/models/nope/infer", json=body).status_code == 404
    assert client.post("/v2/models/iris/versions/3/infer", json=body).status_code == 404
    assert client.post("/v2/models/iris/versions/-3/infer", json=body).status_code == 400
    assert client.get("/v2/models/nope").json() == {"error": "model 'nope' is not loaded"}


def test_repository_index_load_and_unload(repo, control_client_for):
    with control_client_for(repo) as c:
        index = c.post("/v2/repository/index").json()
        assert {e["name"]: e["state"] for e in index} == dict.fromkeys(fx.MODELS, "READY")
        assert c.post("/v2/repository/models/iris/unload", json={"parameters": {"unload_dependents": False}}
                      ).status_code == 200
        assert c.post("/v2/models/iris/infer", json={"inputs": [GOOD]}).status_code == 404
        assert c.get("/v2/models/iris/ready").status_code == 400
        index = {e["name"]: e for e in c.post("/v2/repository/index", json={}).json()}
        assert index["iris"]["state"] == "UNAVAILABLE"
        assert [e["name"] for e in c.post("/v2/repository/index", json={"ready": True}).json()] == \
            ["credit", "digits8", "housing"]
        assert c.post("/v2/repository/models/iris/unload").status_code == 404
        assert c.post("/v2/repository/models/iris/load").json() == {"name": "iris", "versions": ["1"]}
        assert c.post("/v2/models/iris/infer", json={"inputs": [GOOD]}).status_code == 200
        assert c.post("/v2/repository/models/ghost/load").status_code == 404
        assert c.post("/v2/repository/models/Bad/load").status_code == 400
        assert c.post("/v2/repository/models/iris/load", content=b"[").status_code == 400
        assert c.post("/v2/repository/models/iris/load",
                      json={"parameters": {"config": "{}"}}).status_code == 400


def test_a_broken_model_is_unavailable_not_fatal(repo, control_client_for):
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "nnspec.json").write_text(json.dumps(fx.manifest("iris") | {"name": "broken"}))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    with control_client_for(repo) as c:
        assert c.get("/v2/health/ready").status_code == 503
        assert c.get("/v2/health/live").status_code == 200
        index = {e["name"]: e for e in c.post("/v2/repository/index").json()}
        assert index["broken"]["state"] == "UNAVAILABLE" and "cannot load" in index["broken"]["reason"]
        r = c.post("/v2/repository/models/broken/load")
        assert r.status_code == 400 and "failed to load" in r.json()["error"]
        fx.publish(repo, "iris", version=2)
        (repo / "iris" / "2" / "nnspec.json").write_text("{")  # a broken version is a failed load, not a 404
        r = c.post("/v2/repository/models/iris/load")
        assert r.status_code == 400 and "unreadable manifest" in r.json()["error"], r.text
        assert c.post("/v2/models/iris/infer", json={"inputs": [GOOD]}).status_code == 200


# --- protocol limits and conventions -------------------------------------------------------------

def test_more_rows_than_max_batch_size_is_400_naming_the_limit(client):
    for rows, status in [(64, 200), (65, 400)]:
        x = np.ones((rows, 4), np.float32)
        for binary in (False, True):
            body, headers = infer_body(x, binary)
            r = client.post("/v2/models/iris/infer", content=body, headers=headers)
            assert r.status_code == status, r.text
        v1 = client.post("/v1/models/iris:predict", json={"instances": x.tolist()})
        assert v1.status_code == status
    assert "max_batch_size 64" in r.json()["error"] and "max_batch_size 64" in v1.json()["error"]


CREDIT_ROWS = [(30, "blue", 2.5), (51, "red", 0.5), (18, "green", 7.0)]


def credit_reference() -> np.ndarray:
    onehot = {"red": [1, 0, 0], "green": [0, 1, 0], "blue": [0, 0, 1]}
    x = np.array([[age, *onehot[color], income] for age, color, income in CREDIT_ROWS], np.float32)
    return fx.reference("credit", x)["probabilities"]


def feature_inputs(binary: bool) -> tuple[bytes, dict]:
    """A V2 request for `credit` with one input per raw feature: age FP32 [N], color BYTES [N, 1], income FP64 [N]."""
    ages = np.array([r[0] for r in CREDIT_ROWS], np.float32)
    colors = [r[1] for r in CREDIT_ROWS]
    incomes = np.array([r[2] for r in CREDIT_ROWS], np.float64)
    n = len(CREDIT_ROWS)
    tensors = [{"name": "age", "datatype": "FP32", "shape": [n]},
               {"name": "color", "datatype": "BYTES", "shape": [n, 1]},
               {"name": "income", "datatype": "FP64", "shape": [n]}]
    if not binary:
        for tensor, data in zip(tensors, (ages.tolist(), [[c] for c in colors], incomes.tolist())):
            tensor["data"] = data
        return json.dumps({"inputs": tensors}).encode(), {"content-type": "application/json"}
    blobs = [ages.astype("<f4").tobytes(),
             b"".join(len(c).to_bytes(4, "little") + c.encode() for c in colors),
             incomes.astype("<f8").tobytes()]
    for tensor, blob in zip(tensors, blobs):
        tensor["parameters"] = {"binary_data_size": len(blob)}
    header = json.dumps({"inputs": tensors}).encode()
    return header + b"".join(blobs), {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize("binary", [False, True])
def test_a_table_model_takes_one_input_per_raw_feature(client, binary):
    body, headers = feature_inputs(binary)
    r = client.post("/v2/models/credit/infer", content=body, headers=headers)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(parse(r)[1]["probabilities"], credit_reference(), rtol=1e-5, atol=1e-6)
    onehot = client.post("/v2/models/credit/infer", json={"inputs": [  # the one-hot `input` still works
        {"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [30, 0, 0, 1, 2.5]}]})
    np.testing.assert_allclose(parse(onehot)[1]["probabilities"], credit_reference()[:1], rtol=1e-5, atol=1e-6)


def test_model_metadata_describes_the_raw_features(client):
    meta = client.get("/v2/models/credit").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 5]}]
    assert meta["parameters"]["features"] == [
        {"name": "age", "datatype": "FP32", "shape": [-1]},
        {"name": "color", "datatype": "BYTES", "shape": [-1], "categories": ["red", "green", "blue"]},
        {"name": "income", "datatype": "FP32", "shape": [-1]}]
    assert "parameters" not in client.get("/v2/models/iris").json()


def _features(**changes):
    tensors = {"age": {"name": "age", "datatype": "FP32", "shape": [2], "data": [30, 40]},
               "color": {"name": "color", "datatype": "BYTES", "shape": [2], "data": ["red", "blue"]},
               "income": {"name": "income", "datatype": "INT64", "shape": [2, 1], "data": [[1], [2]]}}
    for name, change in changes.items():
        tensors[name] = None if change is None else tensors[name] | change
    return {"inputs": [t for t in tensors.values() if t is not None]}


@pytest.mark.parametrize("body, words", [
    (_features(), None),
    (_features(color={"data": ["red", "mauve"]}), "inputs[1].data[1]: feature 'color': unknown category 'mauve'"),
    (_features(color={"datatype": "FP32", "data": [1, 2]}), "inputs[1].datatype: expected BYTES"),
    (_features(age={"datatype": "BYTES", "data": ["30", "40"]}), "inputs[0].datatype: expected FP32"),
    (_features(age={"data": [30, 1e39]}), "inputs[0].data[1]: feature 'age' expects a finite number"),
    (_features(age={"shape": [3], "data": [1, 2, 3]}), "inputs[1].shape: 2 rows, but inputs[0] has 3"),
    (_features(age={"shape": [2, 2], "data": [1, 2, 3, 4]}), "inputs[0].shape: expected [-1] or [-1, 1]"),
    (_features(color={"data": ["red"]}), "inputs[1].data: expected 2 strings"),
    (_features(income=None), "missing raw feature 'income'"),
    (_features(age={"name": "agee"}), "inputs[0]: unexpected input 'agee'"),
    (_features(color={"name": "age"}), "inputs[1]: input 'age' given twice"),
])
def test_raw_feature_inputs_errors_name_the_input(client, body, words):
    r = client.post("/v2/models/credit/infer", json=body)
    if words is None:
        assert r.status_code == 200, r.text
    else:
        assert r.status_code == 400 and words in r.json()["error"], r.text


def test_binary_bytes_framing_errors_are_400(client):
    body, headers = feature_inputs(True)
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    header["inputs"][1]["parameters"]["binary_data_size"] -= 1  # the last string loses a byte
    new_header = json.dumps(header).encode()
    tail = body[length:]
    colors_end = 12 + header["inputs"][1]["parameters"]["binary_data_size"]
    cut = new_header + tail[:colors_end] + tail[colors_end + 1:]
    r = client.post("/v2/models/credit/infer", content=cut,
                    headers={"Inference-Header-Content-Length": str(len(new_header))})
    assert r.status_code == 400 and "inputs[1]" in r.json()["error"], r.text


def test_every_503_carries_retry_after(repo, client_for):
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "nnspec.json").write_text(json.dumps(fx.manifest("iris") | {"name": "broken"}))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    with client_for(repo) as c:
        r = c.get("/v2/health/ready")
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    from nnspec.service.errors import error_response
    assert error_response(503, "queue full").headers["retry-after"] == "1"


def test_errors_never_show_server_paths(repo, control_client_for):
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "nnspec.json").write_text(json.dumps(fx.manifest("iris") | {"name": "broken"}))
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not onnx")
    fx.publish(repo, "iris", version=2)
    (repo / "iris" / "2" / "nnspec.json").write_text("{")
    with control_client_for(repo) as c:
        answers = [c.post("/v2/repository/index").text, c.post("/v2/repository/models/broken/load").text,
                   c.post("/v2/repository/models/iris/load").text, c.get("/v2/health/ready").text]
    for text in answers:
        assert str(repo) not in text and str(repo.resolve()) not in text and "/tmp" not in text, text
    assert "broken/1" in answers[0] and "broken/1" in answers[1] and "iris/2" in answers[2]
