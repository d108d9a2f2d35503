"""Trivially cheap models run on the event loop (InlineBatcher); the store picks the batcher by timing the model."""

import asyncio
import threading
import time

import numpy as np

from nnspec.service.batching import INLINE_RUN_SECONDS, Batcher, InlineBatcher, pick_batcher
from nnspec.service.errors import ApiError
from nnspec.service.metrics import Metrics

OPTIONS = dict(labels=("m", "1"), max_batch_size=8, max_queue_delay_ms=5, max_queue=100)


def make_inline(run, **kw):
    options = {k: v for k, v in (OPTIONS | kw).items() if k != "max_queue_delay_ms"}
    return InlineBatcher(run, metrics=Metrics(), **options)


def test_pick_batcher_times_the_model():
    cheap = pick_batcher(lambda x: {"y": x}, lambda rows: INLINE_RUN_SECONDS / 2, metrics=Metrics(), **OPTIONS)
    costly = pick_batcher(lambda x: {"y": x}, lambda rows: INLINE_RUN_SECONDS * rows, metrics=Metrics(), **OPTIONS)
    assert isinstance(cheap, InlineBatcher) and isinstance(costly, Batcher)  # one row is cheap, eight are not
    costly.close()
    costly.join(2)


def test_one_loop_turn_is_one_batch_on_the_loop_thread():
    seen, threads = [], set()

    def run(x):
        seen.append(len(x))
        threads.add(threading.get_ident())
        return {"double": x * 2}

    batcher = make_inline(run)
    xs = [np.full((n, 2), i, np.float32) for i, n in enumerate([3, 1, 4, 2, 5])]

    async def main():
        return threading.get_ident(), await asyncio.gather(*(batcher.infer(x) for x in xs))

    loop_thread, results = asyncio.run(main())
    for x, result in zip(xs, results):
        np.testing.assert_array_equal(result["double"], x * 2)
    assert seen == [8, 7] and threads == {loop_thread}  # 3+1+4 rows, then 2+5: max_batch_size 8


def test_batching_off_runs_each_request_alone():
    seen = []
    batcher = make_inline(lambda x: seen.append(len(x)) or {"y": x}, batching=False)

    async def main():
        return await asyncio.gather(*(batcher.infer(np.zeros((2, 1), np.float32)) for _ in range(3)))

    asyncio.run(main())
    assert seen == [2, 2, 2]


def test_full_queue_closed_and_failing_runs():
    batcher = make_inline(lambda x: {"y": x}, max_queue=2)

    async def main(b, n):
        return await asyncio.gather(*(b.infer(np.full((1, 1), i, np.float32)) for i in range(n)),
                                    return_exceptions=True)

    results = asyncio.run(main(batcher, 3))
    assert [r["y"].tolist() for r in results[:2]] == [[[0.0]], [[1.0]]]
    assert isinstance(results[2], ApiError) and results[2].status == 503 and "queue full" in results[2].message

    def broken(x):
        raise RuntimeError("kaboom")

    assert all(isinstance(r, ApiError) and r.status == 500 for r in asyncio.run(main(make_inline(broken), 3)))
    batcher.close()
    (refused,) = asyncio.run(main(batcher, 1))
    assert isinstance(refused, ApiError) and refused.status == 503


def test_the_store_runs_a_tiny_model_inline_and_a_slow_one_on_its_thread(shared_repo, monkeypatch):
    from nnspec.runtime.session import ModelSession
    from nnspec.service.app import create_app
    from nnspec.service.settings import Settings

    def kinds():
        app = create_app(Settings(repository=shared_repo, intra_op_threads=1))

        async def main():
            async with app.router.lifespan_context(app):
                return {type(m.batcher) for versions in app.state.serving.store._models.values()
                        for m in versions.values()}
        return asyncio.run(main())

    assert kinds() == {InlineBatcher}  # the test models are tiny
    run = ModelSession.run_unchecked

    def slow_run(self, x):
        time.sleep(0.001)
        return run(self, x)

    monkeypatch.setattr(ModelSession, "run_unchecked", slow_run)
    assert kinds() == {Batcher}
