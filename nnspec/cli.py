"""The nnspec command line, assembled in one place: every command and the module it lives in.

Each command module only defines functions; `build_app` registers them. torch is imported inside
the training commands, so validation, prediction and serving start fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

import nnspec
from nnspec import cli_runs, cli_serving, cli_spec, cli_training

COMMANDS = (
    cli_spec.init, cli_spec.validate, cli_spec.summary, cli_spec.schema,  # the spec (torch-free)
    cli_training.train, cli_training.evaluate, cli_training.export,  # training (torch inside)
    cli_serving.serve, cli_serving.predict, cli_serving.models,      # exported models (torch-free)
)
# Commands with subcommands: name -> (the command itself, its subcommands).
GROUPS = {
    "runs": (cli_runs.runs, (cli_runs.diff,)),  # run directories side by side (torch-free)
}


def build_app() -> typer.Typer:
    """The typer app with every command registered."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Validate, train, export and serve neural networks described by one YAML spec.")
    app.callback()(_options)
    for command in COMMANDS:
        app.command()(command)
    for name, (command, subcommands) in GROUPS.items():
        group = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        group.callback(invoke_without_command=True)(command)
        for sub in subcommands:
            group.command()(sub)
        app.add_typer(group, name=name)
    return app


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"nnspec {nnspec.__version__}")
        raise typer.Exit()


def _options(version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Validate, train, export and serve neural networks described by one YAML spec."""


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
