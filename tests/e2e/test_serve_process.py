"""A real `serve` process on 127.0.0.1: V1 over HTTP, V2 JSON and binary via tritonclient.http."""

import json
import socket
import subprocess
import sys

import httpx
import numpy as np
import onnx_fixtures as fx
import pytest
from server_process import CLI, serving

pytestmark = pytest.mark.slow  # starts real server and CLI processes


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = fx.build_repo(tmp_path_factory.mktemp("models"), names=("iris", "credit"))
    with serving(repo, "--api-key-env", "E2E_KEY", "--body-timeout", "1", env={"E2E_KEY": "k3y"}) as (url, port):
        yield url, port


def test_v1_over_http(server):
    url, _ = server
    auth = {"Authorization": "Bearer k3y"}
    r = httpx.post(f"{url}/v1/models/credit:predict", headers=auth,
                   json={"instances": [{"age": 40, "color": "green", "income": 3}]})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in ("no", "yes")
    assert httpx.post(f"{url}/v1/models/credit:predict", json={"instances": [[1]]}).status_code == 401
    bad = httpx.post(f"{url}/v1/models/credit:predict", headers=auth, json={"instances": [{"age": 1}]})
    assert bad.status_code == 400 and "instances[0]" in bad.json()["error"]


@pytest.mark.parametrize("binary", [True, False])
def test_v2_with_tritonclient(server, binary):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    _, port = server
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    auth = {"Authorization": "Bearer k3y"}
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert client.get_model_metadata("iris", headers=auth)["inputs"][0]["shape"] == [-1, 4]
    assert client.get_model_config("iris", headers=auth)["max_batch_size"] == 64
    x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    outputs = None if binary else [triton.InferRequestedOutput(n, binary_data=False)
                                   for n in ("probabilities", "class_index")]
    result = client.infer("iris", [tensor], outputs=outputs, request_id="e2e", headers=auth)
    ref = fx.reference("iris", x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), ref["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("class_index"), ref["class_index"])
    assert result.get_response()["id"] == "e2e"
    assert [m["name"] for m in client.get_model_repository_index(headers=auth)] == ["credit", "iris"]
    with pytest.raises(InferenceServerException, match="not loaded"):
        client.infer("ghost", [tensor], headers=auth)
    with pytest.raises(InferenceServerException, match="API key"):
        client.infer("iris", [tensor])


@pytest.mark.parametrize("binary", [True, False])
def test_raw_features_and_gzip_with_tritonclient(server, binary):
    import tritonclient.http as triton

    _, port = server
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    auth = {"Authorization": "Bearer k3y"}
    features = client.get_model_metadata("credit", headers=auth)["parameters"]["features"]
    rows = [(40, "green", 3.0), (20, "red", 1.0)]
    inputs = []
    for feature, column in zip(features, zip(*rows)):
        tensor = triton.InferInput(feature["name"], [len(rows), 1], feature["datatype"])
        dtype = object if feature["datatype"] == "BYTES" else np.float32
        tensor.set_data_from_numpy(np.array(column, dtype=dtype).reshape(-1, 1), binary_data=binary)
        inputs.append(tensor)
    result = client.infer("credit", inputs, headers=auth, request_compression_algorithm="gzip")
    onehot = np.array([[40, 0, 1, 0, 3.0], [20, 1, 0, 0, 1.0]], np.float32)
    np.testing.assert_allclose(result.as_numpy("probabilities"), fx.reference("credit", onehot)["probabilities"],
                               rtol=1e-5, atol=1e-6)


def _partial_upload(port: int) -> socket.socket:
    """A connection that sends a request head and 10 of the 100 body bytes it announces."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n" + b'{"inputs":')
    return conn


def test_a_stalled_upload_gets_408_and_a_client_that_leaves_is_counted_499(server):
    url, port = server
    _partial_upload(port).close()  # goes away mid-body
    with _partial_upload(port) as stalled:  # waits: the server answers 408 after --body-timeout 1 and closes
        answer = b""
        while chunk := stalled.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower(), answer
    metrics = httpx.get(f"{url}/metrics").text
    # The first client left a second before the 408: its request is counted by now.
    assert 'status="499"' in metrics and 'status="408"' in metrics


def test_cli_predict_json_csv_npy(tmp_path):
    repo = fx.build_repo(tmp_path / "models", names=("iris", "credit"))
    run = lambda *args: subprocess.run([sys.executable, "-c", CLI, "predict", *args], capture_output=True,
                                       text=True, timeout=60)
    (tmp_path / "x.json").write_text(json.dumps({"instances": [[1, 2, 3, 4]]}))
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    out = run("iris", str(tmp_path / "x.json"), str(tmp_path / "x.npy"), "--repo", str(repo), "--json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["predictions"]) == 3
    (tmp_path / "t.csv").write_text("income,age,color,target\n3,40,green,1\n1,20,red,0\n")
    table = run(str(repo / "credit" / "1"), str(tmp_path / "t.csv"))
    assert table.returncode == 0 and "t.csv[1]" in table.stdout and "probability" in table.stdout
    (tmp_path / "bad.csv").write_text("income,age,color\nx,40,green\n")
    bad = run("credit/1", str(tmp_path / "bad.csv"), "--repo", str(repo))
    assert bad.returncode == 2 and "expected a number" in bad.stderr and "Traceback" not in bad.stderr
    missing = run("nope", str(tmp_path / "x.json"), "--repo", str(repo))
    assert missing.returncode == 2 and "no version" in missing.stderr
    shape = run("iris", str(tmp_path / "t.csv"), "--repo", str(repo))
    assert shape.returncode == 2 and "Traceback" not in shape.stderr


def test_tritonclient_asyncio_and_control_off_by_default(server):
    """tritonclient.http.aio sends every body as application/octet-stream; load/unload are off by default."""
    import asyncio

    import tritonclient.http as triton
    import tritonclient.http.aio as aio
    from tritonclient.utils import InferenceServerException

    _, port = server
    auth = {"Authorization": "Bearer k3y"}
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)

    async def main():
        client = aio.InferenceServerClient(f"127.0.0.1:{port}")
        try:
            for binary in (True, False):
                tensor = aio.InferInput("input", list(x.shape), "FP32")
                tensor.set_data_from_numpy(x, binary_data=binary)
                result = await client.infer("iris", [tensor], headers=dict(auth))  # infer() adds headers to it
                np.testing.assert_array_equal(result.as_numpy("class_index"), fx.reference("iris", x)["class_index"])
            assert [m["name"] for m in await client.get_model_repository_index(headers=auth)] == ["credit", "iris"]
            with pytest.raises(InferenceServerException, match=r"repository control is off \(--model-control none\)"):
                await client.unload_model("iris", headers=auth)
        finally:
            await client.close()

    asyncio.run(main())
    with pytest.raises(InferenceServerException, match="repository control is off"):
        triton.InferenceServerClient(f"127.0.0.1:{port}").load_model("iris", headers=auth)
    assert triton.InferenceServerClient(f"127.0.0.1:{port}").is_model_ready("iris")
