"""Pure ASGI middleware: per-request metrics, and reading the request body (limit, timeout, encoding).

Pure ASGI rather than `BaseHTTPMiddleware`: each costs a function call per request, not a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import MODEL_SCOPE_KEY
from .errors import ApiError, error_response
from .metrics import Metrics
from .payloads import BODY_SCOPE_KEY, decompress

log = logging.getLogger("nnspec.serve")

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


class _Deadlines:
    """Cancels the tasks still reading a request body `timeout` seconds after they began (up to two
    ticks later). A reader joins the newest generation; while anyone reads, a clock on its event loop
    opens a generation every tick and cancels the readers of those older than the timeout. (A timer
    per request would cost more than all the rest this middleware does.)"""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.tick = min(1.0, timeout)
        self._generations: dict[asyncio.AbstractEventLoop, deque[set[asyncio.Task]]] = {}
        self._expired: set[asyncio.Task] = set()

    def watch(self, task: asyncio.Task) -> set[asyncio.Task]:
        """Start the clock on `task`; discard it from the returned set once its body is in."""
        loop = task.get_loop()
        generations = self._generations.get(loop)
        if generations is None:
            generations = self._generations[loop] = deque([set()])
            loop.call_later(self.tick, self._turn, loop)
        readers = generations[-1]
        readers.add(task)
        return readers

    def _turn(self, loop: asyncio.AbstractEventLoop) -> None:
        generations = self._generations[loop]
        while (len(generations) - 1) * self.tick >= self.timeout:  # the oldest's readers all began that long ago
            for task in generations.popleft():
                self._expired.add(task)
                task.cancel()
        if any(generations):
            generations.append(set())
            loop.call_later(self.tick, self._turn, loop)
        else:  # nobody is reading: the clock stops until someone does
            del self._generations[loop]

    def timed_out(self, task: asyncio.Task) -> bool:
        """True when only this clock cancelled `task` (the cancellation is then withdrawn)."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+ counts cancellations; 3.10 forgets a caught one
        return uncancel is None or uncancel() == 0


class _ClientGone(Exception):
    pass


class BodyLimitMiddleware:
    """Reads each request body whole before the app runs, so that no handler, lease or batcher waits on
    a slow client: 413 over `max_body_bytes` (by Content-Length up front, while reading, or once
    decompressed), 408 after `body_timeout` seconds, nothing (counted 499) when the client goes away,
    and gzip/deflate bodies decompressed. The app gets the body replayed."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, body_timeout: float = 30.0):
        self.app = app
        self.max_body = max_body_bytes
        self._too_large = f"request body larger than {max_body_bytes} bytes"
        self.deadlines = _Deadlines(body_timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = encoding = None
        for key, value in scope["headers"]:
            if key == b"content-length":
                length = value
            elif key == b"content-encoding":
                encoding = value
        if length is not None:
            if not length.isdigit():
                return await error_response(400, "invalid Content-Length")(scope, receive, send)
            if int(length) > self.max_body:
                return await error_response(413, self._too_large)(scope, receive, send)
        if scope["method"] in _NO_BODY_METHODS:
            return await self.app(scope, receive, send)
        try:
            body = await self._read(receive)
            if encoding is not None and encoding != b"identity":
                body = await self._decompressed(scope, body, encoding)
        except _ClientGone:
            log.info("%s %s: the client went away before sending its whole body", scope["method"], scope["path"])
            return
        except ApiError as exc:
            if exc.status == 408:
                log.warning("%s %s: 408, %s", scope["method"], scope["path"], exc.message)
            return await error_response(exc.status, exc.message, exc.headers)(scope, receive, send)
        scope[BODY_SCOPE_KEY] = body  # our handlers take it from here (`payloads.request_body`), others from receive
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def replayed() -> Message:  # the body once, then what the server says (a disconnect)
            return replay.pop() if replay else await receive()
        await self.app(scope, replayed, send)

    async def _read(self, receive: Receive) -> bytes:
        """The whole body: 413 past the limit, 408 past the deadline, _ClientGone when the client leaves."""
        task = asyncio.current_task()
        readers = self.deadlines.watch(task)
        chunks: list[bytes] = []
        size, more = 0, True
        try:
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise ApiError(413, self._too_large)
                chunks.append(chunk)
                more = message.get("more_body", False)
        except asyncio.CancelledError:
            if not self.deadlines.timed_out(task):
                raise
            raise ApiError(408, f"request body not received within {self.deadlines.timeout:g} s",
                           {"Connection": "close"}) from None
        finally:
            readers.discard(task)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _decompressed(self, scope: Scope, body: bytes, encoding: bytes) -> bytes:
        body = await run_in_threadpool(decompress, body, encoding.decode("latin-1"), self.max_body)
        # The app sees the body as if it had been sent plain (in place: the outer middleware reads this scope).
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        scope["headers"].append((b"content-length", str(len(body)).encode()))
        return body
