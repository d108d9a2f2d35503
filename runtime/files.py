"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write data to path through a temporary file in the same folder and a rename; `durable`: fsync before the
    rename (off for files rewritten every epoch: a crash keeps the previous whole file either way)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; run files, configs and schemas are for others to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, durable: bool = True) -> Path:
    """atomic_write_bytes for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), durable)


def atomic_write_json(path: str | Path, data) -> Path:
    """atomic_write_text for indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
