"""CLI commands that need torch: train, evaluate, export (torch is imported inside each command)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from enum import Enum
from typing import Annotated, Optional, get_args

import typer

from nnspec.cli_common import ERRORS, fail, fail_on
from nnspec.compiler.tracking import Backend

TrackerName = Enum("TrackerName", [(b, b) for b in get_args(Backend)], type=str)  # --track's choices, from the spec's


def _progress(quiet: bool):
    """A live epoch bar on stderr (loss, validation metric, lr, time left), or nothing."""
    if quiet or int(os.environ.get("RANK", "0")) != 0:
        return None, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    progress = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)
    task = progress.add_task("train", total=None, stats="")

    def on_epoch(row: dict, epochs: int) -> None:
        metric = next((k for k in ("val_accuracy", "val_rmse", "val_loss") if k in row), None)
        stats = f"loss {row['train_loss']:.4f}" + (f"  {metric} {row[metric]:.4f}" if metric else "") + f"  lr {row['lr']:.2e}"
        progress.update(task, total=epochs, completed=row["epoch"], stats=stats)

    return progress, on_epoch


def print_metrics(summary: dict) -> None:
    """A table of the validation and test metrics, and how each split was made."""
    from rich.console import Console
    from rich.table import Table

    names = list(dict.fromkeys(k for split in ("validation", "test") for k in summary.get(split, {})))
    table = Table(title=f"{summary['name']}: {summary['epochs_run']} epochs, {summary['seconds']:.1f} s on {summary['device']}")
    table.add_column("split")
    for name in names:
        table.add_column(name, justify="right")
    for split in ("validation", "test"):
        if summary.get(split):
            table.add_row(split, *[f"{summary[split][n]:.4f}" if n in summary[split] else "" for n in names])
    console = Console()
    console.print(table)
    for split, made in (summary.get("splits") or {}).items():  # under the table: a column would squeeze the metrics
        console.print(f"{split}: {made}", markup=False, highlight=False)


def _note_printer(progress):
    """Lines about the data on stderr (above a running progress bar), never on stdout."""
    if progress is not None:
        return lambda line: progress.console.print(line, markup=False, highlight=False)
    return lambda line: typer.echo(line, err=True)


def train(
    spec: Annotated[Optional[Path], typer.Argument(help="Spec file (optional with --resume).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override PATH=VALUE, validated like the file.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps (overrides training.device).")] = None,
    threads: Annotated[Optional[int], typer.Option(min=1, help="torch intra-op threads (overrides training.threads).")] = None,
    runs_dir: Annotated[Path, typer.Option("--runs-dir", help="Where run directories go.")] = Path("runs"),
    repo: Annotated[Path, typer.Option("--repo", help="Model repository to export into.")] = Path("models"),
    no_export: Annotated[bool, typer.Option("--no-export", help="Skip the ONNX export.")] = False,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue a run from its last checkpoint.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    track: Annotated[Optional[list[TrackerName]], typer.Option("--track", help="Report the run to mlflow or tensorboard "
                     "(repeatable; switches on training.tracking.<name> with its defaults).")] = None,
    register: Annotated[Optional[str], typer.Option("--register", metavar="NAME",
                        help="Register the exported model in MLflow's model registry under NAME.")] = None,
) -> None:
    """Train a spec, write its run directory and export it to the model repository."""
    from nnspec.compiler import load_spec
    from nnspec.runtime.rundir import load_run
    from nnspec.runtime.tracking import open_tracking, with_tracking
    from nnspec.runtime.train import TrainingInterrupted
    from nnspec.runtime.train import train as run_training

    overrides = list(set_ or [])
    if device is not None:
        overrides.append(f"training.device={device}")
    if threads is not None:
        overrides.append(f"training.threads={threads}")
    # Usage checks stay outside the try: fail() raises typer.Exit, a RuntimeError that ERRORS would catch.
    if resume is not None and overrides:
        fail("--set, --device and --threads cannot change a resumed run; its spec is fixed in its run directory")
    if resume is None and spec is None:
        fail("give a SPEC file, or --resume RUN_DIR")
    if resume is not None and track:
        fail("--track cannot change a resumed run; it goes on with the trackers of its spec")
    if register is not None and no_export:
        fail("--register logs the exported model: it cannot go with --no-export")
    try:
        parsed = with_tracking(load_run(resume)[0] if resume is not None else load_spec(spec, overrides),
                               [t.value for t in track or []])
    except ERRORS as e:
        fail_on(e)
    if register is not None and parsed.training.tracking.mlflow is None:
        fail("--register needs MLflow tracking: add --track mlflow or training.tracking.mlflow to the spec")
    tracking = None
    try:
        progress, on_epoch = _progress(quiet or as_json)
        note = _note_printer(progress)
        tracking = open_tracking(parsed, warn=note) if int(os.environ.get("RANK", "0")) == 0 else None
        try:
            if progress:
                progress.start()
            result = run_training(parsed, runs_dir=runs_dir, resume=resume, on_epoch=on_epoch, on_note=note, tracking=tracking)
        finally:
            if progress:
                progress.stop()
    except TrainingInterrupted as e:
        if tracking:
            tracking.close("KILLED")
        if e.epoch and e.run_dir is not None:
            fail(f"interrupted after epoch {e.epoch}; resume with: nnspec train --resume {e.run_dir}", 130)
        fail("interrupted before the first epoch finished; nothing to resume", 130)
    except ERRORS as e:
        if tracking:
            tracking.close("FAILED")
        fail_on(e)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    summary = dict(result.summary)
    export_error = None
    if not no_export:
        from nnspec.runtime.export import export_run

        try:
            exported = export_run(result.run_dir, repo)
            summary["export"] = {"path": str(exported.path), "version": exported.version, "parity": exported.parity}
        except ERRORS as e:  # the run is kept and reported first: only the export is retried
            export_error = e
    if tracking:
        if "export" in summary:
            tracking.log_model(summary["export"]["path"], register)
        tracking.close("FINISHED")
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_metrics(summary)
        typer.echo(f"run directory: {summary['run_dir']}")
        if "export" in summary:
            typer.echo(f"model: {summary['export']['path']} (version {summary['export']['version']})")
    if export_error is not None:
        fail(f"error: export failed: {export_error}\nthe trained run is kept; retry the export with: "
             f"nnspec export {summary['run_dir']} [--set export.atol=...]", 1)


def evaluate(
    run_dir: Path,
    split: Annotated[str, typer.Option(help="validation or test.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Metrics of a run's best (else last) weights on one split."""
    if split not in ("validation", "test"):
        fail(f"--split must be validation or test, got '{split}'")
    from nnspec.runtime.evaluate import evaluate_run

    try:
        metrics = evaluate_run(run_dir, split)
    except ERRORS as e:
        fail_on(e)
    if as_json:
        typer.echo(json.dumps({"split": split, "metrics": metrics}))
        return
    for name, value in metrics.items():
        typer.echo(f"{split} {name}: {value:.4f}")


def export(
    run_dir: Path,
    repo: Annotated[Path, typer.Option("--repo", help="Model repository.")] = Path("models"),
    version: Annotated[Optional[int], typer.Option("--version", help="Version number (default: the next one).")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing version.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override export.* or serving.* (PATH=VALUE).")] = None,
    register: Annotated[Optional[str], typer.Option("--register", metavar="NAME",
                        help="Register the model in MLflow's model registry under NAME (a run tracked with MLflow).")] = None,
) -> None:
    """Export a run to ONNX (preprocessing inside), check parity, and publish it to the repository; a run tracked
    with MLflow gets the model logged into its MLflow run."""
    from nnspec.runtime.export import export_run
    from nnspec.runtime.tracking import TRACKING_FILE, resume_tracking

    if register is not None and not (run_dir / TRACKING_FILE).is_file():
        fail(f"--register needs a run tracked with MLflow; {run_dir} has no {TRACKING_FILE}")
    try:
        exported = export_run(run_dir, repo, version=version, overwrite=overwrite, overrides=set_ or [])
    except ERRORS as e:
        fail_on(e)
    tracking = resume_tracking(run_dir, warn=lambda line: typer.echo(line, err=True))
    if tracking:
        tracking.log_model(exported.path, register)
        tracking.close("FINISHED")
    worst = max(exported.parity.values()) if exported.parity else 0.0
    typer.echo(f"exported {exported.path} (version {exported.version}; parity max |diff| {worst:.2e})")
