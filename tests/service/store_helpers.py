"""Helpers for the store tests: broken versions, live traffic, waiting on observable state."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import onnx_fixtures as fx

from nnspec.runtime.repository import publish_version

TIMEOUT = 10  # seconds any wait may take before the test fails
BODIES = {
    "iris": {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
    "housing": {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, -2, 0.5]}]},
    "credit": {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [30, 0, 0, 1, 2.5]}]},
}


def publish_truncated(repo: Path, name: str, version: int | None = None) -> int:
    """Publish a version of fixture model `name` whose model.onnx is cut in half (atomically, like a real publish)."""
    model = fx.build_onnx(name)
    number, _ = publish_version(repo, name, fx.manifest(name), {"model.onnx": model[:len(model) // 2]}, version=version)
    return number


def remove_version(repo: Path, name: str, version: int) -> None:
    """Take a version out of the repository in one rename, then delete it."""
    hidden = Path(tempfile.mkdtemp(prefix=".gone-", dir=repo / name))
    (repo / name / str(version)).rename(hidden / "v")
    shutil.rmtree(hidden)


def wait_until(condition, what: str, timeout: float = TIMEOUT) -> None:
    """Poll `condition()` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not true after {timeout} s"
        time.sleep(0.01)


def index_of(client) -> dict[tuple[str, str], dict]:
    """The repository index by (name, version)."""
    return {(e["name"], e["version"]): e for e in client.post("/v2/repository/index").json()}


class Traffic:
    """The status codes that client threads got, per model."""

    def __init__(self):
        self.lock = threading.Lock()
        self.codes: dict[str, list[int]] = {}
        self.not_ok: dict[str, list[str]] = {}  # the answers other than 200, for assertion messages

    def add(self, model: str, code: int, text: str = "") -> None:
        """Record one answer (`text`: its body, kept for the messages of answers other than 200)."""
        with self.lock:
            self.codes.setdefault(model, []).append(code)
            if code != 200:
                self.not_ok.setdefault(model, []).append(f"{code} {text[:200]}")

    def count(self, model: str, code: int = 200) -> int:
        """How many answers with `code` the model gave so far."""
        with self.lock:
            return self.codes.get(model, []).count(code)


@contextlib.contextmanager
def traffic(client, models, threads_per_model: int = 1, limit: int = 20000):
    """Client threads post V2 inferences to each model until the block ends; yields the Traffic."""
    stop, seen = threading.Event(), Traffic()

    def post(model: str) -> None:
        while not stop.is_set() and len(seen.codes.get(model, ())) < limit:
            try:
                r = client.post(f"/v2/models/{model}/infer", json=BODIES[model])
            except Exception as exc:  # the TestClient re-raises a server error: count it as a 500, keep going
                seen.add(model, 500, repr(exc))
            else:
                seen.add(model, r.status_code, r.text)

    workers = [threading.Thread(target=post, args=(m,)) for m in models for _ in range(threads_per_model)]
    for t in workers:
        t.start()
    try:
        yield seen
    finally:
        stop.set()
        for t in workers:
            t.join()
