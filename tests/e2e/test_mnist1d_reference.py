"""The MNIST-1D reproduction specs train exactly the plain-PyTorch baseline recipe (bench/mnist1d_reference.py)."""

from pathlib import Path

import mnist1d_reference as reference
import pytest
import torch

from nnspec.compiler import load_spec_with_data
from nnspec.runtime.train import train

pytestmark = pytest.mark.slow  # trains each reproduction twice, on the generated MNIST-1D set

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["logreg", "mlp", "cnn", "gru"])
def test_reproduction_spec_trains_the_same_weights_as_the_plain_loop(name, cached_mnist1d):
    spec, _ = load_spec_with_data(str(ROOT / "specs" / "mnist1d" / f"{name}.yaml"),
                                  ["training.epochs=2", "training.seed=3", "training.device=cpu"])
    ours = train(spec, write=False).model
    plain = reference.reference_train(name, seed=3, steps=80)  # two epochs of 40 batches
    ours_params, plain_params = list(ours.parameters()), list(plain.parameters())
    assert [p.shape for p in ours_params] == [p.shape for p in plain_params]
    for a, b in zip(ours_params, plain_params):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the weights really moved: both took the same 80 steps away from the same start
    torch.manual_seed(3)
    start = reference.reference_model(name)
    assert any(not torch.allclose(a, b) for a, b in zip(start.parameters(), plain_params))
