"""The MNIST-1D baseline training recipe in plain PyTorch, beside nnspec's reproduction specs.

Checks that `specs/mnist1d/{logreg,mlp,cnn,gru}.yaml` train the same network the same way as the
published MNIST-1D baselines: data from the mnist1d package's generator with its default arguments,
the same modules built in the same order (so a seed gives the same initial weights), Adam at lr
0.01, batches of 100 taken in order, 6000 steps, the final weights scored on the 1000 test signals.
For each seed it prints the plain loop's test accuracy and nnspec's, so any difference between the
two is visible run by run.

    python bench/mnist1d_reference.py --model gru --seeds 0 1 2 42 [--jobs 2]

Seed 42 is the seed the published per-model accuracies were obtained with.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS, BATCH, LR = 6000, 100, 0.01


def reference_model(name: str):
    """The baseline models, built with torch.nn in a fixed construction order (so the same seed gives the same weights)."""
    import torch
    from torch import nn

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(100, 100)

        def forward(self, h):
            return h + torch.relu(self.inner(h))

    class GRUNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(1, 6, batch_first=True, bidirectional=True)
            self.linear = nn.Linear(480, 10)

        def forward(self, x):
            out, _ = self.gru(x.unsqueeze(-1))  # (batch, 40 steps, 1 value) -> (batch, 40, 12)
            return self.linear(out.flatten(1))

    if name == "logreg":
        return nn.Linear(40, 10)
    if name == "mlp":
        return nn.Sequential(nn.Linear(40, 100), nn.ReLU(), Residual(), nn.Linear(100, 10))
    if name == "cnn":
        return nn.Sequential(nn.Unflatten(1, (1, 40)),
                             nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Flatten(), nn.Linear(125, 10))
    return GRUNet()


@functools.cache
def mnist1d_tensors():
    """Train and test tensors from the package's generator with its default arguments (as nnspec loads them)."""
    import torch
    from mnist1d.data import get_dataset_args, make_dataset

    d = make_dataset(get_dataset_args())
    return (torch.tensor(d["x"], dtype=torch.float32), torch.tensor(d["y"], dtype=torch.int64),
            torch.tensor(d["x_test"], dtype=torch.float32), torch.tensor(d["y_test"], dtype=torch.int64))


def reference_train(name: str, seed: int, steps: int = STEPS):
    """The baseline recipe: seed, build, Adam 0.01, batches of 100 in order; returns the final model."""
    import torch

    x, y, _, _ = mnist1d_tensors()
    torch.manual_seed(seed)
    model = reference_model(name)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    for step in range(steps):
        i = (step * BATCH) % len(x)
        loss = torch.nn.functional.cross_entropy(model(x[i:i + BATCH]), y[i:i + BATCH])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def reference_run(name: str, seed: int, steps: int = STEPS) -> float:
    """Test accuracy (%) of the baseline recipe with its final weights, one torch thread."""
    import torch

    torch.set_num_threads(1)
    model = reference_train(name, seed, steps)
    _, _, xt, yt = mnist1d_tensors()
    with torch.no_grad():
        return 100 * float((model(xt).argmax(1) == yt).float().mean())


def nnspec_run(name: str, seed: int) -> float:
    """Test accuracy (%) of nnspec training the committed reproduction spec with this seed."""
    import torch
    from nnspec.compiler import load_spec_with_data
    from nnspec.runtime.train import train

    torch.set_num_threads(1)
    spec, _ = load_spec_with_data(str(ROOT / "specs" / "mnist1d" / f"{name}.yaml"), [f"training.seed={seed}", "training.device=cpu"])
    return 100 * train(spec, write=False).summary["test"]["accuracy"]


def both(name: str, seed: int) -> tuple[int, float, float, float]:
    t0 = time.perf_counter()
    ref, ours = reference_run(name, seed), nnspec_run(name, seed)
    return seed, ref, ours, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["logreg", "mlp", "cnn", "gru"], default="gru")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 42])
    p.add_argument("--jobs", type=int, default=1)
    a = p.parse_args()
    print(f"{'seed':>4}  {'plain loop %':>12}  {'nnspec %':>8}  {'diff':>6}  seconds")
    with concurrent.futures.ProcessPoolExecutor(a.jobs) as pool:
        for seed, ref, ours, secs in pool.map(both, [a.model] * len(a.seeds), a.seeds):
            print(f"{seed:>4}  {ref:>12.2f}  {ours:>8.2f}  {ours - ref:>+6.2f}  {secs:.0f}", flush=True)


if __name__ == "__main__":
    main()
