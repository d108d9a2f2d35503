"""Dynamic batching: concurrent requests to one model version become one onnxruntime run.

Two batchers with one interface (`announce`, `withdraw`, `infer`, `close`, `join`); the store picks one
per version by timing the model at load (`pick_batcher`):

* `Batcher`, for any model that is not trivially cheap: one worker thread per version, so inference
  never runs on the event loop. The worker takes every queued request (up to `max_batch_size` rows)
  and, when more requests are known to be on their way (announced by the handler, still parsing),
  waits for them up to `max_queue_delay_ms` after the oldest one arrived. A lone request therefore
  never waits, and under load batches fill up. The event loop wakes the worker only when it has
  something to do (the queue was empty, the announced requests have all arrived, or the batch is
  full), not on every request, so a filling batch costs no GIL ping-pong between the two threads.
* `InlineBatcher`, for a model whose full batch runs faster than a hand-off to a thread and back
  (`INLINE_RUN_SECONDS`): the requests that reach the batcher in one turn of the event loop run
  together on the loop, at the end of that turn. Blocking the loop that briefly costs less than
  waking a thread, and a waiting client less than the hand-off would.

With batching off either runs one request at a time.
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
# A full batch that runs in less than this runs on the event loop: about what a thread hand-off and the
# wake-up back cost under load, and less than parsing a 256 KB body inline (payloads.OFFLOAD_BYTES).
INLINE_RUN_SECONDS = 100e-6


@dataclass(slots=True)
class _Job:
    x: np.ndarray
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    queued_at: float = field(default_factory=time.perf_counter)


Result = tuple[asyncio.Future, object, bool]  # (future, value or error, failed)


def _deliver(results: list[Result]) -> None:
    for future, value, failed in results:
        if not future.done():  # the client may have gone away
            (future.set_exception if failed else future.set_result)(value)


def _take_batch(queue: deque[_Job], max_rows: int) -> list[_Job]:
    """The oldest job and those after it that fit in `max_rows` with it (a bigger job runs alone)."""
    jobs = [queue.popleft()]
    rows = len(jobs[0].x)
    while queue and rows + len(queue[0].x) <= max_rows:
        job = queue.popleft()
        rows += len(job.x)
        jobs.append(job)
    return jobs


class _BatchRunner:
    """What both batchers share: the model's run, the limits and the metrics of one version."""

    def __init__(self, run: RunFn, *, labels: tuple[str, str], metrics: Metrics,
                 max_batch_size: int, max_queue: int, batching: bool):
        self._run = run
        self._max_rows = max(1, max_batch_size) if batching else 1
        self._max_queue = max_queue
        self._closed = False
        self._queue_time = metrics.queue_time.labels(*labels)
        self._batch_rows = metrics.batch_size.labels(*labels)
        self._run_time = metrics.inference_time.labels(*labels)

    def _run_batch(self, jobs: list[_Job]) -> list[Result]:
        """Run the jobs as one batch; each gets exactly its rows of every output (or the run's error)."""
        started = time.perf_counter()
        for job in jobs:
            self._queue_time.observe(started - job.queued_at)
        try:
            x = jobs[0].x if len(jobs) == 1 else np.concatenate([j.x for j in jobs])
            outputs = self._run(x)
            self._run_time.observe(time.perf_counter() - started)
            self._batch_rows.observe(len(x))
            if len(jobs) == 1:
                return [(jobs[0].future, outputs, False)]
            results, start = [], 0
            for job in jobs:
                stop = start + len(job.x)
                results.append((job.future, {k: v[start:stop] for k, v in outputs.items()}, False))
                start = stop
            return results
        except Exception as exc:  # onnxruntime failure: every request in the batch gets it
            error = ApiError(500, f"inference failed: {str(exc)[:200]}")
            return [(job.future, error, True) for job in jobs]

    def _refuse(self) -> None:
        if self._closed:
            raise ApiError(503, "model version is being unloaded; retry")


class Batcher(_BatchRunner):
    """A queue and a worker thread in front of one model version's `run`."""

    def __init__(self, run: RunFn, *, labels: tuple[str, str], metrics: Metrics,
                 max_batch_size: int, max_queue_delay_ms: float, max_queue: int, batching: bool = True):
        super().__init__(run, labels=labels, metrics=metrics, max_batch_size=max_batch_size,
                         max_queue=max_queue, batching=batching)
        self._delay = max(0.0, max_queue_delay_ms) / 1000 if batching else 0.0
        self._cond = threading.Condition()
        self._queue: deque[_Job] = deque()
        self._rows = 0  # rows in the queue
        self._coming = 0
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
            self._refuse()
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
            jobs = _take_batch(self._queue, self._max_rows)
            self._rows -= sum(len(job.x) for job in jobs)
            return jobs

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            results = self._run_batch(jobs)
            by_loop: dict[asyncio.AbstractEventLoop, list[Result]] = {}
            for job, result in zip(jobs, results):
                by_loop.setdefault(job.loop, []).append(result)
            for loop, items in by_loop.items():  # one wake-up per event loop and batch
                try:
                    loop.call_soon_threadsafe(_deliver, items)
                except RuntimeError:  # that event loop is closed: nobody is waiting
                    pass


class InlineBatcher(_BatchRunner):
    """Runs a trivially cheap model on the event loop: the requests of one loop turn form the batches."""

    def __init__(self, run: RunFn, *, labels: tuple[str, str], metrics: Metrics,
                 max_batch_size: int, max_queue: int, batching: bool = True):
        super().__init__(run, labels=labels, metrics=metrics, max_batch_size=max_batch_size,
                         max_queue=max_queue, batching=batching)
        self._queues: dict[asyncio.AbstractEventLoop, deque[_Job]] = {}  # one per loop (tests run several)

    def announce(self) -> None:
        """Nothing to do: the batch is whatever one turn of the event loop submits."""

    def withdraw(self) -> None:
        """Nothing to do (see `announce`)."""

    async def infer(self, x: np.ndarray, announced: bool = False) -> dict[str, np.ndarray]:
        """Queue a checked float32 batch for the end of this loop turn; wait for exactly its rows."""
        self._refuse()
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = deque()
            loop.call_soon(self._flush, loop)
        elif len(queue) >= self._max_queue:
            raise ApiError(503, f"queue full ({self._max_queue} requests); retry later")
        job = _Job(x, loop.create_future(), loop)
        queue.append(job)
        return await job.future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = self._queues.pop(loop)
        while queue:
            _deliver(self._run_batch(_take_batch(queue, self._max_rows)))

    def close(self) -> None:
        """Refuse new requests (the queued ones are answered at the end of this loop turn)."""
        self._closed = True

    def join(self, timeout: float | None = None) -> None:
        """Nothing to wait for: there is no thread."""


def pick_batcher(run: RunFn, time_run: Callable[[int], float], *, labels: tuple[str, str], metrics: Metrics,
                 max_batch_size: int, max_queue_delay_ms: float, max_queue: int,
                 batching: bool = True) -> Batcher | InlineBatcher:
    """An `InlineBatcher` when `time_run(rows)` says one row and a full batch each take under
    `INLINE_RUN_SECONDS`, else a `Batcher`."""
    common = dict(labels=labels, metrics=metrics, max_batch_size=max_batch_size, max_queue=max_queue, batching=batching)
    full = max(1, max_batch_size) if batching else 1
    if time_run(1) < INLINE_RUN_SECONDS and time_run(full) < INLINE_RUN_SECONDS:
        return InlineBatcher(run, **common)
    return Batcher(run, max_queue_delay_ms=max_queue_delay_ms, **common)
