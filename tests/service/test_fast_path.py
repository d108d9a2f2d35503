"""The inference fast path (FastPathMiddleware) serves the inference routes, and answers exactly as the FastAPI routes do."""

import json

import numpy as np
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from nnspec.service.app import ROUTERS, create_app
from nnspec.service.settings import Settings

IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
V2_TENSOR = {"name": "input", "shape": [2, 4], "datatype": "FP32", "data": sum(IRIS, [])}
BINARY_HEADER = json.dumps({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32",
                                        "parameters": {"binary_data_size": 16}}],
                            "parameters": {"binary_data_output": True}}).encode()

# (method, path, body bytes or JSON, extra headers)
REQUESTS = [
    ("POST", "/v1/models/iris:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/iris/versions/1:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/iris/versions/7:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/iris/versions/x:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/nope:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/Bad%20Name:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/a:predict:predict", {"instances": IRIS}, {}),
    ("POST", "/v1/models/iris:predict", {"instances": [[1, 2, 3]]}, {}),
    ("POST", "/v1/models/iris:predict", {"instances": [[1, 2, "x", 4]]}, {}),
    ("POST", "/v1/models/iris:predict", {"rows": IRIS}, {}),
    ("POST", "/v1/models/iris:predict", b"{not json", {}),
    ("POST", "/v1/models/iris:predict", b"", {}),
    ("POST", "/v1/models/credit:predict", {"instances": [{"age": 40, "color": "green", "income": 3}]}, {}),
    ("POST", "/v1/models/credit:predict", {"instances": [{"age": 40, "color": "mauve", "income": 3}]}, {}),
    ("POST", "/v1/models/housing:predict", {"instances": [[1, 2, 3]]}, {}),
    ("GET", "/v1/models/iris:predict", None, {}),
    ("PUT", "/v1/models/iris:predict", {"instances": IRIS}, {}),
    ("POST", "/v2/models/iris/infer", {"inputs": [V2_TENSOR]}, {}),
    ("POST", "/v2/models/iris/infer", {"id": "r1", "inputs": [V2_TENSOR], "outputs": [{"name": "class_index"}]}, {}),
    ("POST", "/v2/models/iris/versions/1/infer", {"inputs": [V2_TENSOR]}, {}),
    ("POST", "/v2/models/iris/versions/2/infer", {"inputs": [V2_TENSOR]}, {}),
    ("POST", "/v2/models/iris/infer", {"inputs": [V2_TENSOR | {"shape": [3, 4]}]}, {}),
    ("POST", "/v2/models/iris/infer", {"inputs": []}, {}),
    ("POST", "/v2/models/iris/infer", BINARY_HEADER + np.ones(4, "<f4").tobytes(),
     {"inference-header-content-length": str(len(BINARY_HEADER))}),
    ("POST", "/v2/models/iris/infer", BINARY_HEADER + b"\0" * 3,
     {"inference-header-content-length": str(len(BINARY_HEADER))}),
    ("POST", "/v2/models/iris/infer", {"inputs": [V2_TENSOR]}, {"content-encoding": "gzip"}),
    ("POST", "/v2/models/nope/infer", {"inputs": [V2_TENSOR]}, {}),
    ("POST", "/v2/models/iris/infer", {"inputs": [V2_TENSOR]}, {"content-type": "application/octet-stream"}),
    ("POST", "/v2/models/iris/infer", {"inputs": [V2_TENSOR]}, {"content-type": "text/plain"}),
    ("POST", "/v2/models/nope/infer", {"inputs": [V2_TENSOR]}, {"content-type": "text/plain"}),
    ("POST", "/v1/models/iris:predict", {"instances": IRIS}, {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/v1/models/iris:predict", {"instances": IRIS}, {"content-type": "Application/JSON; charset=utf-8"}),
    ("GET", "/v2/models/iris/infer", None, {}),
]


def _send(client, method, path, body, headers):
    if body is None:
        return client.request(method, path, headers=headers)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.request(method, path, content=content, headers={"content-type": "application/json"} | headers)


@pytest.fixture
def routed(monkeypatch):
    """(app, method, route path) of every request that went through FastAPI's routing to a route."""
    seen = []
    handle = APIRoute.handle

    async def recording(self, scope, receive, send):
        seen.append((scope["app"], scope["method"], self.path))
        return await handle(self, scope, receive, send)

    monkeypatch.setattr(APIRoute, "handle", recording)
    return seen


INFERENCE_ROUTES = ["/v1/models/{name}/versions/{version}:predict", "/v1/models/{name}:predict",
                    "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"]


@pytest.mark.parametrize("api_key", [None, "k"])
def test_fast_path_answers_like_fastapi_routing(shared_repo, monkeypatch, routed, api_key):
    monkeypatch.setenv("TEST_FAST_KEY", "k")
    settings = Settings(repository=shared_repo, intra_op_threads=1, api_key_env="TEST_FAST_KEY" if api_key else None)
    auths = [{}, {"authorization": "Bearer k"}, {"authorization": "Bearer no"}] if api_key else [{}]
    fast_app, slow_app = create_app(settings), create_app(settings, fast_path=False)
    with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
        for method, path, body, headers in REQUESTS:
            for auth in auths:
                a, b = (_send(c, method, path, body, headers | auth) for c in (fast, slow))
                where = (method, path, body if not isinstance(body, bytes) else body[:40], auth)
                assert (a.status_code, a.content) == (b.status_code, b.content), where
                drop = {"date", "content-length"}
                assert {k: v for k, v in a.headers.items() if k not in drop} == \
                       {k: v for k, v in b.headers.items() if k not in drop}, where
                assert a.status_code < 500, where
        metrics = [c.get("/metrics").text for c in (fast, slow)]
    requests = [sorted(line for line in text.splitlines() if line.startswith("nnspec_requests_total{"))
                for text in metrics]
    assert requests[0] == requests[1] and requests[0]
    # The comparison means something only if the fast app really bypassed FastAPI's routing.
    inference = [(method, route) for app, method, route in routed if route in INFERENCE_ROUTES and method == "POST"]
    by_fast = [(m, r) for app, m, r in routed if app is fast_app and r in INFERENCE_ROUTES and m == "POST"]
    assert not by_fast, f"the fast path let FastAPI route {len(by_fast)} inference requests"
    assert len(inference) >= 20 * len(auths)  # the slow app routed them: the probe sees FastAPI's routing
    assert any(app is fast_app for app, _, _ in routed)  # GET/PUT and /metrics still go through FastAPI


def test_the_fast_path_serves_the_four_inference_routes():
    from nnspec.service import routes_v1, routes_v2

    fast = routes_v1.router.fast_routes + routes_v2.router.fast_routes
    assert sorted(route.path for route in fast) == INFERENCE_ROUTES


def test_every_route_has_exactly_its_routers_guard(shared_repo, monkeypatch):
    """One guard per router kind: a ModelRouter route demands the API key (fast path or not) and an AdminRouter
    route the admin key, neither key passing the other's guard; the other routers are open."""
    from nnspec.service.routing import AdminRouter, ModelRouter

    monkeypatch.setenv("TEST_FAST_KEY", "k")
    monkeypatch.setenv("TEST_FAST_ADMIN", "a")
    app = create_app(Settings(repository=shared_repo, intra_op_threads=1, api_key_env="TEST_FAST_KEY",
                              model_control="explicit", admin_key_env="TEST_FAST_ADMIN"))
    keys = {ModelRouter: "a", AdminRouter: "k", None: None}  # each guarded kind is given the other's key
    statuses = {kind: [] for kind in keys}
    with TestClient(app) as client:
        for router in ROUTERS:
            kind = type(router) if isinstance(router, (ModelRouter, AdminRouter)) else None
            for route in router.routes:
                path = route.path_format.replace("{name}", "iris").replace("{version}", "1")
                for method in route.methods:
                    for key in (None, keys[kind]):
                        headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {key}"} if key else {})
                        response = client.request(method, path, content=b"{}", headers=headers, follow_redirects=False)
                        statuses[kind].append((method, route.path, key, response.status_code))
    assert len(statuses[ModelRouter]) == 2 * 15 and all(s == 401 for *_, s in statuses[ModelRouter]), statuses[ModelRouter]
    assert len(statuses[AdminRouter]) == 2 * 2 and all(s == 401 for *_, s in statuses[AdminRouter]), statuses[AdminRouter]
    assert len(statuses[None]) >= 14 and all(s != 401 for *_, s in statuses[None]), statuses[None]


def test_every_post_route_checks_its_content_type(shared_repo, control_client_for):
    """A text/plain POST (what a web page's form can send) is 415 on every POST route, fast path or not."""
    with control_client_for(shared_repo) as client:
        posts = [route.path for router in ROUTERS for route in router.routes if "POST" in getattr(route, "methods", ())]
        assert len(posts) == 8
        for path in posts:
            path = path.replace("{name}", "iris").replace("{version}", "1")
            response = client.post(path, content=b"{}", headers={"content-type": "text/plain"})
            assert response.status_code == 415, (path, response.text)
