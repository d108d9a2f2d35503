"""Fixtures shared by every test folder."""

import os

import pytest

# Training runs take OMP_NUM_THREADS when the spec names no thread count: one thread keeps these tiny
# models fast on shared cores (and subprocesses inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")

_mnist1d_made: dict = {}


def _make_mnist1d_once(make_dataset):
    def cached(args=None):
        key = repr(sorted(vars(args).items())) if args is not None else None
        if key not in _mnist1d_made:
            _mnist1d_made[key] = make_dataset(args) if args is not None else make_dataset()
        return _mnist1d_made[key]  # callers copy what they keep (astype, torch.tensor)
    return cached


@pytest.fixture
def cached_mnist1d(monkeypatch):
    """MNIST-1D is generated on every load (~2 s): generate each argument set once per test session."""
    import mnist1d.data

    monkeypatch.setattr(mnist1d.data, "make_dataset", _make_mnist1d_once(mnist1d.data.make_dataset))
