"""How routes are declared and how inference routes skip FastAPI's routing.

Every route that touches a model is declared on a `ModelRouter`, so every one has the same guard
(`require_api_key`). An inference route is declared with `ModelRouter.inference`, which registers
the FastAPI route and records it for the fast path in one act, so the fast path cannot lose a route.

The fast path (`FastPathMiddleware`): a POST matching an inference route's own path regex is handed
straight to the route's endpoint, after the same guard, skipping Starlette routing and FastAPI's
parameter and dependency resolution (which cost about as much as the rest of a small request).
Errors are answered by the same `error_response`; the route stays registered in FastAPI (OpenAPI,
other methods and `root_path` deployments go through FastAPI).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import require_api_key
from .errors import ApiError, error_response

Endpoint = Callable[..., Awaitable[Response]]


class ModelRouter(APIRouter):
    """Routes guarded by the API key; `inference` routes are also served by the fast path."""

    def __init__(self, **kwargs: Any):
        super().__init__(dependencies=[Depends(require_api_key)], **kwargs)
        self.fast_routes: list[APIRoute] = []

    def inference(self, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
        """Declare a POST route whose endpoint takes `(request, **path_parameters)`; the fast path serves it."""
        def register(endpoint: Endpoint) -> Endpoint:
            self.add_api_route(path, endpoint, methods=["POST"], **kwargs)
            route = self.routes[-1]
            assert isinstance(route, APIRoute) and route.endpoint is endpoint
            self.fast_routes.append(route)
            return endpoint

        return register


class FastPathMiddleware:
    """Serves a POST to one of `routes` by calling the guard and the route's endpoint directly."""

    def __init__(self, app: ASGIApp, routes: list[APIRoute]):
        self.app = app
        self.routes = [(route, route.path_regex.match, route.endpoint) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            for route, match, endpoint in self.routes:
                found = match(path)
                if found:
                    scope["route"] = route  # as Starlette's router would set it
                    request = Request(scope, receive)
                    try:
                        await require_api_key(request)
                        response = await endpoint(request, **found.groupdict())
                    except ApiError as exc:
                        response = error_response(exc.status, exc.message, exc.headers)
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)
