"""Experiment-tracking overhead: nnspec's training epochs with tracking off, MLflow on (a local SQLite store) and
TensorBoard on; the same spec and seed, variants interleaved, medians reported.

An epoch's wall time is measured between the ends of consecutive epochs (so it includes the tracker's per-epoch
call, which runs before the progress callback); the fixed costs are the tracker's start (MLflow: experiment, run,
parameters) and finish (final metrics, artifacts), and logging the exported ONNX model.

    python bench/tracking_overhead.py [--spec specs/digits_mlp.yaml] [--epochs 20] [--repeats 5] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from train_overhead import _machine, replace_section

from nnspec.compiler import load_spec
from nnspec.runtime.export import export_run
from nnspec.runtime.tracking import open_tracking
from nnspec.runtime.train import train

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("off", "mlflow", "tensorboard")


def one_run(spec, runs_dir: Path, repo: Path) -> dict:
    """Train once: the median epoch wall time (after the first), train()'s wall time, and logging the model."""
    ends: list[float] = []
    warnings: list[str] = []
    tracking = open_tracking(spec, warn=warnings.append)
    calls: list[float] = []
    if tracking:  # the time inside the tracker's per-epoch call itself, apart from what its threads cost the loop
        inner = tracking.epoch

        def timed(row: dict) -> None:
            t = time.perf_counter()
            inner(row)
            calls.append(time.perf_counter() - t)

        tracking.epoch = timed
    t0 = time.perf_counter()
    result = train(spec, runs_dir=runs_dir, on_epoch=lambda row, epochs: ends.append(time.perf_counter()), tracking=tracking)
    total = time.perf_counter() - t0
    log_model = 0.0
    if tracking:
        exported = export_run(result.run_dir, repo)
        t1 = time.perf_counter()
        tracking.log_model(exported.path)
        tracking.close()
        log_model = time.perf_counter() - t1
    if warnings:
        raise SystemExit("a tracker failed: " + "; ".join(warnings))
    return {"epoch": statistics.median(b - a for a, b in zip(ends, ends[1:])), "call": statistics.median(calls) if calls else 0.0,
            "total": total, "log_model": log_model}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "specs/digits_mlp.yaml"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="Markdown file whose '## Experiment tracking' section is replaced.")
    args = parser.parse_args()

    spec_path, out = Path(args.spec).resolve(), Path(args.out).resolve() if args.out else None
    work = Path(tempfile.mkdtemp(prefix="nnspec-tracking-bench-"))
    os.chdir(work)  # MLflow puts a SQLite store's artifacts under ./mlruns
    # One thread: the variants compare the tracker, not how two threads fare on cores that other work shares.
    common = [f"training.epochs={args.epochs}", "training.early_stopping=null", "training.device=cpu", "training.threads=1"]
    trackers = {"off": [], "mlflow": [f"training.tracking.mlflow={{uri: 'sqlite:///{work}/mlflow.db', experiment: bench}}"],
                "tensorboard": ["training.tracking.tensorboard={}"]}
    specs = {v: load_spec(spec_path, common + extra) for v, extra in trackers.items()}

    t0 = time.perf_counter()
    one_run(specs["mlflow"], work / "warmup", work / "models")  # imports mlflow, creates the store (database migrations)
    store_created = time.perf_counter() - t0
    for v in ("tensorboard", "off"):
        one_run(specs[v], work / "warmup", work / "models")
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            results[v].append(one_run(specs[v], work / "runs", work / "models"))

    def med(v: str, key: str) -> float:
        return statistics.median(r[key] for r in results[v])

    off = med("off", "epoch")
    lines = [
        "## Experiment tracking",
        "",
        f"{time.strftime('%Y-%m-%d')}, {_machine()}, torch {torch.__version__}, 1 training thread. "
        f"`python bench/tracking_overhead.py --epochs {args.epochs} --repeats {args.repeats}` on `{spec_path.name}`; "
        f"MLflow {mlflow_version()} on a local SQLite store, created before timing (the first run against the new store "
        f"took {store_created:.1f} s in all: MLflow's import and its database migrations); TensorBoard into the run's tb/; "
        f"medians of {args.repeats} interleaved runs.",
        "",
        "| tracking | epoch wall time | per-epoch overhead | inside the tracker's epoch call | train() total | logging the ONNX model |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for v in VARIANTS:
        e = med(v, "epoch")
        model = f"{med(v, 'log_model'):.2f} s" if v != "off" else ""
        lines.append(f"| {v} | {1000 * e:.1f} ms | {1000 * (e - off):+.1f} ms ({100 * (e / off - 1):+.0f} %) | "
                     f"{1000 * med(v, 'call'):.1f} ms | {med(v, 'total'):.2f} s | {model} |")
    lines += ["", "An epoch's wall time runs from one epoch's end to the next: optimization, evaluation, checkpoint, "
              "metrics.csv and the tracker's per-epoch call; the difference to `off` also holds what the trackers' own threads "
              "(MLflow's logging queue, TensorBoard's writer) take from the loop on shared cores. train() total adds loading the data, the tracker's start "
              "(MLflow: experiment, run, the spec's parameters; TensorBoard: the graph) and finish (test metrics, the "
              "run directory's files as artifacts; TensorBoard's hparams). With tracking off the loop only tests "
              "whether a tracker is on, at start, once per epoch and at the end.", ""]
    text = "\n".join(lines)
    print(text)
    if out:
        replace_section(out, "## Experiment tracking", text)


def mlflow_version() -> str:
    """The installed MLflow client's version."""
    import mlflow

    return mlflow.__version__


if __name__ == "__main__":
    main()
