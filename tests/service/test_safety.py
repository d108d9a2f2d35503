"""Safety: body limit, API key, metrics, no torch, and a bounded schemathesis run with no 5xx."""

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import onnx_fixtures as fx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from nnspec.service.app import create_app
from nnspec.service.settings import Settings


PREDICT = {"instances": [[1, 2, 3, 4]]}


def test_body_limit_is_413_with_or_without_content_length(shared_repo, client_for):
    with client_for(shared_repo, max_body_mb=0.001) as c:  # ~1 KB
        big = {"instances": [[1.5, 2.5, 3.5, 4.5]] * 100}
        r = c.post("/v1/models/iris:predict", json=big)
        assert r.status_code == 413 and "larger than" in r.json()["error"]
        chunked = c.post("/v1/models/iris:predict", content=iter([b'{"instances": [', b"[1,2,3,4]," * 200, b"]}"]))
        assert chunked.status_code == 413
        small = c.post("/v1/models/iris:predict", content=iter([b'{"instances": ', b"[[1,2,3,4]]}"]))
        assert small.status_code == 200
        assert c.post("/v1/models/iris:predict", content=b"{}", headers={"content-length": "x"}).status_code == 400


def test_api_key_guards_model_routes_only(shared_repo, client_for, monkeypatch):
    monkeypatch.setenv("TEST_NNSPEC_KEY", "s3cret")
    with client_for(shared_repo, api_key_env="TEST_NNSPEC_KEY") as c:
        guarded = [("post", "/v1/models/iris:predict", PREDICT), ("get", "/v1/models", None),
                   ("post", "/v2/repository/index", None), ("get", "/v2/models/iris", None)]
        for method, path, body in guarded:
            assert c.request(method, path, json=body).status_code == 401
            wrong = c.request(method, path, json=body, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
            ok = c.request(method, path, json=body, headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200, path
        # :classify takes its lease (and the key check) from a FastAPI dependency, not from the route's list
        assert c.post("/v1/models/digits8:classify").status_code == 401
        for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics", "/v2/models/iris/ready"):
            assert c.get(path).status_code == 200


def test_api_key_env_must_be_set(shared_repo, monkeypatch):
    monkeypatch.delenv("TEST_NNSPEC_MISSING", raising=False)
    with pytest.raises(RuntimeError, match="TEST_NNSPEC_MISSING"):
        create_app(Settings(repository=shared_repo, api_key_env="TEST_NNSPEC_MISSING"))


def test_metrics_count_requests_batches_and_models(shared_repo, client_for):
    with client_for(shared_repo) as c, client_for(shared_repo) as other:  # two apps, no registry clash
        for _ in range(3):
            c.post("/v1/models/iris:predict", json=PREDICT)
        c.post("/v1/models/iris:predict", json={"instances": [[1]]})
        other.post("/v1/models/iris:predict", json=PREDICT)
        text = c.get("/metrics").text
    assert 'nnspec_requests_total{endpoint="/v1/models/{name}:predict",model="iris",status="200",version="1"} 3.0' in text
    assert 'status="400"' in text
    assert 'nnspec_batch_size_count{model="iris",version="1"} 3.0' in text
    assert 'nnspec_models_loaded{model="housing"} 1.0' in text
    for name in ("nnspec_request_duration_seconds_bucket", "nnspec_queue_duration_seconds_bucket",
                 "nnspec_inference_duration_seconds_bucket"):
        assert name in text


@pytest.mark.slow
def test_serving_never_imports_torch(shared_repo):
    script = textwrap.dedent(f"""
        import sys, io, base64
        sys.modules["torch"] = None  # any import of torch now fails loudly
        from fastapi.testclient import TestClient
        from nnspec.service.app import create_app
        from nnspec.service.settings import Settings
        import nnspec.cli  # every command registered: none may import torch at import time
        with TestClient(create_app(Settings(repository={str(shared_repo)!r}))) as c:
            assert c.post("/v1/models/iris:predict", json={{"instances": [[1, 2, 3, 4]]}}).status_code == 200
            body = {{"inputs": [{{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}}]}}
            assert c.post("/v2/models/housing/infer", json=body).status_code == 200
            from PIL import Image
            buf = io.BytesIO(); Image.new("L", (8, 8)).save(buf, "PNG")
            assert c.post("/v1/models/digits8:classify", files=[("files", ("a.png", buf.getvalue()))]).status_code == 200
            assert c.get("/metrics").status_code == 200
        del sys.modules["torch"]
        assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


@pytest.fixture(scope="module")
def fuzz_app():
    """An app over a private repository, removed after the module's tests."""
    with tempfile.TemporaryDirectory(prefix="nnspec-fuzz-") as folder:
        yield create_app(Settings(repository=fx.build_repo(Path(folder)), intra_op_threads=1))


# schemathesis parametrizes at collection time, from the OpenAPI document alone (which does not
# depend on the repository: no models are loaded and no folder is made at import).
schema = schemathesis.openapi.from_dict(create_app(Settings(repository=Path("unused"))).openapi())


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_requests_get_what_the_schema_promises(case, fuzz_app):
    """Every check: no 5xx, statuses, content types and bodies as documented, schema-valid requests
    accepted (a 404 for a model that is not there is fine), schema-invalid ones refused."""
    # Triton answers "not ready" with 400: a rejection the schema cannot express.
    excluded = [positive_data_acceptance] if case.path.endswith("/ready") else []
    case.call_and_validate(app=fuzz_app, excluded_checks=excluded)


def test_openapi_states_what_the_server_enforces():
    doc = create_app(Settings(repository=Path("unused"))).openapi()
    operations = [op for path in doc["paths"].values() for op in path.values()]
    patterns = {(p["name"], p["schema"].get("pattern")) for op in operations for p in op.get("parameters", [])
                if p["in"] == "path"}
    assert patterns == {("name", "^[a-z0-9][a-z0-9_-]*$"), ("version", "^[1-9][0-9]{0,17}$")}
    assert not [op["summary"] for op in operations if "422" in op["responses"]]  # bad input is 400
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert infer["properties"]["inputs"]["minItems"] == 1
    tensor = infer["properties"]["inputs"]["items"]["properties"]
    assert tensor["shape"]["minItems"] == 1 and tensor["shape"]["items"]["minimum"] == 1
    assert set(tensor["datatype"]["enum"]) == {"FP32", "FP64", "INT32", "INT64", "BYTES"}
