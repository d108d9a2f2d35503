"""Stress: loads, unloads, corrupt versions and inference interleaved for 20 s, in process.

The models that stay loaded (iris, housing) must answer every request; the churned one (credit)
answers 200 or 404 (not loaded), never a 5xx; afterwards every model serves and the server is ready.
"""

import collections
import threading
import time

import pytest
from store_helpers import BODIES, index_of, publish_truncated, remove_version, traffic

DURATION = 20.0  # seconds of interleaving
STAYING = ["iris", "housing"]
CHURNED = "credit"


@pytest.mark.slow
def test_loads_unloads_corrupt_versions_and_inference_interleaved(repo, control_client_for):
    done, problems, lock = collections.Counter(), [], threading.Lock()

    def control(client, action: str, name: str, expected: set[int]) -> None:
        r = client.post(f"/v2/repository/models/{name}/{action}")
        with lock:
            done[action] += 1
            if r.status_code not in expected:
                problems.append(f"{action} {name}: {r.status_code} {r.text[:200]}")

    def repeat(step, deadline: float) -> None:
        try:
            while time.monotonic() < deadline:
                step()
        except Exception as exc:  # a failed step ends its thread; the test reports it
            problems.append(repr(exc))

    with control_client_for(repo) as client, traffic(client, [*STAYING, CHURNED]) as seen:
        def load_churned():  # 400: a corrupt version is there right now
            control(client, "load", CHURNED, {200, 400})

        def unload_churned():  # 404: already unloaded, and not loaded again yet
            control(client, "unload", CHURNED, {200, 404})

        def corrupt():  # a truncated newest version appears, a load fails on it (400), then it disappears
            for name in [*STAYING, CHURNED]:
                version = publish_truncated(repo, name)
                control(client, "load", name, {400})
                remove_version(repo, name, version)
                with lock:
                    done["corrupt"] += 1

        def reload_staying():  # 400: a corrupt version is there right now
            for name in STAYING:
                control(client, "load", name, {200, 400})

        deadline = time.monotonic() + DURATION
        workers = [threading.Thread(target=repeat, args=(step, deadline))
                   for step in (load_churned, unload_churned, corrupt, reload_staying)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        for name in [*STAYING, CHURNED]:  # no corrupt version is left: every load succeeds
            assert client.post(f"/v2/repository/models/{name}/load").status_code == 200, name
        assert client.post(f"/v2/models/{CHURNED}/infer", json=BODIES[CHURNED]).status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert {e["state"] for e in index_of(client).values()} == {"READY"}
    assert not problems, problems[:5]
    for name in STAYING:
        assert set(seen.codes[name]) == {200}, (name, seen.not_ok[name][:5])
    assert set(seen.codes[CHURNED]) <= {200, 404}, [a for a in seen.not_ok[CHURNED] if not a.startswith("404")][:3]
    assert min(done.values()) >= 10 and seen.count("iris") >= 100, (done, seen.count("iris"))
