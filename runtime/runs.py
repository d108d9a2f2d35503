"""Every run directory under runs/ read back for `nnspec runs`: what was trained, how far it got, how it did.

Torch-free and without validation: it reads spec.yaml, metrics.csv, summary.json and exports.json as files.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnspec.compiler.metrics import metric_mode

# The test metric the table shows per task; --sort and --json reach the others.
MAIN_METRIC = {"classification": "accuracy", "binary": "accuracy", "regression": "rmse"}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings and lists as dotted paths to their leaves, list items by index as `--set` takes them:
    {"training": {"optimizer": {"lr": 0.01}}} -> {"training.optimizer.lr": 0.01}; an empty mapping or list is a leaf."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else None
    if items is None or not tree:
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def value_text(value: Any) -> str:
    """A spec value as YAML would spell it: strings bare, everything else as JSON (null, true, [])."""
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class RunRecord:
    """One run directory as `nnspec runs` shows it."""

    path: str
    name: str
    stamp: str
    task: str
    status: str  # finished | stopped early | interrupted
    epochs_run: int
    epochs_planned: int | None
    monitor: str | None
    best_value: float | None
    best_epoch: int | None
    validation: dict[str, float]
    test: dict[str, float]
    seconds: float
    device: str | None
    exports: list[dict] = field(default_factory=list)
    resume: str | None = None  # the command that continues an interrupted run
    spec: dict[str, Any] = field(default_factory=dict, repr=False)  # flattened spec.yaml

    def metric(self, name: str) -> float | None:
        """val_X (final validation), test_X, best (the monitored value at its best epoch), seconds or epochs."""
        if name.startswith("val_"):
            return self.validation.get(name[4:])
        if name.startswith("test_"):
            return self.test.get(name[5:])
        return {"best": self.best_value, "seconds": self.seconds, "epochs": float(self.epochs_run)}.get(name)

    def as_json(self) -> dict:
        """Everything but the flattened spec."""
        out = asdict(self)
        del out["spec"]
        return out


def _yaml(path: Path) -> Any:
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _metrics_rows(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]


def _best(rows: list[dict], monitor: str | None) -> tuple[float | None, int | None]:
    values = [(r[monitor], int(r["epoch"])) for r in rows if monitor and monitor in r]
    if not values:
        return None, None
    pick = max if metric_mode(monitor) == "max" else min
    return pick(values, key=lambda v: v[0])  # the first epoch among equals, as training counts improvements


def read_run(run_dir: str | Path) -> RunRecord:
    """A run directory (one holding spec.yaml) as a RunRecord; ValueError when its files are unreadable."""
    run = Path(run_dir)
    try:
        spec = _yaml(run / "spec.yaml")
        summary = _json(run / "summary.json")
        rows = _metrics_rows(run / "metrics.csv")
        exports = _json(run / "exports.json") or []
    except (OSError, ValueError, UnicodeDecodeError) as e:  # JSON, YAML and CSV errors are ValueErrors
        raise ValueError(f"{run}: unreadable run directory ({e})") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{run}/spec.yaml: not a spec")
    training = spec.get("training") or {}
    stopping = training.get("early_stopping") or {}
    last = {k[4:]: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else {}
    if summary is not None:
        status = "stopped early" if summary.get("stopped_early") else "finished"
        monitor = summary.get("monitor")
    else:
        status = "interrupted"
        monitor = stopping.get("monitor") or ("val_loss" if rows and "val_loss" in rows[-1] else None)
    best_value, best_epoch = _best(rows, monitor)
    if summary is not None and summary.get("best_epoch"):  # training's own count (it honours min_delta)
        best_epoch = summary["best_epoch"]
        best_value = next((r.get(monitor) for r in rows if int(r["epoch"]) == best_epoch), best_value)
    return RunRecord(
        path=str(run), name=spec.get("name", run.parent.name), stamp=run.name, task=spec.get("task", ""), status=status,
        epochs_run=summary["epochs_run"] if summary else len(rows), epochs_planned=training.get("epochs"),
        monitor=monitor, best_value=best_value, best_epoch=best_epoch,
        validation=(summary or {}).get("validation") or last, test=(summary or {}).get("test") or {},
        seconds=(summary or {}).get("seconds", round(sum(r.get("seconds", 0.0) for r in rows), 3)),
        device=(summary or {}).get("device"), exports=exports,
        resume=f"nnspec train --resume {run}" if summary is None and rows and (run / "last.pt").is_file() else None,
        spec=flatten(spec),
    )


def list_runs(runs_dir: str | Path = "runs", name: str | None = None) -> list[RunRecord]:
    """Every run under runs_dir/<name>/<stamp>/ (one model's when `name` is given), oldest first per name."""
    root = Path(runs_dir)
    folders = [root / name] if name else sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [read_run(run) for folder in folders if folder.is_dir()
            for run in sorted(folder.iterdir()) if (run / "spec.yaml").is_file()]


def sort_runs(runs: list[RunRecord], metric: str) -> list[RunRecord]:
    """Best first by `metric` (see RunRecord.metric; direction from the metric's name); runs without it last."""
    if not any(r.metric(metric) is not None for r in runs):
        known = sorted({f"{p}_{k}" for r in runs for p, d in (("val", r.validation), ("test", r.test)) for k in d})
        raise ValueError(f"--sort {metric}: no run has it; choose from {', '.join(known + ['best', 'seconds', 'epochs'])}")

    def key(run: RunRecord) -> float:
        named = run.monitor if metric == "best" else metric  # `best` follows each run's own monitor
        value = run.metric(metric)
        return -value if metric_mode(named.split("_", 1)[-1]) == "max" else value

    have = sorted((r for r in runs if r.metric(metric) is not None), key=key)
    return have + [r for r in runs if r.metric(metric) is None]


def diff_runs(a: RunRecord, b: RunRecord) -> dict:
    """The spec paths whose values differ (added or removed ones too) and the metrics of both runs side by side."""
    spec = {path: [value_text(a.spec[path]) if path in a.spec else None, value_text(b.spec[path]) if path in b.spec else None]
            for path in dict.fromkeys([*a.spec, *b.spec]) if a.spec.get(path, ...) != b.spec.get(path, ...)}
    names = [*(f"val_{k}" for k in dict.fromkeys([*a.validation, *b.validation])),
             *(f"test_{k}" for k in dict.fromkeys([*a.test, *b.test])), "epochs", "seconds"]
    metrics = {n: [a.metric(n), b.metric(n)] for n in names}
    return {"a": a.path, "b": b.path, "spec": spec, "metrics": metrics}
