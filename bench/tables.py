"""Table loading: nnspec's CSV/Parquet path against a lean pandas -> tensor loader, 10k to 3M rows.

The table: 20 numeric columns, one categorical column (8 categories) and a 5-class target. Each variant
runs in a fresh process (so peak RSS is its own), imports torch first, then times reading the file to
normalized training tensors:

* nnspec: `load_spec` (validation reads the table and hands it on) + `prepare_data` (split, fills,
  normalization, tensors), as `nnspec train` does before its first epoch;
* lean: `pd.read_csv`/`pd.read_parquet`, `pd.get_dummies`, float32 NumPy, a seeded 80/10/10 split,
  standardization on the training rows, `torch.from_numpy`;
* `nnspec validate` alone (the spec and its table);
* with `--epoch`, the whole process of one training epoch (MLP 2x128, batch 256, one torch thread):
  `nnspec train --no-export` against the lean loader plus a bare loop.

    python bench/tables.py [--rows 10000 100000 1000000 3000000] [--repeats 1] [--epoch] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLUMNS, CATEGORIES, CLASSES = 20, 8, 5
SPEC = """version: 1
name: tables-bench
task: classification
data:
  source: {{type: {kind}, path: {path}, target: target}}
  split: {{validation: 0.1, test: 0.1}}
model:
  layers:
    - {{type: linear, out_features: 128}}
    - {{type: relu}}
    - {{type: linear, out_features: 128}}
    - {{type: relu}}
    - {{type: linear, out_features: {classes}}}
training:
  epochs: 1
  batch_size: 256
  threads: 1
  optimizer: {{type: adam, lr: 0.001}}
  loss: {{type: cross_entropy}}
"""


def make_table(rows: int, folder: Path) -> dict[str, Path]:
    """The bench table as CSV and Parquet (written once per size, with pyarrow)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as csv
    import pyarrow.parquet as pq

    paths = {"csv": folder / f"table-{rows}.csv", "parquet": folder / f"table-{rows}.parquet"}
    if all(p.exists() for p in paths.values()):
        return paths
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, COLUMNS)).round(5)
    color = rng.integers(0, CATEGORIES, rows)
    score = x[:, :CLASSES] + 0.5 * (color[:, None] == np.arange(CLASSES))
    target = np.array([f"class_{i}" for i in range(CLASSES)])[score.argmax(1)]
    table = pa.table({**{f"x{i}": x[:, i] for i in range(COLUMNS)},
                      "color": np.array([f"c{i}" for i in range(CATEGORIES)])[color], "target": target})
    csv.write_csv(table, paths["csv"])
    pq.write_table(table, paths["parquet"])
    return paths


def spec_file(folder: Path, kind: str, path: Path) -> Path:
    spec = folder / f"spec-{path.stem}-{kind}.yaml"
    spec.write_text(SPEC.format(kind=kind, path=path, classes=CLASSES))
    return spec


# --- what each child process runs ---------------------------------------------------------------

def lean_load(kind: str, path: str):
    """The lean pandas -> tensor loader: (x_train, y_train) tensors, standardized."""
    import numpy as np
    import pandas as pd
    import torch

    frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    y = frame.pop("target").astype("category").cat.codes.to_numpy(np.int64)
    x = pd.get_dummies(frame, columns=["color"], dtype=np.float32).to_numpy(np.float32)
    del frame
    perm = np.random.default_rng(0).permutation(len(x))
    train = np.sort(perm[: int(0.8 * len(x))])
    x_train = x[train]
    mean, std = x_train.mean(0), x_train.std(0)
    x_train -= mean
    x_train /= np.where(std > 1e-8, std, 1)
    return torch.from_numpy(x_train), torch.from_numpy(y[train])


def lean_epoch(x, y) -> None:
    """One epoch of the bench MLP over the lean loader's tensors, as a bare loop."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU(),
                              torch.nn.Linear(128, CLASSES))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(x))
    for i in range(0, len(x), 256):
        idx = perm[i : i + 256]
        loss = loss_fn(net(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def child(mode: str, kind: str, path: str, spec: str) -> None:
    """Run one variant and print {"seconds", "peak_mb"} (peak RSS of this whole process)."""
    import torch  # both variants import their libraries before the clock starts

    torch.set_num_threads(1)
    if mode.startswith("lean"):
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401 - pandas' Parquet reader
    else:
        import pyarrow.csv  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        import nnspec.compiler  # noqa: F401
        import nnspec.runtime.data  # noqa: F401
    t0 = time.perf_counter()
    if mode == "lean":
        lean_load(kind, path)
    elif mode == "lean-epoch":
        lean_epoch(*lean_load(kind, path))
    else:
        from nnspec.compiler import load_spec

        parsed = load_spec(spec)
        if mode == "nnspec":
            from nnspec.runtime.data import prepare_data

            prepare_data(parsed, "cpu")
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def measure(args: list[str]) -> dict:
    """A child process: its own numbers, or (for a whole command) its wall time and peak RSS from wait4."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed: {err.strip()[-2000:]}")
    lines = [line for line in out.splitlines() if line.startswith('{"seconds"')]
    numbers = json.loads(lines[-1]) if lines else {"seconds": wall}
    return {**numbers, "peak_mb": usage.ru_maxrss / 1024, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000, 3_000_000])
    parser.add_argument("--kinds", nargs="+", default=["csv", "parquet"])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epoch", action="store_true", help="also time one training epoch, whole process (largest size)")
    parser.add_argument("--folder", default=None, help="where the generated tables go (default: a temporary folder)")
    parser.add_argument("--out", default=None, help="Markdown file whose '## Table loading' section is replaced.")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "KIND", "PATH", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)

    folder = Path(args.folder or tempfile.mkdtemp(prefix="nnspec-tables-"))
    folder.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, __file__, "--child"]
    rows_out = []
    for rows in args.rows:
        paths = make_table(rows, folder)
        for kind in args.kinds:
            spec = spec_file(folder, kind, paths[kind])
            runs = {"nnspec": [], "lean": [], "validate": []}
            for _ in range(args.repeats):  # interleaved
                for mode in runs:
                    runs[mode].append(measure(me + [mode, kind, str(paths[kind]), str(spec)]))
            best = {mode: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_mb")} for mode, rs in runs.items()}
            rows_out.append((rows, kind, best, paths[kind].stat().st_size))
            print(rows, kind, json.dumps(best), flush=True)
    epoch = None
    if args.epoch:
        rows, kind = args.rows[-1], "csv"
        paths = make_table(rows, folder)
        spec = spec_file(folder, kind, paths[kind])
        with tempfile.TemporaryDirectory() as runs_dir:
            ours = measure([sys.executable, "-m", "nnspec", "train", str(spec), "--no-export", "--quiet", "--runs-dir", runs_dir])
        lean = measure(me + ["lean-epoch", kind, str(paths[kind]), str(spec)])
        epoch = (rows, ours, lean)
        print("epoch", json.dumps(epoch), flush=True)
    text = report(rows_out, epoch, args)
    print(text)
    if args.out:
        from train_overhead import replace_section

        replace_section(Path(args.out), "## Table loading", text)


def report(rows_out, epoch, args) -> str:
    from train_overhead import _machine

    lines = [
        "## Table loading",
        "",
        f"{time.strftime('%Y-%m-%d')}, {_machine()} (shared with other jobs: load average {os.getloadavg()[1]:.1f} "
        "over the last 5 minutes of the run, so single runs are noisy). `python bench/tables.py --rows "
        f"{' '.join(map(str, args.rows))} --repeats {args.repeats}{' --epoch' if args.epoch else ''}`: "
        f"{COLUMNS} numeric columns, one categorical ({CATEGORIES} categories), a {CLASSES}-class string target. "
        "Each number is a fresh process (median of the repeats); seconds from reading the file to normalized "
        "training tensors, after importing torch and the variant's libraries; peak RSS of the whole process. lean = pandas read, "
        "`get_dummies`, float32, split, standardize, `torch.from_numpy`; nnspec = `load_spec` + `prepare_data` "
        "(validation reads the table once and hands it on).",
        "",
        "| rows | file | file MB | nnspec s | lean s | nnspec ÷ lean (time) | nnspec MB | lean MB | nnspec ÷ lean (memory) | `nnspec validate` s / MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows, kind, best, size in rows_out:
        ours, lean, val = best["nnspec"], best["lean"], best["validate"]
        lines.append(f"| {rows:,} | {kind} | {size / 2**20:,.0f} | {ours['seconds']:.2f} | {lean['seconds']:.2f} | "
                     f"{ours['seconds'] / lean['seconds']:.2f}× | {ours['peak_mb']:,.0f} | {lean['peak_mb']:,.0f} | "
                     f"{ours['peak_mb'] / lean['peak_mb']:.2f}× | {val['seconds']:.2f} / {val['peak_mb']:,.0f} |")
    if epoch:
        rows, ours, lean = epoch
        lines += ["", f"One epoch, whole process ({rows:,}-row CSV, MLP 2×128, batch 256, one torch thread): "
                      f"`nnspec train --no-export` {ours['wall']:.1f} s and {ours['peak_mb']:,.0f} MB peak; "
                      f"lean loader + bare loop {lean['wall']:.1f} s and {lean['peak_mb']:,.0f} MB."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
