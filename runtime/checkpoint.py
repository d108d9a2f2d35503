"""Checkpoints: plain tensors, numbers and strings, loaded with torch's weights-only unpickler
(no code from a checkpoint ever runs)."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_bytes


def rng_state() -> dict:
    """Python, NumPy and torch generator states as tensors and strings."""
    np_state = np.random.get_state()
    return {
        "python": json.dumps(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Inverse of rng_state()."""
    version, internal, gauss = json.loads(state["python"])
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write state atomically."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def snapshot(state):
    """A copy of a checkpoint's state that later training steps cannot change (every tensor cloned)."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: snapshot(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(snapshot(v) for v in state)
    return state


def load_checkpoint(path: str | Path, device="cpu") -> dict:
    """Read a checkpoint with the weights-only unpickler."""
    return torch.load(path, map_location=device, weights_only=True)
