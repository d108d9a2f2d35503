"""`nnspec runs`: every run directory side by side, and `nnspec runs diff A B` (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from nnspec.cli_common import fail

RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where run directories are.")]


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _console():
    from rich.console import Console

    console = Console()
    # Piped output has no terminal width; a wide table stays one line per run for grep and less.
    return console if console.is_terminal else Console(width=200)


def runs(
    ctx: typer.Context,
    runs_dir: RunsDir = Path("runs"),
    name: Annotated[Optional[str], typer.Option("--name", help="Only this model's runs (runs/NAME/).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", metavar="METRIC",
                    help="Best first by val_X or test_X (e.g. test_accuracy), best, seconds or epochs.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """A table of every run: epochs, best validation metric, test metric, time, device, exported version, status."""
    if ctx.invoked_subcommand is not None:
        return
    from nnspec.runtime.runs import MAIN_METRIC, list_runs, sort_runs

    if not runs_dir.is_dir():
        fail(f"error: {runs_dir}: no such runs directory")
    try:
        found = list_runs(runs_dir, name)
        if sort:
            found = sort_runs(found, sort)
    except ValueError as e:
        fail(f"error: {e}")
    if as_json:
        typer.echo(json.dumps({"runs": [r.as_json() for r in found]}, indent=2))
        return
    if not found:
        typer.echo(f"no runs in {runs_dir / name if name else runs_dir}")
        return
    from rich.table import Table

    table = Table(title=str(runs_dir))
    for column, justify in (("run", "left"), ("epochs", "right"), ("best validation", "left"), ("test", "left"),
                            ("seconds", "right"), ("device", "left"), ("model", "left"), ("status", "left")):
        table.add_column(column, justify=justify)
    for r in found:
        metric = sort if sort and sort.startswith("test_") else f"test_{MAIN_METRIC.get(r.task, 'loss')}"
        test = r.metric(metric)
        best = f"{r.monitor} {_fmt(r.best_value)} @ {r.best_epoch}" if r.best_value is not None else ""
        table.add_row(f"{r.name}/{r.stamp}", f"{r.epochs_run}/{r.epochs_planned or '?'}", best,
                      "" if test is None else f"{metric[5:]} {_fmt(test)}", f"{r.seconds:.1f}", r.device or "",
                      f"v{r.exports[-1]['version']}" if r.exports else "", r.status)
    console = _console()
    console.print(table)
    for r in found:
        if r.status == "interrupted":
            how = (f"interrupted after epoch {r.epochs_run}; resume with: {r.resume}" if r.resume
                   else "interrupted before its first epoch ended; nothing to resume")
            console.print(f"{r.name}/{r.stamp} {how}", markup=False, highlight=False)


def _find(run: Path, runs_dir: Path) -> Path:
    # A run is named by its folder, or as NAME/STAMP under --runs-dir.
    for candidate in (run, runs_dir / run):
        if (candidate / "spec.yaml").is_file():
            return candidate
    fail(f"error: {run}: not a run directory (no spec.yaml there or under {runs_dir})")


def diff(
    a: Annotated[Path, typer.Argument(help="A run directory (or NAME/STAMP under --runs-dir).")],
    b: Annotated[Path, typer.Argument(help="The run to compare it with.")],
    runs_dir: RunsDir = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The spec values (dotted paths) and the metrics that differ between two runs: A -> B."""
    from nnspec.runtime.runs import diff_runs, read_run

    try:
        changes = diff_runs(read_run(_find(a, runs_dir)), read_run(_find(b, runs_dir)))
    except ValueError as e:
        fail(f"error: {e}")
    if as_json:
        typer.echo(json.dumps(changes, indent=2))
        return
    typer.echo(f"A: {changes['a']}\nB: {changes['b']}")
    typer.echo("spec: the same" if not changes["spec"] else "spec (A -> B):")
    for path, (old, new) in changes["spec"].items():
        typer.echo(f"  {path}: {'(absent)' if old is None else old} -> {'(absent)' if new is None else new}")
    typer.echo("metrics (A -> B):")
    for metric, (old, new) in changes["metrics"].items():
        delta = f" ({new - old:+.4g})" if old is not None and new is not None else ""
        typer.echo(f"  {metric}: {_fmt(old) or '-'} -> {_fmt(new) or '-'}{delta}")
