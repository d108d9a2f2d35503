"""What every command shares: ending with a one-line error instead of a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer

from nnspec.compiler.errors import SpecError

# The exceptions that end a command with a one-line message instead of a traceback. ValueError covers
# DataError, RepositoryError and an unreadable data.json/summary.json; RuntimeError covers ExportError and
# device errors; OSError an unwritable runs/ or models/ or a full disk.
ERRORS = (SpecError, ValueError, RuntimeError, OSError)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print a one-line (or one-line-per-issue) error and exit without a traceback."""
    typer.echo(message, err=True)
    raise typer.Exit(code)


def fail_on(error: Exception) -> NoReturn:
    """End the command with the error's message (a SpecError's issues as they are, others prefixed)."""
    fail(str(error) if isinstance(error, SpecError) else f"error: {error}")
