"""Shared fixtures for the runtime (training, export) tests."""

import sys

import pytest
import runtime_helpers as _helpers


@pytest.fixture(scope="session")
def h():
    """The runtime_helpers module: spec builders, data sets on disk, the CLI."""
    return _helpers


@pytest.fixture(autouse=True)
def _restore_torch_globals():
    """One torch thread; and train() with training.deterministic switches on torch's deterministic
    algorithms process-wide: give each test back the setting it started with (torch-free tests stay so)."""
    torch = sys.modules.get("torch")
    before = torch.are_deterministic_algorithms_enabled() if torch else False
    if torch is not None:
        # These models are tiny: one intra-op thread is several times faster than two on shared cores.
        torch.set_num_threads(1)
    yield
    torch = sys.modules.get("torch")
    if torch is not None and torch.are_deterministic_algorithms_enabled() != before:
        torch.use_deterministic_algorithms(before)  # only when a test changed it: the call loads more of torch


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory):
    """specs/digits_mlp.yaml trained once (15 epochs) into a run directory, shared by the run-dir,
    evaluate and export tests."""
    from nnspec.compiler import load_spec
    from nnspec.runtime.train import train

    spec = load_spec(_helpers.SPECS / "digits_mlp.yaml", ["training.epochs=15"])
    return train(spec, runs_dir=tmp_path_factory.mktemp("runs"))
