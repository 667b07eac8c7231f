"""Pieces every `edgeloop` command shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from runtime.config import RunConfig
    from runtime.link.security import LinkSecurity

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Run config YAML.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a key: dotted.key=value (repeatable).")]
ResultOutOption = Annotated[Path | None, typer.Option(
    "--out", help="Write the result JSON here (default: RUNS_DIR/results/KIND-TIME.json).")]
SecretKeyOption = Annotated[Path | None, typer.Option(
    "--secret-key", help="CURVE: this client's NAME.key_secret file (docs/security.md); needs the server's key too.")]


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; raise the result to exit with status 2 (bad input, nothing done)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def client_security(secret_key: Path | None, server_key: Path | None, server_option: str) -> LinkSecurity | None:
    """A CLI client's CURVE keys from --secret-key and the server's public key option; None without either."""
    from runtime.link.security import LinkSecurity, SecurityError, read_public_key, read_secret_key

    if secret_key is None and server_key is None:
        return None
    if secret_key is None or server_key is None:
        raise typer.BadParameter(f"CURVE needs both --secret-key and {server_option}", param_hint="--secret-key")
    try:
        return LinkSecurity(*read_secret_key(secret_key, "--secret-key"),
                            server_key=read_public_key(server_key, server_option))
    except SecurityError as exc:
        raise fail(str(exc)) from exc


def emit_json(result: dict[str, Any], out: Path | None, json_: bool, *, kind: str, config: RunConfig | None,
              manifest: Path | None = None) -> bool:
    """Stamp `result` with its provenance and write it to `out`, else under `<runs_dir>/results/`
    (runtime/evaluation/results.py); print it as one JSON line with --json, else say where it went. True when
    printed, so the caller skips its human-readable lines."""
    from runtime.evaluation.results import write_result

    path = write_result(result, kind, config, out, manifest=manifest)
    if json_:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"result: {path}", err=True)
    return json_
