"""The store under control races and bad versions: loads and unloads of a model are serialized,
failure state follows the repository, and each version loads (or fails) on its own."""

import threading
import time

from store_helpers import BODIES, TIMEOUT, traffic, wait_until

from nnspec.service import store as store_module


def infer(client, model: str, version: str | None = None):
    """POST one V2 inference to `model` (or one version of it)."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    return client.post(path + "/infer", json=BODIES[model])


def test_200_racing_load_unload_pairs_never_leave_a_dead_version(repo, client_for, monkeypatch):
    fingerprint = store_module._fingerprint

    def slow_disk(folder):  # a stat that takes a millisecond (network disk) widens every load's race window
        time.sleep(0.001)
        return fingerprint(folder)

    monkeypatch.setattr(store_module, "_fingerprint", slow_disk)
    with client_for(repo) as client, traffic(client, ["iris"], threads_per_model=2) as seen:
        together = threading.Barrier(2, timeout=TIMEOUT)

        def control(action: str) -> None:
            for _ in range(200):
                together.wait()  # each load starts with an unload: 200 racing pairs
                assert client.post(f"/v2/repository/models/iris/{action}").status_code in (200, 404)

        racers = [threading.Thread(target=control, args=(action,)) for action in ("load", "unload")]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert client.post("/v2/repository/models/iris/load").status_code == 200
        served = seen.count("iris")
        wait_until(lambda: seen.count("iris") >= served + 10, "iris answers 200 after the races")
    # During the races a request finds the model loaded (200) or not (404), never a closed version (503).
    assert set(seen.codes["iris"]) <= {200, 404}, [a for a in seen.not_ok["iris"] if not a.startswith("404")][:3]
