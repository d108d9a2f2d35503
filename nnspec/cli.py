"""The nnspec command line, assembled in one place: every command and the module it lives in.

Each command module only defines functions; `build_app` registers them. torch is imported inside
the training commands, so validation, prediction and serving start fast.
"""

from __future__ import annotations

import sys

import typer

from nnspec import cli_serving, cli_spec, cli_training

COMMANDS = (
    cli_spec.validate, cli_spec.summary, cli_spec.schema,            # the spec (torch-free)
    cli_training.train, cli_training.evaluate, cli_training.export,  # training (torch inside)
    cli_serving.serve, cli_serving.predict,                          # exported models (torch-free)
)


def build_app() -> typer.Typer:
    """The typer app with every command registered."""
    app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                      help="Validate, train, export and serve neural networks described by one YAML spec.")
    for command in COMMANDS:
        app.command()(command)
    return app


app = build_app()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
