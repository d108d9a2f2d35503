"""How routes are declared and how inference routes skip FastAPI's routing.

Every route that touches a model or the repository is declared on a guarded router, and each kind
of router has exactly one guard, added to every one of its routes:

* `ModelRouter`: `require_api_key` (metadata, inference, the repository index);
* `AdminRouter`: `require_admin_key` (repository load and unload; 403 unless `--model-control explicit`).

A POST route also checks its request Content-Type (`deps.BodyTypes`, 415): JSON unless the route
declares otherwise with `dependencies=[accepts(...)]`.

An inference route is declared with `ModelRouter.inference`, which registers the FastAPI route and
records it for the fast path in one act, so the fast path cannot lose a route. The fast path
(`FastPathMiddleware`): a POST matching an inference route's own path regex is handed straight to
the route's endpoint, after the route's own dependencies (its guard, then its body types), skipping
Starlette routing and FastAPI's parameter and dependency resolution (which cost about as much as the
rest of a small request). Errors are answered by the same `error_response`; the route stays
registered in FastAPI (OpenAPI, other methods and `root_path` deployments go through FastAPI).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .deps import JSON, BodyTypes, accepts, require_admin_key, require_api_key
from .errors import ApiError, error_response, unexpected_error
from .schemas import ErrorResponse

Endpoint = Callable[..., Awaitable[Response]]
Check = Callable[[Request], Awaitable[None]]


class GuardedRouter(APIRouter):
    """Routes that all carry the router's one `guard`; a POST route also checks its body's Content-Type."""

    guard: Check
    guard_statuses: tuple[int, ...]

    def __init__(self, **kwargs: Any):
        responses = {code: {"model": ErrorResponse} for code in self.guard_statuses} | kwargs.pop("responses", {})
        super().__init__(dependencies=[Depends(type(self).guard)], responses=responses, **kwargs)

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        """Add a route; a POST route that declares no body types takes JSON."""
        dependencies = list(kwargs.pop("dependencies", None) or ())
        if "POST" in (kwargs.get("methods") or ()):
            if not any(isinstance(d.dependency, BodyTypes) for d in dependencies):
                dependencies.append(accepts(JSON))
            kwargs["responses"] = {415: {"model": ErrorResponse}} | (kwargs.get("responses") or {})
        super().add_api_route(path, endpoint, dependencies=dependencies, **kwargs)


class ModelRouter(GuardedRouter):
    """Routes guarded by the API key; `inference` routes are also served by the fast path."""

    guard = staticmethod(require_api_key)
    guard_statuses = (401,)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
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


class AdminRouter(GuardedRouter):
    """Repository control, guarded by the admin key (and off unless `--model-control explicit`)."""

    guard = staticmethod(require_admin_key)
    guard_statuses = (401, 403)


def _checks(route: APIRoute) -> tuple[Check, ...]:
    # The route's dependencies in FastAPI's order: the router's guard, then the body types.
    # Inference routes declare only such request-only checks; their endpoints take the rest themselves.
    return tuple(dependency.dependency for dependency in route.dependencies)


class FastPathMiddleware:
    """Serves a POST to one of `routes` by calling the route's checks and its endpoint directly."""

    def __init__(self, app: ASGIApp, routes: list[APIRoute]):
        self.app = app
        self.routes = [(route, route.path_regex.match, _checks(route), route.endpoint) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            path = scope["path"]
            for route, match, checks, endpoint in self.routes:
                found = match(path)
                if found:
                    scope["route"] = route  # as Starlette's router would set it
                    request = Request(scope, receive)
                    try:
                        for check in checks:
                            await check(request)
                        response = await endpoint(request, **found.groupdict())
                    except ApiError as exc:
                        response = error_response(exc.status, exc.message, exc.headers)
                    except Exception as exc:  # a bug: FastAPI's error layers are behind us (app.ServingApp)
                        response = unexpected_error(scope["method"], path, exc)
                    return await response(scope, receive, send)
        await self.app(scope, receive, send)
