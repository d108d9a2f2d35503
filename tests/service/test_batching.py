"""Dynamic batching: merged runs, each request gets its own rows, bounded queue, batching off."""

import asyncio
import threading
import time

import httpx
import numpy as np
import onnx_fixtures as fx
import pytest

from nnspec.runtime.session import ModelSession
from nnspec.service.app import create_app
from nnspec.service.batching import Batcher
from nnspec.service.errors import ApiError
from nnspec.service.metrics import Metrics
from nnspec.service.settings import Settings


def histogram(app, name, model):
    """(count, sum) of a histogram for one model from the app's registry."""
    registry = app.state.serving.metrics.registry
    labels = {"model": model, "version": "1"}
    return registry.get_sample_value(f"{name}_count", labels), registry.get_sample_value(f"{name}_sum", labels)


async def concurrent_requests(app, n: int):
    """Send n concurrent V1 and V2 requests with distinct inputs; return inputs and responses."""
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(1 + i % 3, 3)).astype(np.float32) for i in range(n)]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            def send(i, x):
                if i % 2:
                    return client.post("/v1/models/housing:predict", json={"instances": x.tolist()})
                body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.tolist()}]}
                return client.post("/v2/models/housing/infer", json=body)

            responses = await asyncio.gather(*(send(i, x) for i, x in enumerate(xs)))
            count, rows = histogram(app, "nnspec_batch_size", "housing")
    return xs, responses, count, rows


def answers(i, response):
    if i % 2:
        return np.array([list(p["values"].values()) for p in response.json()["predictions"]])
    out = response.json()["outputs"][0]
    return np.array(out["data"]).reshape(out["shape"])


@pytest.mark.parametrize("batching", [True, False])
@pytest.mark.slow
def test_200_concurrent_requests_each_get_their_own_rows(shared_repo, batching, monkeypatch):
    run = ModelSession.run_unchecked

    def slow_run(self, x):  # a model with real compute: requests pile up while it runs
        time.sleep(0.002)
        return run(self, x)

    monkeypatch.setattr(ModelSession, "run_unchecked", slow_run)
    app = create_app(Settings(repository=shared_repo, intra_op_threads=1, batching=batching))
    xs, responses, batches, rows = asyncio.run(concurrent_requests(app, 200))
    assert [r.status_code for r in responses] == [200] * 200
    for i, (x, r) in enumerate(zip(xs, responses)):
        np.testing.assert_allclose(answers(i, r), fx.reference("housing", x)["values"], rtol=1e-5, atol=1e-6)
    assert rows == sum(len(x) for x in xs)
    if batching:
        assert batches < 100  # merged: 200 requests (400 rows) in far fewer runs
    else:
        assert batches == 200


def run_jobs(batcher, xs):
    async def main():
        return await asyncio.gather(*(batcher.infer(x) for x in xs), return_exceptions=True)
    return asyncio.run(main())


def make_batcher(run, **kw):
    defaults = dict(labels=("m", "1"), metrics=Metrics(), max_batch_size=8, max_queue_delay_ms=5, max_queue=100)
    return Batcher(run, **(defaults | kw))


class Gate:
    """A run function that holds its first call until released: `entered` is set once the worker is inside it."""

    def __init__(self, outputs):
        self.outputs, self.seen = outputs, []
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, x):
        self.seen.append(len(x))
        self.entered.set()
        assert self.release.wait(5), "the test never released the worker"
        return self.outputs(x)

    async def held(self, batcher, x):
        """Submit x and return (its task) once the worker is running it."""
        first = asyncio.ensure_future(batcher.infer(x))
        assert await asyncio.to_thread(self.entered.wait, 5), "the worker never took the first request"
        return first


def test_batches_respect_max_batch_size_and_split_rows():
    gate = Gate(lambda x: {"double": x * 2, "sum": x.sum(axis=1)})
    batcher = make_batcher(gate)
    xs = [np.full((n, 2), i, np.float32) for i, n in enumerate([3, 1, 4, 2, 5, 1, 1])]

    async def main():
        first = await gate.held(batcher, xs[0])
        rest = [asyncio.ensure_future(batcher.infer(x)) for x in xs[1:]]
        await asyncio.sleep(0)  # one loop turn: each task runs up to awaiting its result, so all six are queued
        gate.release.set()
        return await asyncio.gather(first, *rest)

    results = asyncio.run(main())
    for x, result in zip(xs, results):
        np.testing.assert_array_equal(result["double"], x * 2)
        np.testing.assert_array_equal(result["sum"], x.sum(axis=1))
    # the six queued requests (1, 4, 2, 5, 1, 1 rows) fill batches in order up to 8 rows: 1+4+2, then 5+1+1
    assert gate.seen == [3, 7, 7]
    batcher.close()
    batcher.join(2)


def test_a_request_larger_than_max_batch_size_runs_alone():
    batcher = make_batcher(lambda x: {"y": x + 1}, max_batch_size=2)
    (result,) = run_jobs(batcher, [np.zeros((5, 1), np.float32)])
    np.testing.assert_array_equal(result["y"], np.ones((5, 1)))
    batcher.close()


def test_full_queue_is_503_and_failures_reach_every_request():
    gate = Gate(lambda x: {"y": x})
    batcher = make_batcher(gate, max_queue=2, batching=False)

    async def main():
        first = await gate.held(batcher, np.zeros((1, 1), np.float32))  # the worker holds the first
        more = [asyncio.ensure_future(batcher.infer(np.full((1, 1), i, np.float32))) for i in range(3)]
        # the queue takes two more; the third is refused at once, while the worker is still held
        done, _ = await asyncio.wait(more, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert done == {more[2]} and not first.done()
        gate.release.set()
        return await asyncio.gather(first, *more, return_exceptions=True)

    results = asyncio.run(main())
    assert [r["y"].tolist() for r in results[:3]] == [[[0.0]], [[0.0]], [[1.0]]]
    assert isinstance(results[3], ApiError) and results[3].status == 503 and "queue full" in results[3].message
    batcher.close()

    def broken(x):
        raise RuntimeError("kaboom")

    failing = make_batcher(broken)
    results = run_jobs(failing, [np.zeros((1, 1), np.float32)] * 3)
    assert all(isinstance(r, ApiError) and r.status == 500 for r in results)
    failing.close()


def test_closed_batcher_refuses_and_its_thread_ends():
    batcher = make_batcher(lambda x: {"y": x})
    batcher.close()
    batcher.join(2)
    (result,) = run_jobs(batcher, [np.zeros((1, 1), np.float32)])
    assert isinstance(result, ApiError) and result.status == 503
