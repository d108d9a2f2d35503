"""ASGI middleware: the request body limit (413) and per-request metrics."""

from __future__ import annotations

import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import MODEL_SCOPE_KEY
from .metrics import Metrics


async def _send_error(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"error": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ServingMiddleware:
    """Refuses bodies over `max_body_bytes` with 413 and records every request's metrics."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, metrics: Metrics):
        self.app = app
        self.max_body = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500
        limit = f"request body larger than {self.max_body} bytes"

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None:
                if not length.isdigit():
                    status = 400
                    return await _send_error(send, 400, "invalid Content-Length")
                if int(length) > self.max_body:
                    status = 413
                    return await _send_error(send, 413, limit)
            elif scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE"):
                # No length (chunked): read it all here, within the limit, and replay it.
                chunks, size, more = [], 0, True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        status = 413
                        return await _send_error(send, 413, limit)
                    chunks.append(chunk)
                    more = message.get("more_body", False)
                replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]
                original = receive

                async def receive() -> Message:  # noqa: F811 - replays the body, then listens on
                    return replay.pop() if replay else await original()
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            model, version = scope.get(MODEL_SCOPE_KEY, ("", ""))
            self.metrics.requests.labels(model, version, endpoint, str(status)).inc()
            self.metrics.latency.labels(model, endpoint).observe(time.perf_counter() - started)
