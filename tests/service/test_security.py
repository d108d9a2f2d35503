"""Safe by default: repository control off unless asked for, an admin key for it, JSON-only POST bodies
(415), an optional Host allowlist, CORS only for the origins given."""

import json
import re
from pathlib import Path

import numpy as np
import onnx_fixtures as fx
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from nnspec.cli import app as cli
from nnspec.service.settings import Settings

PREDICT = {"instances": [[1, 2, 3, 4]]}
INFER = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
# What a web page can POST cross-origin without a CORS preflight (plus one that no route takes).
FOREIGN_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=x", "application/xml"]


def test_repository_control_is_off_by_default(shared_repo, client_for):
    with client_for(shared_repo) as c:
        for action in ("unload", "load"):
            for body in ({}, {"json": {}}, {"content": b"{}", "headers": {"content-type": "text/plain"}}):
                r = c.post(f"/v2/repository/models/iris/{action}", **body)
                assert r.status_code == 403, (action, body, r.text)
                assert r.json() == {"error": "repository control is off (--model-control none)"}
        assert c.post("/v1/models/iris:predict", json=PREDICT).status_code == 200
        assert c.post("/v2/repository/index").status_code == 200  # the index stays readable


def test_poll_mode_refuses_control_requests(shared_repo, client_for):
    with client_for(shared_repo, model_control="poll") as c:
        r = c.post("/v2/repository/models/iris/unload")
        assert r.status_code == 403 and r.json()["error"] == "repository control is off (--model-control poll)"
        assert c.post("/v1/models/iris:predict", json=PREDICT).status_code == 200


def test_the_admin_key_grants_repository_control_and_nothing_else(repo, client_for, monkeypatch):
    monkeypatch.setenv("TEST_NNSPEC_KEY", "user")
    monkeypatch.setenv("TEST_NNSPEC_ADMIN", "admin")
    user, admin = ({"authorization": f"Bearer {key}"} for key in ("user", "admin"))
    with client_for(repo, api_key_env="TEST_NNSPEC_KEY", model_control="explicit",
                    admin_key_env="TEST_NNSPEC_ADMIN") as c:
        for action in ("unload", "load"):
            path = f"/v2/repository/models/iris/{action}"
            for headers in ({}, user):  # the inference key does not grant control
                r = c.post(path, headers=headers)
                assert r.status_code == 401 and r.json()["error"] == "missing or wrong admin key", r.text
            assert c.post(path, headers=admin).status_code == 200
        for method, path, body in (("post", "/v1/models/iris:predict", PREDICT), ("post", "/v2/repository/index", {}),
                                   ("get", "/v2/models/iris", None)):
            assert c.request(method, path, json=body, headers=admin).status_code == 401, path
            assert c.request(method, path, json=body, headers=user).status_code == 200, path


def test_posts_with_a_foreign_content_type_are_415(shared_repo, control_client_for):
    classify = [("files", ("a.png", fx.png(np.zeros((8, 8)))))]
    with control_client_for(shared_repo) as c:
        for content_type in FOREIGN_TYPES:
            for path, body in (("/v2/repository/models/iris/unload", b""), ("/v2/repository/models/iris/load", b"{}"),
                               ("/v2/repository/index", b"{}"), ("/v1/models/iris:predict", json.dumps(PREDICT)),
                               ("/v2/models/iris/infer", json.dumps(INFER))):
                r = c.post(path, content=body, headers={"content-type": content_type})
                assert r.status_code == 415, (path, content_type, r.text)
                assert re.fullmatch(r"Content-Type must be [a-z/ -]+", r.json()["error"]), r.text
        # The model was never unloaded; the accepted types, and no Content-Type at all (tritonclient.http), pass.
        json_text = {"content-type": "application/json; charset=utf-8"}
        octets = {"content-type": "application/octet-stream"}  # tritonclient.http.aio, JSON or binary
        assert c.post("/v1/models/iris:predict", content=json.dumps(PREDICT), headers=json_text).status_code == 200
        assert c.post("/v1/models/iris:predict", content=json.dumps(PREDICT)).status_code == 200
        assert c.post("/v1/models/iris:predict", content=json.dumps(PREDICT), headers=octets).status_code == 415
        assert c.post("/v2/models/iris/infer", content=json.dumps(INFER), headers=octets).status_code == 200
        assert c.post("/v2/repository/index", content=b"{}", headers=octets).status_code == 200
        assert c.post("/v1/models/digits8:classify", files=classify).status_code == 200
        assert c.post("/v1/models/digits8:classify", json={}).status_code == 415
        assert c.post("/v2/repository/models/iris/unload").status_code == 200
        assert c.post("/v2/repository/models/iris/load", json={}).status_code == 200


def test_allowed_hosts_refuse_other_host_headers(shared_repo, client_for):
    with client_for(shared_repo, allowed_hosts=["localhost", "127.0.0.1", "[::1]", "*.example.com"]) as c:
        for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "api.example.com"):
            assert c.post("/v1/models/iris:predict", json=PREDICT, headers={"host": host}).status_code == 200, host
        for host in ("rebind.attacker.net", "example.com", "localhost.attacker.net", ""):
            r = c.post("/v1/models/iris:predict", json=PREDICT, headers={"host": host})
            assert r.status_code == 400 and r.json() == {"error": "Host header not allowed"}, host
        assert c.get("/v2/health/live", headers={"host": "10.0.0.7"}).status_code == 400
    with client_for(shared_repo) as c:  # no allowlist: any Host
        assert c.post("/v1/models/iris:predict", json=PREDICT, headers={"host": "anything"}).status_code == 200


def test_cors_is_off_unless_origins_are_given(shared_repo, client_for):
    origin = "https://app.example"
    preflight = {"origin": origin, "access-control-request-method": "POST",
                 "access-control-request-headers": "authorization, content-type"}
    with client_for(shared_repo) as c:
        assert "access-control-allow-origin" not in c.options("/v1/models/iris:predict", headers=preflight).headers
        r = c.post("/v1/models/iris:predict", json=PREDICT, headers={"origin": origin})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    with client_for(shared_repo, cors_origins=[origin]) as c:
        r = c.options("/v1/models/iris:predict", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert "authorization" in r.headers["access-control-allow-headers"].lower()
        r = c.post("/v1/models/iris:predict", json=PREDICT, headers={"origin": origin})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        assert c.options("/v1/models/iris:predict", headers=preflight | {"origin": "https://evil.example"}
                         ).status_code == 400


@pytest.mark.parametrize("options, message", [
    ({"model_control": "explicit"}, "--model-control explicit needs --admin-key-env"),
    ({"model_control": "explicit", "admin_key_env": "K", "workers": 2}, "--model-control explicit needs --workers 1"),
    ({"poll_seconds": 1}, "--poll-seconds needs --model-control poll"),
    ({"admin_key_env": "K"}, "--admin-key-env needs --model-control explicit"),
])
def test_settings_refuse_options_that_cannot_work(options, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(repository=Path("unused"), **options)


def test_poll_mode_polls_every_5_seconds_unless_told():
    assert Settings(model_control="poll").poll_interval == 5.0
    assert Settings(model_control="poll", poll_seconds=0.5).poll_interval == 0.5
    assert Settings().poll_interval is None


@pytest.mark.parametrize("options, message", [
    (["--poll-seconds", "1"], "error: --poll-seconds needs --model-control poll"),
    (["--model-control", "explicit"], "error: --model-control explicit needs --admin-key-env"),
    (["--model-control", "explicit", "--admin-key-env", "TEST_NNSPEC_UNSET"],
     "error: environment variable TEST_NNSPEC_UNSET (the admin key) is not set"),
    (["--model-control", "sometimes"], "'sometimes' is not one of"),
])
def test_serve_refuses_options_that_cannot_work(shared_repo, options, message, monkeypatch):
    monkeypatch.delenv("TEST_NNSPEC_UNSET", raising=False)
    result = CliRunner().invoke(cli, ["serve", str(shared_repo), *options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # ended by the CLI, not a crash
