"""`edgeloop keys generate`: a CURVE key pair for one side of the link (docs/security.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.common import fail


def keys_generate(
    name: Annotated[str, typer.Argument(help="Key name: writes NAME.key (public) and NAME.key_secret (secret).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the two files to.")] = Path("keys"),
) -> None:
    """Write a CURVE key pair: OUT/NAME.key (public, to hand to the peer) and OUT/NAME.key_secret (mode 0600,
    stays on this machine). Never overwrites an existing key."""
    from runtime.link.security import SecurityError, generate_keys

    try:
        public, secret = generate_keys(name, out)
    except SecurityError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"public key: {public}\nsecret key: {secret} (mode 0600; keep it on this machine)")
