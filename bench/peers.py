"""nnspec beside its peers: `nnspec train` vs a bare PyTorch script vs PyTorch Lightning (lean and default
Trainer) vs Keras 3 (torch backend), same model, data, optimizer, batches, epochs and one torch thread each.

Every run is a fresh process (its wall time is the "whole process" column, Python start-up included); the
optimization loop's samples/s is timed inside each from an epoch's start to the end of its last optimizer
step (validation excluded). Runs are interleaved: each round runs every contestant once, in an order
rotated round by round; the tables show medians and, per round, ratios. Peers come from the `bench`
extra: pip install -e '.[bench]'.

The data are the spec's own splits, already normalized, written once to an .npz that every contestant
reads (nnspec as `data.source: npz` with its fixed validation and test sets, `normalize: none`), so no one
pays for generating or splitting it. The learning-rate schedule is off for everyone.

    python bench/peers.py [--rounds 5] [--epochs 20] [--out docs/BENCHMARKS.md]

One run writes the whole '## Training beside peers' section: both specs, the load average while it
ran, two nnspec trainings side by side against one alone, and the table-loading rows of
bench/tables.py when that script exists (run as `python bench/tables.py --markdown`; its stdout,
a markdown fragment, goes into the section as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADING = "## Training beside peers"
CASES = {"digits MLP": "specs/digits_mlp.yaml", "MNIST-1D CNN": "specs/mnist1d/cnn.yaml"}
CONTESTANTS = ("nnspec train", "nnspec train --no-export", "bare PyTorch", "Lightning lean", "Lightning default", "Keras 3 (torch)")
PEERS = {"bare PyTorch": "bare", "Lightning lean": "lightning-lean", "Lightning default": "lightning-default", "Keras 3 (torch)": "keras"}


# ---- the peers: each runs in its own process (`peers.py --peer NAME RECIPE`) and prints one JSON line ----

def _arrays(recipe: dict):
    import numpy as np

    with np.load(recipe["data"]) as f:
        return {k: f[k] for k in f.files}


def torch_model(recipe: dict):
    """The network of the case, written by hand in torch.nn (the same layers nnspec's spec compiles to)."""
    from torch import nn

    if recipe["model"] == "mlp":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(), nn.Conv1d(25, 25, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Flatten(), nn.Linear(125, 10))


def torch_optimizer(recipe: dict, params):
    import torch

    opt = recipe["optimizer"]
    if opt["type"] == "adamw":
        return torch.optim.AdamW(params, lr=opt["lr"], weight_decay=opt["weight_decay"])
    return torch.optim.Adam(params, lr=opt["lr"])


def _torch_setup(recipe: dict):
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    return {k: torch.from_numpy(v) for k, v in _arrays(recipe).items()}


def run_bare(recipe: dict) -> dict:
    """A plain PyTorch script: shuffled index slices of resident tensors, validation each epoch, test at the end."""
    import torch
    import torch.nn.functional as F

    t = _torch_setup(recipe)
    model = torch_model(recipe)
    optimizer = torch_optimizer(recipe, model.parameters())
    x, y, bs = t["x"], t["y"], recipe["batch_size"]
    loop = 0.0
    for _ in range(recipe["epochs"]):
        start = time.perf_counter()
        model.train()
        perm = torch.randperm(len(x)) if recipe["shuffle"] else torch.arange(len(x))
        for i in range(0, len(x), bs):
            idx = perm[i : i + bs]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loop += time.perf_counter() - start
        if "x_val" in t:
            model.eval()
            with torch.no_grad():
                F.cross_entropy(model(t["x_val"]), t["y_val"]).item()
    model.eval()
    with torch.no_grad():
        accuracy = (model(t["x_test"]).argmax(1) == t["y_test"]).float().mean().item()
    return {"loop_seconds": loop, "samples": len(x) * recipe["epochs"], "test_accuracy": accuracy}


def run_lightning(recipe: dict, lean: bool) -> dict:
    """PyTorch Lightning: a LightningModule over the same network; lean turns off logger, checkpoints, progress
    bar, model summary and the sanity check; default keeps the Trainer's defaults."""
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    t = _torch_setup(recipe)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_model(recipe)

        def training_step(self, batch, _):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_accuracy", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch_optimizer(recipe, self.parameters())

    clock = _EpochClock()

    class Timer(L.Callback):
        def on_train_epoch_start(self, *_):
            clock.begin()

        def on_train_batch_end(self, *_):
            clock.step()

        def on_train_epoch_end(self, *_):
            clock.end()

    bs = recipe["batch_size"]
    train = DataLoader(TensorDataset(t["x"], t["y"]), batch_size=bs, shuffle=recipe["shuffle"])
    val = DataLoader(TensorDataset(t["x_val"], t["y_val"]), batch_size=1024) if "x_val" in t else None
    lean_options = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0)
    trainer = L.Trainer(max_epochs=recipe["epochs"], accelerator="cpu", devices=1, callbacks=[Timer()],
                        default_root_dir=recipe["workdir"], **(lean_options if lean else {}))
    module = Module()
    trainer.fit(module, train, val)
    module.eval()
    with torch.no_grad():
        accuracy = (module.net(t["x_test"]).argmax(1) == t["y_test"]).float().mean().item()
    return {"loop_seconds": clock.total, "samples": len(t["x"]) * recipe["epochs"], "test_accuracy": accuracy}


def run_keras(recipe: dict) -> dict:
    """Keras 3 on the torch backend: the same layers as a Sequential model, model.fit with validation data."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    keras.utils.set_random_seed(0)
    a = _arrays(recipe)
    layers = keras.layers
    if recipe["model"] == "mlp":
        stack = [keras.Input((64,)), layers.Dense(128, activation="relu"), layers.Dropout(0.2), layers.Dense(64, activation="relu"),
                 layers.Dense(10)]
    else:  # torch's padding=1 as explicit zero padding: Conv1D pads only "valid" or "same"
        stack = [keras.Input((40,)), layers.Reshape((40, 1))]
        for kernel in (5, 3, 3):
            stack += [layers.ZeroPadding1D(1), layers.Conv1D(25, kernel, strides=2, activation="relu")]
        stack += [layers.Flatten(), layers.Dense(10)]
    model = keras.Sequential(stack)
    opt = recipe["optimizer"]
    optimizer = (keras.optimizers.AdamW(opt["lr"], weight_decay=opt["weight_decay"]) if opt["type"] == "adamw"
                 else keras.optimizers.Adam(opt["lr"]))
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    clock = _EpochClock()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, *_, **__):
            clock.begin()

        def on_train_batch_end(self, *_, **__):
            clock.step()

        def on_epoch_end(self, *_, **__):
            clock.end()

    val = (a["x_val"], a["y_val"]) if "x_val" in a else None
    model.fit(a["x"], a["y"], batch_size=recipe["batch_size"], epochs=recipe["epochs"], shuffle=recipe["shuffle"],
              validation_data=val, verbose=0, callbacks=[Timer()])
    accuracy = float((model.predict(a["x_test"], verbose=0).argmax(1) == a["y_test"]).mean())
    return {"loop_seconds": clock.total, "samples": len(a["x"]) * recipe["epochs"], "test_accuracy": accuracy}


class _EpochClock:
    """Sums, over epochs, the time from an epoch's start to the end of its last training step."""

    def __init__(self):
        self.total, self.start, self.last = 0.0, None, None

    def begin(self):
        self.start = self.last = time.perf_counter()

    def step(self):
        self.last = time.perf_counter()

    def end(self):
        self.total += self.last - self.start


def peer_main(name: str, recipe_file: str) -> None:
    """Run one peer and print its result as one JSON line."""
    recipe = json.loads(Path(recipe_file).read_text())
    runners = {"bare": run_bare, "lightning-lean": lambda r: run_lightning(r, True),
               "lightning-default": lambda r: run_lightning(r, False), "keras": run_keras}
    print(json.dumps(runners[name](recipe)))


# ---- the bench: prepares the cases, runs the rounds, writes the section ----

def prepare_case(label: str, spec_path: str, epochs: int, workdir: Path) -> dict:
    """The case's normalized splits in an .npz, the recipe the peers read, and nnspec's --set overrides."""
    import numpy as np

    from nnspec.compiler import load_spec
    from nnspec.runtime.data import prepare_data

    spec = load_spec(ROOT / spec_path, ["training.device=cpu"])
    data = prepare_data(spec, "cpu")
    arrays = {}
    for suffix, split in (("", data.train), ("_val", data.validation), ("_test", data.test)):
        if split is not None:
            arrays["x" + suffix] = split.x.reshape(len(split), -1).numpy()
            arrays["y" + suffix] = split.y.numpy()
    slug = label.lower().replace(" ", "-")
    npz = workdir / f"{slug}.npz"
    np.savez(npz, **arrays)
    tr = spec.training
    recipe = {"data": str(npz), "model": "mlp" if "mlp" in spec_path else "cnn", "epochs": epochs, "batch_size": tr.batch_size,
              "shuffle": tr.shuffle, "optimizer": tr.optimizer.model_dump(), "workdir": str(workdir / slug)}
    recipe_file = workdir / f"{slug}.json"
    recipe_file.write_text(json.dumps(recipe))
    overrides = [f"data.source={{type: npz, path: {npz}}}", "data.split={seed: 0}", "data.preprocessing.normalize=none",
                 f"training.epochs={epochs}", "training.scheduler=null", "training.early_stopping=null"]
    return {"label": label, "spec": str(ROOT / spec_path), "recipe": recipe, "recipe_file": str(recipe_file),
            "overrides": overrides, "workdir": workdir / slug, "train_samples": len(data.train)}


def command(contestant: str, case: dict) -> list[str]:
    """The command line one contestant runs for one case."""
    if contestant.startswith("nnspec"):
        out = case["workdir"]
        cmd = [sys.executable, "-m", "nnspec", "train", case["spec"], "--threads", "1", "--json", "-q",
               "--runs-dir", str(out / "runs"), "--repo", str(out / "models")]
        cmd += [a for o in case["overrides"] for a in ("--set", o)]
        return cmd + (["--no-export"] if contestant.endswith("--no-export") else [])
    return [sys.executable, str(Path(__file__).resolve()), "--peer", PEERS[contestant], case["recipe_file"]]


def run_once(contestant: str, case: dict) -> dict:
    """One fresh process: wall seconds, peak RSS, and the loop's samples/s and test accuracy it reports."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", KERAS_BACKEND="torch")
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(command(contestant, case), stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own peak RSS, which communicate() would not give
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{contestant} on {case['label']} failed:\n{err.read()[-3000:]}")
    if contestant.startswith("nnspec"):
        summary = json.loads(out)
        import csv

        with open(Path(summary["run_dir"]) / "metrics.csv") as f:
            loop = sum(float(row["train_seconds"]) for row in csv.DictReader(f))
        result = {"loop_seconds": loop, "samples": case["train_samples"] * case["recipe"]["epochs"],
                  "test_accuracy": summary["test"]["accuracy"]}
    else:
        result = json.loads(out.strip().splitlines()[-1])
    return result | {"wall": wall, "rate": result["samples"] / result["loop_seconds"], "rss_mb": usage.ru_maxrss / 1024,
                     "cpu": usage.ru_utime + usage.ru_stime}


def side_by_side(case: dict, rounds: int) -> list[str]:
    """nnspec trainings at --threads 1: one alone, then two at once, `rounds` times; whole-process seconds."""
    alone, together = [], []
    for _ in range(rounds):
        alone.append(run_once("nnspec train --no-export", case)["wall"])
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            env = dict(os.environ, OMP_NUM_THREADS="1")
            procs = []
            for i in range(2):
                other = dict(case, workdir=Path(tmp) / str(i))
                procs.append(subprocess.Popen(command("nnspec train --no-export", other), stdout=subprocess.DEVNULL,
                                              stderr=subprocess.PIPE, env=env))
            for p in procs:
                p.wait()
                if p.returncode:
                    raise SystemExit(f"side-by-side nnspec run failed:\n{p.stderr.read().decode()[-3000:]}")
            together.append(time.perf_counter() - start)
    ratio = statistics.median(together) / statistics.median(alone)
    return [f"Two `nnspec train --threads 1 --no-export` runs of the {case['label']} at once, against one alone "
            f"({rounds} alternations, whole-process seconds, median): alone {statistics.median(alone):.2f} s, "
            f"both together {statistics.median(together):.2f} s: each took **{ratio:.2f}x** its idle time "
            f"(target <= 1.3x; rounds: {', '.join(f'{b / a:.2f}' for a, b in zip(alone, together))})."]


def tables_rows() -> list[str]:
    """bench/tables.py's markdown fragment, or a line saying it is not in this checkout."""
    script = ROOT / "bench" / "tables.py"
    if not script.exists():
        return ["Table loading: bench/tables.py is not in this checkout; its rows go here."]
    proc = subprocess.run([sys.executable, str(script), "--markdown"], capture_output=True, text=True)
    if proc.returncode:
        return [f"Table loading: bench/tables.py failed: {proc.stderr.strip().splitlines()[-1:]}"]
    return proc.stdout.rstrip("\n").splitlines()


def section(cases: list[dict], results: dict, args, loads: list[float], started: str, extra: list[str]) -> str:
    """The markdown section: per case, the contestants' medians and their ratios to nnspec."""
    import torch
    from train_overhead import _machine

    lines = [HEADING, "", f"{started}, {_machine()}, Python {sys.version.split()[0]}, torch {torch.__version__}, "
             f"{_versions()}. `python bench/peers.py --rounds {args.rounds} --epochs {args.epochs}`: every cell a fresh process, "
             f"one torch thread each, {args.rounds} interleaved rounds (order rotated each round), medians. Load average "
             f"(1 min) while it ran: {min(loads):.2f} to {max(loads):.2f} on {os.cpu_count()} CPUs.", "",
             "The loop column is the optimization alone (from an epoch's start to its last optimizer step, validation "
             "excluded), as samples/s; whole process is the command's wall time, Python start-up, imports, data, "
             "validation each epoch, the test score and (nnspec) run directory, plots and ONNX export included; CPU s is "
             "the process's user + system time (less disturbed by other jobs than the wall time).", ""]
    for case in cases:
        rows = results[case["label"]]
        ours = rows["nnspec train"]
        lines += [f"### {case['label']} ({case['train_samples']} training samples, batch {case['recipe']['batch_size']}, "
                  f"{args.epochs} epochs, {case['recipe']['optimizer']['type']})", "",
                  "| contestant | loop samples/s | nnspec loop ÷ this | whole process s | this ÷ nnspec train | CPU s | peak RSS MB | test accuracy |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in CONTESTANTS:
            runs = rows[name]
            rate = statistics.median(r["rate"] for r in runs)
            wall = statistics.median(r["wall"] for r in runs)
            loop_ratio = statistics.median(o["rate"] / r["rate"] for o, r in zip(ours, runs))
            wall_ratio = statistics.median(r["wall"] / o["wall"] for o, r in zip(ours, runs))
            lines.append(f"| {name} | {rate:,.0f} | {loop_ratio:.2f}× | {wall:.2f} | {wall_ratio:.2f}× | "
                         f"{statistics.median(r['cpu'] for r in runs):.2f} | {statistics.median(r['rss_mb'] for r in runs):.0f} | {statistics.median(r['test_accuracy'] for r in runs):.4f} |")
        lines.append("")
    lines += extra
    return "\n".join(lines) + "\n"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for package in ("lightning", "keras"):
        try:
            out.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            out.append(f"{package} missing")
    return ", ".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--side-by-side-rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help=f"Markdown file whose '{HEADING}' section is replaced.")
    parser.add_argument("--peer", nargs=2, metavar=("NAME", "RECIPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        return peer_main(*args.peer)

    started = time.strftime("%Y-%m-%d %H:%M")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [prepare_case(label, path, args.epochs, Path(tmp)) for label, path in CASES.items()]
        results = {case["label"]: {name: [] for name in CONTESTANTS} for case in cases}
        loads = [os.getloadavg()[0]]
        for r in range(args.rounds):
            order = CONTESTANTS[r % len(CONTESTANTS):] + CONTESTANTS[: r % len(CONTESTANTS)]
            for case in cases:
                for name in order:
                    result = run_once(name, case)
                    results[case["label"]][name].append(result)
                    print(f"round {r + 1} {case['label']:>13} {name:>26}: {result['wall']:6.2f} s, loop {result['rate']:9,.0f}/s",
                          file=sys.stderr)
            loads.append(os.getloadavg()[0])
        extra = side_by_side(cases[0], args.side_by_side_rounds) + [""] + tables_rows()
        loads.append(os.getloadavg()[0])
    text = section(cases, results, args, loads, started, extra)
    print(text)
    if args.out:
        from train_overhead import replace_section

        replace_section(Path(args.out), HEADING, text)


if __name__ == "__main__":
    main()
