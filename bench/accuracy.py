"""Train every spec in specs/ (three seeds where cheap) and write docs/RESULTS.md.

Beside each number: the published MNIST-1D accuracies in PUBLISHED (docs/RESULTS.md names their
source), and for the scikit-learn data sets a same-machine, same-split reference (MLP and gradient
boosting). For the four MNIST-1D reproductions it also runs the same recipe in plain PyTorch
(bench/mnist1d_reference.py) with the same seeds, and both once more with seed 42.

    python bench/accuracy.py [--seeds 3] [--jobs 2] [--only mnist1d] [--out docs/RESULTS.md]

Results are cached per (spec file hash, seed) in bench/.accuracy_cache.json, so an interrupted
run picks up where it stopped and a changed spec is retrained.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path


from nnspec.compiler import load_spec_with_data
from nnspec.compiler.compile import summarize
from nnspec.runtime.data import prepare_data
from nnspec.runtime.train import train

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".accuracy_cache.json"

# Published MNIST-1D test accuracy in % per spec: (the benchmark's table value, the value its authors' own training
# code reaches with the same model, or None where the spec is not a reproduction); docs/RESULTS.md names the source.
PUBLISHED = {
    "mnist1d/logreg.yaml": (32.0, 31.5), "mnist1d/mlp.yaml": (68.0, 64.6),
    "mnist1d/cnn.yaml": (94.0, 92.3), "mnist1d/gru.yaml": (91.0, 89.1),
    "mnist1d/mlp_plus.yaml": (68.0, None), "mnist1d/cnn_plus.yaml": (94.0, None), "mnist1d/gru_plus.yaml": (91.0, None),
}


def _score(task: str, metrics: dict) -> tuple[str, float]:
    return ("R²", metrics["r2"]) if task == "regression" else ("accuracy %", 100 * metrics["accuracy"])


def sklearn_references(spec) -> dict[str, float]:
    """MLP and histogram gradient boosting on the same train/test split (raw features, standardized for the MLP)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = prepare_data(spec, "cpu")
    # Undo the spec's normalization and reshape: the references get the raw rows.
    def raw(split):
        x = split.x.reshape(len(split), -1).numpy() * data.x_norm.scale.reshape(-1) + data.x_norm.shift.reshape(-1)
        y = split.y.numpy()
        if data.y_norm is not None:
            y = y * data.y_norm.scale + data.y_norm.shift
        return x, y.reshape(len(y), -1)[:, 0] if spec.task != "classification" else y
    (xtr, ytr), (xte, yte) = raw(data.train), raw(data.test)
    if spec.task == "regression":
        models = {"sklearn MLP": make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(100,), max_iter=2000, random_state=0)),
                  "gradient boosting": HistGradientBoostingRegressor(random_state=0)}
        return {name: float(m.fit(xtr, ytr).score(xte, yte)) for name, m in models.items()}
    models = {"sklearn MLP": make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(100,), max_iter=2000, random_state=0)),
              "gradient boosting": HistGradientBoostingClassifier(random_state=0)}
    return {name: 100 * float(m.fit(xtr, ytr.astype(int)).score(xte, yte.astype(int))) for name, m in models.items()}


NOTEBOOK_SEED = 42  # the seed the published per-model accuracies were obtained with


def reproduction(rel: str) -> str | None:
    """The bench/mnist1d_reference.py model a spec reproduces ('gru' for mnist1d/gru.yaml), else None."""
    return Path(rel).stem if rel in PUBLISHED and PUBLISHED[rel][1] is not None else None


def plain_one(model: str, seed: int) -> dict:
    """The reproduction recipe in plain PyTorch (bench/mnist1d_reference.py), one seed."""
    from mnist1d_reference import reference_run

    t0 = time.perf_counter()
    return {"accuracy %": reference_run(model, seed), "seconds": time.perf_counter() - t0}


def train_one(file: str, seed: int) -> dict:
    """One training run (in a worker process, one torch thread: small models gain nothing from more)."""
    import torch

    torch.set_num_threads(1)
    spec, _ = load_spec_with_data(file, [f"training.seed={seed}", "training.device=cpu"])
    t0 = time.perf_counter()
    result = train(spec, write=False)
    return {"test": result.summary["test"], "seconds": time.perf_counter() - t0, "epochs": result.summary["epochs_run"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="Training runs in parallel (one torch thread each).")
    parser.add_argument("--only", default="", help="Only specs whose path contains this.")
    parser.add_argument("--out", default=str(ROOT / "docs" / "RESULTS.md"))
    args = parser.parse_args()
    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    files = sorted(p for p in (ROOT / "specs").rglob("*.yaml") if args.only in str(p))
    todo = []
    for file in files:
        rel = str(file.relative_to(ROOT / "specs"))
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        todo += [(f"{rel}@{digest}#seed{seed}", (train_one, str(file), seed)) for seed in range(args.seeds)
                 if f"{rel}@{digest}#seed{seed}" not in cache]
        model = reproduction(rel)
        if model:  # the same recipe without nnspec, same seeds, plus NOTEBOOK_SEED for both
            todo += [(key, (plain_one, model, seed)) for seed in [*range(args.seeds), NOTEBOOK_SEED]
                     if (key := f"{rel}@{digest}#plain-seed{seed}") not in cache]
            if (key := f"{rel}@{digest}#notebook-seed{NOTEBOOK_SEED}") not in cache:
                todo.append((key, (train_one, str(file), NOTEBOOK_SEED)))
        ref_key = f"{rel}@{digest}#sklearn"
        if "mnist1d" not in rel and ref_key not in cache:
            spec, _ = load_spec_with_data(file)
            cache[ref_key] = sklearn_references(spec)
            CACHE.write_text(json.dumps(cache, indent=1))
    # Longest first (mnist1d recurrent and _plus specs), so the two workers finish together.
    todo.sort(key=lambda t: ("mnist1d" not in t[0], "gru" not in t[0], "plus" not in t[0]))
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(*job): key for key, job in todo}
        for future in concurrent.futures.as_completed(futures):
            key = futures[future]
            cache[key] = future.result()
            print(f"{key}: {cache[key].get('test', cache[key].get('accuracy %'))} in {cache[key]['seconds']:.0f} s", flush=True)
            CACHE.write_text(json.dumps(cache, indent=1))
    write_results(Path(args.out), cache, args.seeds)


def _machine() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")) + f", {os.cpu_count()} cores"
    except (OSError, StopIteration):
        return platform.machine()


def _same_recipe_row(cache: dict, rel: str, digest: str, seeds: range, notebook: float | None) -> str | None:
    """One row of the plain-PyTorch comparison, where the plain runs of these seeds are cached."""
    keys = [(f"{rel}@{digest}#plain-seed{s}", f"{rel}@{digest}#seed{s}") for s in seeds]
    if notebook is None or not all(k in cache for pair in keys for k in pair):
        return None
    p = [cache[plain]["accuracy %"] for plain, _ in keys]
    o = [100 * cache[ours]["test"]["accuracy"] for _, ours in keys]
    spread = (lambda v: f"{statistics.mean(v):.2f} ± {statistics.stdev(v):.2f}" if len(v) > 1 else f"{v[0]:.2f}")
    diff = max(abs(a - b) for a, b in zip(p, o))
    nb_plain = cache.get(f"{rel}@{digest}#plain-seed{NOTEBOOK_SEED}", {}).get("accuracy %")
    nb_ours = cache.get(f"{rel}@{digest}#notebook-seed{NOTEBOOK_SEED}")
    at42 = (f"{notebook} / {nb_plain:.2f} / {100 * nb_ours['test']['accuracy']:.2f}" if nb_plain is not None and nb_ours else "—")
    return f"| `{rel}` | {spread(p)} | {spread(o)} | {diff:.2f} | {at42} |"


def write_results(out: Path, cache: dict, seeds: int) -> None:
    """docs/RESULTS.md from the cached runs of the current spec files."""
    rows_m1d, rows_other, rows_same, outside = [], [], [], []
    for file in sorted((ROOT / "specs").rglob("*.yaml")):
        rel = str(file.relative_to(ROOT / "specs"))
        digest = hashlib.sha256(file.read_bytes()).hexdigest()[:16]
        runs = [cache[k] for k in (f"{rel}@{digest}#seed{s}" for s in range(seeds)) if k in cache]
        if not runs:
            continue
        spec, info = load_spec_with_data(file)
        params = summarize(spec, info)["total_params"]
        name, _ = _score(spec.task, runs[0]["test"])
        scores = [_score(spec.task, r["test"])[1] for r in runs]
        mean, std = statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
        secs = statistics.median(r["seconds"] for r in runs)
        cell = f"{mean:.2f} ± {std:.2f}" if name != "R²" else f"{mean:.3f} ± {std:.3f}"
        if rel in PUBLISHED:
            paper, notebook = PUBLISHED[rel]
            if notebook is not None and abs(mean - notebook) > 1.5:
                outside.append(f"`{rel}` is {mean - notebook:+.1f} points from the notebook's {notebook} "
                               f"(seeds: {', '.join(f'{v:.1f}' for v in scores)}; paper table: {paper:.0f})")
            verdict = (f"{mean - notebook:+.1f} vs notebook" if notebook is not None else
                       ("≥ paper" if mean >= paper else "below paper"))
            if (same := _same_recipe_row(cache, rel, digest, range(seeds), notebook)) is not None:
                rows_same.append(same)
            rows_m1d.append(f"| `{rel}` | {params:,} | {paper:.0f} | {notebook if notebook is not None else '—'} | {cell} (n={len(scores)}) | {verdict} | {secs:.0f} |")
        else:
            ref = cache.get(f"{rel}@{digest}#sklearn", {})
            fmt = (lambda v: f"{v:.3f}") if name == "R²" else (lambda v: f"{v:.2f}")
            rows_other.append(f"| `{rel}` | {name} | {params:,} | {cell} (n={len(scores)}) | "
                              f"{fmt(ref['sklearn MLP']) if ref else '—'} | {fmt(ref['gradient boosting']) if ref else '—'} | {secs:.0f} |")
    lines = [
        "# Results", "",
        f"Produced by `python bench/accuracy.py --seeds {seeds}` from the committed specs; "
        f"{time.strftime('%Y-%m-%d')}, {_machine()}, CPU only. "
        f"Test-set numbers, mean ± standard deviation over training seeds (training.seed = {', '.join(map(str, range(seeds)))}; "
        "the data split is fixed). "
        "Seconds: median wall time of one training run (one torch thread, two runs side by side on the two cores), per-epoch evaluation included.", "",
        "## MNIST-1D: the paper's table, reproduced and beaten", "",
        "Paper: Greydanus & Kobak, *Scaling down deep learning* (2020; ICML 2024). 'notebook' is what the authors' own "
        "notebooks reach with the same models; the four reproductions use the same models, Adam at lr 0.01, batch 100 "
        "and 150 epochs. The `_plus` specs keep the model family and may use anything the tool offers.", "",
        "| spec | params | paper % | notebook % | nnspec test % | | seconds |", "|---|---:|---:|---:|---:|---|---:|", *rows_m1d, "",
        *(["Outside the 1.5-point band: " + "; ".join(outside) + ". The notebook figure is a single run of "
           "the same model and loop (Adam 0.01, batch 100, batches in order, no shuffling, final weights); "
           "nothing in the spec was tuned towards either number. The next table shows why the gap is not nnspec's.", ""]
          if outside else []),
        "### The same recipe without nnspec", "",
        "`bench/mnist1d_reference.py` writes the authors' models and training loop (notebooks/models.py and train.py "
        "in greydanus/mnist1d) out in plain PyTorch: the same generated data, the same construction order (so a seed "
        "gives the same initial weights), Adam 0.01, batches of 100 in order, 6000 steps (150 epochs of 40 batches; the "
        "notebook's loop takes one step more), final weights. It runs here with the same seeds as nnspec, and both run "
        "once more with the notebook's own seed, 42. A difference of 0.00 on every seed means nnspec trains exactly the "
        "authors' recipe (`tests/e2e/test_mnist1d_reference.py` checks the weights agree after two epochs); what remains "
        "between these numbers and the notebook's is the notebook's environment (its downloaded data file, PyTorch "
        "build and machine), which cannot be rerun offline, not the tool.", "",
        f"| spec | plain PyTorch % (seeds 0–{seeds - 1}) | nnspec % (seeds 0–{seeds - 1}) | largest per-seed difference | seed 42: notebook / plain / nnspec % |",
        "|---|---:|---:|---:|---|", *rows_same, "",
        "## scikit-learn data sets", "",
        "References on the same train/test split, same machine: scikit-learn's `MLPClassifier`/`MLPRegressor` "
        "(100 hidden units, standardized inputs) and `HistGradientBoostingClassifier`/`Regressor` (defaults). "
        "On small tabular data, gradient boosting is the one to beat; on pixels and signals, the convolutional "
        "and recurrent nets win — the tabular-versus-unstructured lesson.", "",
        "| spec | metric | params | nnspec | sklearn MLP | gradient boosting | seconds |", "|---|---|---:|---:|---:|---:|---:|", *rows_other, "",
    ]
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
