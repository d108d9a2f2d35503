"""Hot reload: a new version is served after `load` or a poll, with no failed request meanwhile."""

import contextlib
import threading
import time

import numpy as np
import onnx_fixtures as fx

X = np.array([[1.0, -2.0, 0.5]], np.float32)
BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": X.ravel().tolist()}]}


@contextlib.contextmanager
def hammered(client, threads=4):
    """`threads` clients post inferences until the block ends; yields the (status, version, outputs) they got."""
    stop, results = threading.Event(), []

    def hammer():
        while not stop.is_set() and len(results) < 5000:
            r = client.post("/v2/models/housing/infer", json=BODY)
            results.append((r.status_code, r.json().get("model_version"), r.json().get("outputs")))

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in workers:
            t.join()


def test_load_under_load_switches_versions_with_zero_failures(repo, client_for):
    with client_for(repo, max_versions=1) as client, hammered(client) as results:
        time.sleep(0.3)
        fx.publish(repo, "housing", seed=2)
        assert client.post("/v2/repository/models/housing/load").json()["versions"] == ["2"]
        time.sleep(0.3)
        client.post("/v2/repository/models/housing/unload")  # in-flight ones finish; later: 404
        client.post("/v2/repository/models/housing/load")
        time.sleep(0.2)
    codes = {code for code, _, _ in results}
    versions = [v for _, v, _ in results if v]
    assert versions[0] == "1" and versions[-1] == "2" and set(versions) == {"1", "2"}
    assert codes <= {200, 404} and sum(code == 200 for code, _, _ in results) > 20
    # Every answer matches the version that gave it.
    for code, version, outputs in results:
        if code == 200:
            expected = fx.reference("housing", X, seed=int(version))["values"].ravel()
            np.testing.assert_allclose(outputs[0]["data"], expected, rtol=1e-5)


def test_switch_without_unload_fails_nothing(repo, client_for):
    with client_for(repo, max_versions=2) as client:
        with hammered(client) as results:
            for seed in (2, 3):
                time.sleep(0.2)
                fx.publish(repo, "housing", seed=seed)
                client.post("/v2/repository/models/housing/load")
            time.sleep(0.2)
        assert {code for code, _, _ in results} == {200}
        assert {v for _, v, _ in results} == {"1", "2", "3"}
        assert client.get("/v2/models/housing").json()["versions"] == ["2", "3"]
        assert client.get("/v2/models/housing/versions/1/ready").status_code == 400
        assert client.post("/v2/models/housing/versions/2/infer", json=BODY).json()["model_version"] == "2"


def test_polling_picks_up_new_versions_and_models(repo, client_for):
    with client_for(repo, poll_seconds=0.1) as client:
        fx.publish(repo, "iris", seed=4)
        (repo / "housing").rename(repo / ".housing-removed")
        deadline = time.time() + 5
        while time.time() < deadline:
            loaded = client.get("/v1/models").json()["models"]
            if "housing" not in loaded and client.get("/v2/models/iris").json()["versions"] == ["1", "2"]:
                break
            time.sleep(0.05)
        assert client.get("/v2/models/iris").json()["versions"] == ["1", "2"]
        assert "housing" not in client.get("/v1/models").json()["models"]


def test_polling_retries_a_broken_model_only_once_its_folder_changes(repo, client_for, caplog):
    fx.publish(repo, "iris", version=2)
    (repo / "iris" / "2" / "model.onnx").write_bytes(b"not onnx")
    with caplog.at_level("ERROR", logger="nnspec.serve"), client_for(repo, poll_seconds=0.05, max_versions=1) as client:
        time.sleep(0.5)  # about ten polls
        attempts = [r for r in caplog.records if r.getMessage().startswith("cannot load iris")]
        assert len(attempts) == 1  # the startup load; the polls did not rebuild the same broken sessions
        fx.publish(repo, "iris", seed=3, version=3)  # a new version: the poll loads it
        deadline = time.time() + 5
        while time.time() < deadline and client.get("/v2/models/iris").json().get("versions") != ["3"]:
            time.sleep(0.05)
        assert client.get("/v2/models/iris").json()["versions"] == ["3"]
