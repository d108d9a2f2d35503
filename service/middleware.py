"""Pure ASGI middleware: per-request metrics, and the request body limit (413).

Pure ASGI rather than `BaseHTTPMiddleware`: each costs a function call per request, not a task.
"""

from __future__ import annotations

import time
from typing import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import MODEL_SCOPE_KEY
from .errors import error_response
from .metrics import Metrics

_NO_BODY_METHODS = frozenset(("GET", "HEAD", "OPTIONS", "DELETE"))
CLIENT_CLOSED = 499  # recorded when the client goes away before sending its whole body (nginx's code)


class MetricsMiddleware:
    """Counts every HTTP request by model, version, route and status, and records its latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple, object] = {}  # prometheus children by labels (labels() is slow)
        self._histograms: dict[tuple, object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = None

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        except BaseException:
            status = status or 500
            raise
        finally:
            # An app that returns without answering saw the client go away first.
            self._record(scope, status or CLIENT_CLOSED, time.perf_counter() - started)

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


class BodyLimitMiddleware:
    """Refuses bodies over `max_body_bytes` with 413: by Content-Length up front, or while reading a
    chunked body (which is then replayed to the app whole)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int):
        self.app = app
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
                break
        if length is not None:
            if not length.isdigit():
                return await error_response(400, "invalid Content-Length")(scope, receive, send)
            if int(length) > self.max_body:
                return await self._too_large(scope, receive, send)
        elif scope["method"] not in _NO_BODY_METHODS:
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client went away: nothing to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    return await self._too_large(scope, receive, send)
                chunks.append(chunk)
                more = message.get("more_body", False)
            replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
            original = receive

            async def receive() -> Message:  # noqa: F811 - replays the body, then listens on
                return replay.pop() if replay else await original()
        await self.app(scope, receive, send)

    def _too_large(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return error_response(413, f"request body larger than {self.max_body} bytes")(scope, receive, send)
