"""Hot reload: a new version is served after `load` or a poll, with no failed request meanwhile."""

import contextlib
import threading

import numpy as np
import onnx_fixtures as fx
import pytest

from nnspec.service.store import ModelStore

X = np.array([[1.0, -2.0, 0.5]], np.float32)
BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": X.ravel().tolist()}]}
TIMEOUT = 10  # seconds any wait below may take before the test fails


class Answers(list):
    """The (status, version, outputs) the hammering clients got, in arrival order; `wait` blocks on new ones."""

    def __init__(self):
        super().__init__()
        self.changed = threading.Condition()

    def add(self, answer) -> None:
        with self.changed:
            self.append(answer)
            self.changed.notify_all()

    def wait(self, version: str, n: int = 5, since: int = 0) -> int:
        """Block until n answers from `version` arrived after the first `since` ones; returns how many there are now."""
        def enough():
            return sum(v == version for _, v, _ in self[since:]) >= n
        with self.changed:
            assert self.changed.wait_for(enough, TIMEOUT), f"fewer than {n} answers from version {version} in {TIMEOUT} s"
            return len(self)


@contextlib.contextmanager
def hammered(client, threads=4):
    """`threads` clients post inferences until the block ends; yields the Answers they got."""
    stop, results = threading.Event(), Answers()

    def hammer():
        while not stop.is_set() and len(results) < 5000:
            r = client.post("/v2/models/housing/infer", json=BODY)
            results.add((r.status_code, r.json().get("model_version"), r.json().get("outputs")))

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for t in workers:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in workers:
            t.join()


class Polls:
    """Counts finished repository polls (ModelStore.sync calls)."""

    def __init__(self):
        self.finished = 0
        self.changed = threading.Condition()

    def wait(self, n: int) -> None:
        """Block until n more polls have finished: with n >= 2, at least one started after this call."""
        with self.changed:
            target = self.finished + n
            assert self.changed.wait_for(lambda: self.finished >= target, TIMEOUT), f"{n} polls did not finish in {TIMEOUT} s"


@pytest.fixture
def polls(monkeypatch):
    """A Polls counting the app's repository polls."""
    polls, sync = Polls(), ModelStore.sync

    def counted(self):
        try:
            sync(self)
        finally:
            with polls.changed:
                polls.finished += 1
                polls.changed.notify_all()

    monkeypatch.setattr(ModelStore, "sync", counted)
    return polls


def test_load_under_load_switches_versions_with_zero_failures(repo, control_client_for):
    with control_client_for(repo, max_versions=1) as client, hammered(client) as results:
        results.wait("1", n=10)
        fx.publish(repo, "housing", seed=2)
        assert client.post("/v2/repository/models/housing/load").json()["versions"] == ["2"]
        results.wait("2", n=10)
        client.post("/v2/repository/models/housing/unload")  # in-flight ones finish; later: 404
        reloaded = len(results)
        client.post("/v2/repository/models/housing/load")
        results.wait("2", n=10, since=reloaded)
    codes = {code for code, _, _ in results}
    versions = [v for _, v, _ in results if v]
    assert versions[0] == "1" and versions[-1] == "2" and set(versions) == {"1", "2"}
    assert codes <= {200, 404} and sum(code == 200 for code, _, _ in results) > 20
    # Every answer matches the version that gave it.
    for code, version, outputs in results:
        if code == 200:
            expected = fx.reference("housing", X, seed=int(version))["values"].ravel()
            np.testing.assert_allclose(outputs[0]["data"], expected, rtol=1e-5)


def test_switch_without_unload_fails_nothing(repo, control_client_for):
    with control_client_for(repo, max_versions=2) as client:
        with hammered(client) as results:
            for seed in (2, 3):
                results.wait(str(seed - 1))  # the current version is answering
                fx.publish(repo, "housing", seed=seed)
                client.post("/v2/repository/models/housing/load")
            results.wait("3")
        assert {code for code, _, _ in results} == {200}
        assert {v for _, v, _ in results} == {"1", "2", "3"}
        assert client.get("/v2/models/housing").json()["versions"] == ["2", "3"]
        assert client.get("/v2/models/housing/versions/1/ready").status_code == 400
        assert client.post("/v2/models/housing/versions/2/infer", json=BODY).json()["model_version"] == "2"


def test_polling_picks_up_new_versions_and_models(repo, client_for, polls):
    with client_for(repo, model_control="poll", poll_seconds=0.05) as client:
        assert "housing" in client.get("/v1/models").json()["models"]
        fx.publish(repo, "iris", seed=4)
        (repo / "housing").rename(repo / ".housing-removed")
        polls.wait(2)  # a whole poll after the changes
        assert client.get("/v2/models/iris").json()["versions"] == ["1", "2"]
        assert "housing" not in client.get("/v1/models").json()["models"]


def test_polling_retries_a_broken_model_only_once_its_folder_changes(repo, client_for, caplog, polls):
    fx.publish(repo, "iris", version=2)
    (repo / "iris" / "2" / "model.onnx").write_bytes(b"not onnx")
    with caplog.at_level("ERROR", logger="nnspec.serve"), client_for(repo, model_control="poll", poll_seconds=0.02,
                                                                   max_versions=1) as client:
        polls.wait(10)
        attempts = [r for r in caplog.records if r.getMessage().startswith("cannot load iris")]
        assert len(attempts) == 1  # the startup load; the polls did not rebuild the same broken sessions
        fx.publish(repo, "iris", seed=3, version=3)  # a new version: the poll loads it
        polls.wait(2)
        assert client.get("/v2/models/iris").json()["versions"] == ["3"]
