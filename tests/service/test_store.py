"""The store under control races and bad versions: loads and unloads of a model are serialized,
failure state follows the repository, and each version loads (or fails) on its own."""

import shutil
import threading
import time

import numpy as np
import onnx_fixtures as fx
import pytest
from store_helpers import BODIES, TIMEOUT, index_of, publish_truncated, traffic, wait_until

from nnspec.runtime.repository import publish_version
from nnspec.service import store as store_module


def infer(client, model: str, version: str | None = None):
    """POST one V2 inference to `model` (or one version of it)."""
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    return client.post(path + "/infer", json=BODIES[model])


@pytest.mark.slow
def test_200_racing_load_unload_pairs_never_leave_a_dead_version(repo, control_client_for, monkeypatch):
    fingerprint = store_module._fingerprint

    def slow_disk(folder):  # a stat that takes a millisecond (network disk) widens every load's race window
        time.sleep(0.001)
        return fingerprint(folder)

    monkeypatch.setattr(store_module, "_fingerprint", slow_disk)
    with control_client_for(repo) as client, traffic(client, ["iris"]) as seen:
        together, answers = threading.Barrier(2, timeout=TIMEOUT), {"load": [], "unload": []}

        def control(action: str) -> None:
            for _ in range(200):
                together.wait()  # each load starts with an unload: 200 racing pairs
                answers[action].append(client.post(f"/v2/repository/models/iris/{action}").status_code)

        racers = [threading.Thread(target=control, args=(action,)) for action in answers]
        for t in racers:
            t.start()
        for t in racers:
            t.join()
        assert len(answers["load"]) == len(answers["unload"]) == 200
        assert set(answers["load"]) == {200} and set(answers["unload"]) <= {200, 404}
        assert client.post("/v2/repository/models/iris/load").status_code == 200
        served = seen.count("iris")
        wait_until(lambda: seen.count("iris") >= served + 10, "iris answers 200 after the races")
    # During the races a request finds the model loaded (200) or not (404), never a closed version (503).
    assert set(seen.codes["iris"]) <= {200, 404}, [a for a in seen.not_ok["iris"] if not a.startswith("404")][:3]


def _broken_only_repo(tmp_path):
    """A repository with a good `housing` and an `iris` whose only version cannot load."""
    repo = fx.build_repo(tmp_path / "models", names=("housing",))
    publish_truncated(repo, "iris")
    return repo


def test_unloading_a_failed_model_clears_the_failure(tmp_path, control_client_for):
    with control_client_for(_broken_only_repo(tmp_path)) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/v2/repository/models/iris/unload").status_code == 200
        assert client.get("/v2/health/ready").status_code == 200
        assert index_of(client)[("iris", "1")] == {"name": "iris", "version": "1", "state": "UNAVAILABLE",
                                                   "reason": "unloaded"}
        assert client.post("/v2/repository/models/iris/unload").status_code == 404  # nothing left to unload


def test_a_deleted_failed_model_is_forgotten_on_the_next_poll(tmp_path, client_for):
    repo = _broken_only_repo(tmp_path)
    with client_for(repo, model_control="poll", poll_seconds=0.02) as client:
        assert client.get("/v2/health/ready").status_code == 503
        shutil.rmtree(repo / "iris")
        wait_until(lambda: client.get("/v2/health/ready").status_code == 200, "ready after the folder is gone")
        assert [e["name"] for e in client.post("/v2/repository/index").json()] == ["housing"]


def test_a_deleted_failed_model_is_forgotten_on_a_load_attempt(tmp_path, control_client_for):
    repo = _broken_only_repo(tmp_path)
    with control_client_for(repo) as client:
        shutil.rmtree(repo / "iris")
        assert client.post("/v2/repository/models/iris/load").status_code == 404
        assert client.get("/v2/health/ready").status_code == 200
        assert [e["name"] for e in client.post("/v2/repository/index").json()] == ["housing"]


def test_the_index_shows_each_failed_version_with_a_reason_and_no_server_path(tmp_path, control_client_for):
    repo = _broken_only_repo(tmp_path)
    with control_client_for(repo) as client:
        entry = index_of(client)[("iris", "1")]
        assert entry["state"] == "UNAVAILABLE" and "cannot load" in entry["reason"], entry
        assert "iris/1" in entry["reason"] and str(tmp_path) not in entry["reason"]
        r = client.post("/v2/repository/models/iris/load")
        assert r.status_code == 400 and "cannot load" in r.json()["error"] and str(tmp_path) not in r.text


@pytest.mark.parametrize("max_versions", [1, 3])
def test_a_broken_newest_version_leaves_the_newest_good_one_serving(repo, control_client_for, max_versions):
    publish_truncated(repo, "iris")  # version 2
    with control_client_for(repo, max_versions=max_versions) as client:
        assert client.get("/v2/models/iris").json()["versions"] == ["1"]
        assert infer(client, "iris").json()["model_version"] == "1"
        assert client.get("/v2/health/ready").status_code == 200  # every model has a servable version
        index = index_of(client)
        assert index[("iris", "1")] == {"name": "iris", "version": "1", "state": "READY", "reason": ""}
        assert index[("iris", "2")]["state"] == "UNAVAILABLE" and "cannot load" in index[("iris", "2")]["reason"]
        assert [(e["name"], e["version"]) for e in client.post("/v2/repository/index", json={"ready": True}).json()] \
            == [("credit", "1"), ("digits8", "1"), ("housing", "1"), ("iris", "1")]
        r = client.post("/v2/repository/models/iris/load")  # the broken version fails again; 1 stays
        assert r.status_code == 400 and "version 2" in r.json()["error"] and str(repo) not in r.text
        assert infer(client, "iris").json()["model_version"] == "1"


def test_a_good_version_published_over_a_broken_one_is_served(repo, control_client_for):
    publish_truncated(repo, "iris")  # version 2
    with control_client_for(repo) as client:
        fx.publish(repo, "iris", seed=3)  # version 3
        assert client.post("/v2/repository/models/iris/load").status_code == 400  # 2 still fails
        assert client.get("/v2/models/iris").json()["versions"] == ["1", "3"]
        out = infer(client, "iris").json()
        x = np.array(BODIES["iris"]["inputs"][0]["data"], np.float32).reshape(1, 4)
        assert out["model_version"] == "3"
        np.testing.assert_allclose(out["outputs"][0]["data"], fx.reference("iris", x, seed=3)["probabilities"].ravel(),
                                   rtol=1e-5)


def test_a_manifest_shape_that_contradicts_the_graph_is_a_load_error(tmp_path, control_client_for):
    repo = fx.build_repo(tmp_path / "models", names=("housing",))
    manifest = fx.manifest("iris") | {"input": {"name": "input", "dtype": "float32", "shape": [5]}}
    publish_version(repo, "iris", manifest, {"model.onnx": fx.build_onnx("iris")})  # the graph takes [batch, 4]
    with control_client_for(repo) as client:
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get("/v2/models/iris").status_code == 404
        reason = index_of(client)[("iris", "1")]["reason"]
        assert "input.shape [5]" in reason and "[batch, 4]" in reason, reason


def test_a_served_version_overwritten_with_a_broken_model_keeps_serving(repo, control_client_for):
    with control_client_for(repo) as client:
        model = fx.build_onnx("iris")
        publish_version(repo, "iris", fx.manifest("iris"), {"model.onnx": model[:100]}, version=1, overwrite=True)
        assert client.post("/v2/repository/models/iris/load").status_code == 400
        assert infer(client, "iris").json()["model_version"] == "1"  # the session loaded before still serves
        entry = index_of(client)[("iris", "1")]
        assert entry["state"] == "READY" and "cannot load" in entry["reason"], entry
        assert client.get("/v2/health/ready").status_code == 200
