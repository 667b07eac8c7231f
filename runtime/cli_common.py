"""Pieces every `edgeloop` command shares."""

from __future__ import annotations

import typer


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; raise the result to exit with status 2 (bad input, nothing done)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)
