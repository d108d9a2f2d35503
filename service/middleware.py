"""Pure ASGI middleware: the request body limit (413), per-request metrics, and the inference fast path.

The fast path: a POST to one of the inference routes (V1 `:predict`, V2 `infer`, with or without
a version) is matched here with the FastAPI route's own path regex and handed straight to the
route's handler, skipping Starlette routing and FastAPI's parameter and dependency resolution
(which cost about as much as the rest of a small request). The handler is the same function the
FastAPI route calls, errors are answered by the same `error_response`, and the route stays
registered in FastAPI (OpenAPI, other methods, `root_path` deployments go through FastAPI).
"""

from __future__ import annotations

import time
from typing import Awaitable

from starlette.requests import Request
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import MODEL_SCOPE_KEY
from .errors import ApiError, error_response
from .metrics import Metrics

_NO_BODY_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE"))
_CLIENT_CLOSED = 499  # recorded when the client goes away before sending its whole body (nginx's code)


class ServingMiddleware:
    """Refuses bodies over `max_body_bytes` with 413, records every request's metrics, and serves
    the inference routes in `fast_routes` without FastAPI's routing: each route's endpoint is called
    with the request and the path parameters."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics, fast_routes: list[APIRoute] = ()):
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics
        self.fast = [(route, route.path_regex.match, route.endpoint) for route in fast_routes]
        self._counters: dict[tuple, object] = {}  # prometheus children by labels (labels() is slow)
        self._histograms: dict[tuple, object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = None
            for key, value in scope["headers"]:
                if key == b"content-length":
                    length = value
                    break
            if length is not None:
                if not length.isdigit():
                    return await error_response(400, "invalid Content-Length")(scope, receive, send_and_record)
                if int(length) > self.max_body:
                    return await self._too_large(scope, receive, send_and_record)
            elif scope["method"] not in _NO_BODY_METHODS:
                # No length (chunked): read it all here, within the limit, and replay it.
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        status = _CLIENT_CLOSED
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        return await self._too_large(scope, receive, send_and_record)
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                original = receive

                async def receive() -> Message:  # noqa: F811 - replays the body, then listens on
                    return replay.pop() if replay else await original()
            if scope["method"] == "POST" and not scope.get("root_path"):
                path = scope["path"]
                for route, match, handler in self.fast:
                    found = match(path)
                    if found:
                        scope["route"] = route  # as Starlette's router would set it
                        try:
                            response = await handler(Request(scope, receive), **found.groupdict())
                        except ApiError as exc:
                            response = error_response(exc.status, exc.message, exc.headers)
                        return await response(scope, receive, send_and_record)
            await self.app(scope, receive, send_and_record)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _too_large(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return error_response(413, f"request body larger than {self.max_body} bytes")(scope, receive, send)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        model, version = scope.get(MODEL_SCOPE_KEY, ("", ""))
        key = (model, version, endpoint, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.metrics.requests.labels(model, version, endpoint, str(status))
        counter.inc()
        key = (model, endpoint)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = self.metrics.latency.labels(model, endpoint)
        histogram.observe(seconds)
