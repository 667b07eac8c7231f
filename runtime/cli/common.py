"""Pieces every `edgeloop` command shares."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Run config YAML.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a key: dotted.key=value (repeatable).")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; raise the result to exit with status 2 (bad input, nothing done)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)
