"""The torch-free spec commands: validate, summary, schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from nnspec.cli_common import fail
from nnspec.compiler.errors import SpecError


def validate(specs: Annotated[list[Path], typer.Argument(help="Spec files.")],
             set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override PATH=VALUE.")] = None) -> None:
    """Check specs completely (schema, data shapes, rules) without training; exit 2 if any is invalid."""
    from nnspec.compiler import load_spec

    bad = 0
    for path in specs:
        try:
            spec = load_spec(path, set_ or [])
        except SpecError as e:
            bad += 1
            typer.echo(str(e), err=True)
        else:
            typer.echo(f"ok {path} ({spec.name}, {spec.task})")
    raise typer.Exit(2 if bad else 0)


def summary(spec: Path, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
            set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override PATH=VALUE.")] = None) -> None:
    """Print each layer's output shape and parameter count."""
    from nnspec.compiler import load_spec_with_data
    from nnspec.compiler.compile import summarize

    try:
        parsed, info = load_spec_with_data(spec, set_ or [])
    except SpecError as e:
        fail(str(e))
    result = summarize(parsed, info)
    if as_json:
        typer.echo(json.dumps({"layers": [{k: r[k] for k in ("path", "type", "output_shape", "params")} for r in result["layers"]],
                               "total_params": result["total_params"]}))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{parsed.name}: input {tuple(result['input_shape'])}")
    for col, justify in (("path", "left"), ("type", "left"), ("output shape", "left"), ("params", "right")):
        table.add_column(col, justify=justify)
    for row in result["layers"]:
        table.add_row("  " * row["depth"] + row["path"], row["type"], str(tuple(row["output_shape"])), f"{row['params']:,}")
    table.add_section()
    table.add_row("total", "", "", f"{result['total_params']:,}")
    Console().print(table)


def schema(out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None) -> None:
    """Write the spec language's JSON Schema (for editor completion and checks)."""
    from nnspec.compiler.spec import Spec

    text = json.dumps(Spec.model_json_schema(), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        from nnspec.runtime.files import atomic_write_text

        try:
            atomic_write_text(out, text)
        except OSError as e:
            fail(f"error: cannot write {out}: {e.strerror or e}")
        typer.echo(f"wrote {out}")


def init(
    data: Annotated[Path, typer.Argument(help="A CSV or Parquet file, an .npz archive (arrays x, y) or an image folder.")],
    target: Annotated[Optional[str], typer.Option(help="The column to predict (default: the last column).")] = None,
    task: Annotated[Optional[str], typer.Option(help="classification, binary or regression (default: inferred).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Spec file to write (default: NAME.yaml here).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing spec file.")] = False,
) -> None:
    """Draft a commented spec from a data file: task, classes, features, input shape, a default network."""
    from nnspec.compiler import DataError
    from nnspec.compiler.loader import load_yaml
    from nnspec.compiler.validate import validate_data
    from nnspec.runtime.files import atomic_write_text
    from nnspec.scaffold import TASKS, draft_spec, model_name

    if task is not None and task not in TASKS:
        fail(f"--task must be one of {', '.join(TASKS)}, got '{task}'")
    out = out or Path(f"{model_name(data)}.yaml")
    if out.exists() and not force:
        fail(f"error: {out} exists; choose another --out or add --force")
    try:
        draft = draft_spec(data, out, target, task)
    except DataError as e:
        fail(f"error: {e}")
    try:  # validated as it will be read from `out` (data paths relative to its folder) before it is written
        validate_data(*load_yaml(draft.text, str(out)), out.resolve().parent)
    except SpecError as e:
        fail(f"error: the drafted spec does not validate:\n{e}")
    try:
        atomic_write_text(out, draft.text)
    except OSError as e:
        fail(f"error: cannot write {out}: {e.strerror or e}")
    for line in draft.inferred:
        typer.echo(line)
    typer.echo(f"wrote {out}; next: nnspec train {out}")
