"""`nnspec serve --workers 2` on 127.0.0.1: one truth across the workers (metrics, repository changes)."""

import os
import socket
import subprocess
import sys
import time

import httpx
import onnx_fixtures as fx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow  # starts real multi-worker server processes

CLI = "from nnspec.cli import main; main()"
PREDICT = {"instances": [[1, 2, 3, 4]]}
DEADLINE = 60  # seconds any wait below may take before the test fails (two workers start on shared cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, what: str, proc: subprocess.Popen):
    """check()'s first truthy answer, polled until DEADLINE; fails if the server exits meanwhile."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            answer = check()
        except httpx.TransportError:
            answer = None
        if answer:
            return answer
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        time.sleep(0.05)
    pytest.fail(f"{what} within {DEADLINE} s")


def samples(url: str, name: str) -> list:
    """The samples of metric `name` in one /metrics scrape."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples if s.name == name]


def loaded_by_worker(url: str) -> dict[str, dict[str, float]]:
    """model -> {worker pid -> versions loaded}, from nnspec_models_loaded."""
    loaded: dict[str, dict[str, float]] = {}
    for s in samples(url, "nnspec_models_loaded"):
        loaded.setdefault(s.labels["model"], {})[s.labels.get("pid", "?")] = s.value
    return loaded


def every_worker_has(url: str, model: str, versions: int) -> bool:
    """Whether both workers report `versions` loaded versions of `model`."""
    loaded = loaded_by_worker(url).get(model, {})
    return len(loaded) == 2 and set(loaded.values()) == {versions}


def predictions_counted(url: str) -> float:
    """nnspec_requests_total of the answered iris predictions, over every worker."""
    return sum(s.value for s in samples(url, "nnspec_requests_total")
               if s.labels["model"] == "iris" and s.labels["endpoint"] == "/v1/models/{name}:predict"
               and s.labels["status"] == "200")


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """(url, repository, process) of `serve --workers 2 --model-control poll`, once both workers serve both models."""
    repo = fx.build_repo(tmp_path_factory.mktemp("models"), names=("iris", "credit"))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(repo), "--port", str(port), "--workers", "2",
                             "--model-control", "poll", "--poll-seconds", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: every_worker_has(url, "iris", 1) and every_worker_has(url, "credit", 1),
                   "two workers did not report both models loaded", proc)
        yield url, repo, proc
    finally:
        proc.terminate()
        proc.wait(20)


def test_metrics_count_the_requests_of_every_worker(workers):
    url, _, _ = workers
    before = predictions_counted(url)
    for _ in range(40):  # a new connection each: the kernel hands them to either worker
        assert httpx.post(f"{url}/v1/models/iris:predict", json=PREDICT).status_code == 200
    for _ in range(3):  # whichever worker answers the scrape, it reports all of them
        assert predictions_counted(url) == before + 40
    assert all(len(pids) == 2 for pids in loaded_by_worker(url).values())


def test_a_repository_change_reaches_every_worker(workers):
    url, repo, proc = workers
    fx.publish(repo, "iris", seed=2)
    (repo / "credit").rename(repo / ".credit-removed")
    wait_until(lambda: every_worker_has(url, "iris", 2), "a worker missed iris version 2", proc)
    wait_until(lambda: every_worker_has(url, "credit", 0), "a worker still serves credit", proc)
    for _ in range(20):  # every worker agrees
        r = httpx.post(f"{url}/v1/models/iris:predict", json=PREDICT)
        assert r.status_code == 200 and r.headers["x-model-version"] == "2"
        assert httpx.post(f"{url}/v1/models/credit:predict", json=PREDICT).status_code == 404
    r = httpx.post(f"{url}/v2/repository/models/credit/load")
    assert r.status_code == 403 and "--model-control poll" in r.json()["error"]


def test_explicit_control_needs_one_worker(tmp_path):
    env = os.environ | {"TEST_NNSPEC_ADMIN": "k"}
    out = subprocess.run([sys.executable, "-c", CLI, "serve", str(tmp_path), "--workers", "2", "--model-control",
                          "explicit", "--admin-key-env", "TEST_NNSPEC_ADMIN"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--model-control explicit needs --workers 1" in out.stderr, out.stderr
