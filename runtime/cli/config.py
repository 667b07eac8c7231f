"""`edgeloop config validate | schema`: check a run config and its files, print its JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from runtime.cli.common import SetOption, fail


def config_validate(file: Path, set_: SetOption = None) -> None:
    """Exit 0 if FILE is a valid run config whose files exist and fit its model, else print every error with
    its key path and exit 2."""
    from runtime.config import ConfigError, load_config
    from runtime.preflight import preflight

    try:
        config = load_config(file, set_ or [])
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    problems = preflight(config)
    if problems:
        raise fail("\n".join(f"{file}: {problem}" for problem in problems))
    typer.echo(f"{file}: valid")


def config_schema() -> None:
    """Print the run config's JSON Schema."""
    from runtime.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))

