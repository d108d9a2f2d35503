"""A real `nnspec serve` process on 127.0.0.1 for end-to-end tests: started, waited for, stopped."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

# The CLI as users run it (`nnspec ...` is `python -m nnspec ...`).
CLI = "from nnspec.cli import main; main()"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(repo: Path, *options: str, env: dict | None = None, timeout: float = 30) -> Iterator[tuple[str, int]]:
    """`nnspec serve repo --port P *options` until it answers (models load before it does); yields (url, port). On exit the server is stopped
    and its output must hold no traceback."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CLI, "serve", str(repo), "--port", str(port), *options],
                            env=os.environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.1)
        else:
            pytest.fail(f"the server did not answer within {timeout:g} s")
        yield url, port
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert "Traceback" not in output, output[-3000:]  # no request, however it ended, logs a traceback
