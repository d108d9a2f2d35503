"""Dynamic batching: concurrent requests to one model version become one onnxruntime run.

Each model version has one worker thread, so inference never runs on the event loop. The
worker takes every queued request (up to `max_batch_size` rows) and, when more requests are
known to be on their way (announced by the handler, still parsing), waits for them up to
`max_queue_delay_ms` after the oldest one arrived. A lone request therefore never waits, and
under load batches fill up. With batching off the worker runs one request at a time.

Handoff cost matters as much as the wait rule: the event loop wakes the worker only when it has
something to do (the queue was empty, the announced requests have all arrived, or the batch is
full), not on every request, so a filling batch costs no GIL ping-pong between the two threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .errors import ApiError
from .metrics import Metrics

RunFn = Callable[[np.ndarray], dict[str, np.ndarray]]


@dataclass(slots=True)
class _Job:
    x: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queued_at: float = field(default_factory=time.perf_counter)


def _deliver(results: list[tuple[asyncio.Future, object, bool]]) -> None:
    for future, value, failed in results:
        if not future.done():  # the client may have gone away
            (future.set_exception if failed else future.set_result)(value)


class Batcher:
    """A queue and a worker thread in front of one model version's `run`."""

    def __init__(self, run: RunFn, *, labels: tuple[str, str], metrics: Metrics,
                 max_batch_size: int, max_queue_delay_ms: float, max_queue: int, batching: bool = True):
        self._run = run
        self._max_rows = max(1, max_batch_size) if batching else 1
        self._delay = max(0.0, max_queue_delay_ms) / 1000 if batching else 0.0
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._rows = 0  # rows in the queue
        self._coming = 0
        self._closed = False
        self._queue_time = metrics.queue_time.labels(*labels)
        self._batch_rows = metrics.batch_size.labels(*labels)
        self._run_time = metrics.inference_time.labels(*labels)
        self._thread = threading.Thread(target=self._work, name=f"nnspec-batcher-{labels[0]}-{labels[1]}",
                                        daemon=True)
        self._thread.start()

    def announce(self) -> None:
        """A request for this model has started; its rows will likely arrive soon."""
        with self._cond:
            self._coming += 1

    def withdraw(self) -> None:
        """An announced request ended without submitting (bad input, client gone)."""
        with self._cond:
            self._coming -= 1
            self._cond.notify()

    async def infer(self, x: np.ndarray, announced: bool = False) -> dict[str, np.ndarray]:
        """Queue a checked float32 batch and wait for exactly its rows of every output."""
        loop = asyncio.get_running_loop()
        job = _Job(x, loop.create_future(), loop)
        with self._cond:
            if announced:
                self._coming -= 1
            if self._closed:
                raise ApiError(503, "model version is being unloaded; retry")
            if len(self._queue) >= self._max_queue:
                self._cond.notify()
                raise ApiError(503, f"queue full ({self._max_queue} requests); retry later")
            self._queue.append(job)
            self._rows += len(x)
            if len(self._queue) == 1 or self._coming <= 0 or self._rows >= self._max_rows:
                self._cond.notify()
        return await job.future

    def close(self) -> None:
        """Stop after the queued requests are answered."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the worker thread to end (after `close`)."""
        self._thread.join(timeout)

    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            if self._delay:
                deadline = self._queue[0].queued_at + self._delay
                while self._coming > 0 and self._rows < self._max_rows:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        break
            jobs = [self._queue.popleft()]
            rows = len(jobs[0].x)
            while self._queue and rows + len(self._queue[0].x) <= self._max_rows:
                job = self._queue.popleft()
                rows += len(job.x)
                jobs.append(job)
            self._rows -= rows
            return jobs

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            started = time.perf_counter()
            for job in jobs:
                self._queue_time.observe(started - job.queued_at)
            try:
                x = jobs[0].x if len(jobs) == 1 else np.concatenate([j.x for j in jobs])
                outputs = self._run(x)
                self._run_time.observe(time.perf_counter() - started)
                self._batch_rows.observe(len(x))
                results, start = [], 0
                for job in jobs:
                    stop = start + len(job.x)
                    results.append((job.future, {k: v[start:stop] for k, v in outputs.items()}, False))
                    start = stop
            except Exception as exc:  # onnxruntime failure: every request in the batch gets it
                error = ApiError(500, f"inference failed: {str(exc)[:200]}")
                results = [(job.future, error, True) for job in jobs]
            by_loop: dict[asyncio.AbstractEventLoop, list] = {}
            for job, result in zip(jobs, results):
                by_loop.setdefault(job.loop, []).append(result)
            for loop, items in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_deliver, items)
                except RuntimeError:  # that event loop is closed: nobody is waiting
                    pass
