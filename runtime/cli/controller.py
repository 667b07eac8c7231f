"""`edgeloop controller sim`: the simulated arm as a standalone controller process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import zmq

from runtime.cli.common import fail
from runtime.link import protocol
from runtime.link.security import LinkSecurity, SecurityError, read_allowlist, read_secret_key
from runtime.sim.controller import SimControllerSettings, run_sim_controller
from runtime.sim.scene_file import SceneError, load_scene


def _parse_q(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated joint positions, not {text!r}",
                                 param_hint="--initial-q") from exc


def _security(secret_key: Path | None, allowed_clients: list[Path]) -> LinkSecurity | None:
    if secret_key is None and not allowed_clients:
        return None
    if secret_key is None or not allowed_clients:
        raise typer.BadParameter("CURVE needs both --secret-key and --allowed-clients", param_hint="--secret-key")
    try:
        return LinkSecurity(*read_secret_key(secret_key, "--secret-key"),
                            allowed_clients=read_allowlist(allowed_clients, "--allowed-clients"))
    except SecurityError as exc:
        raise fail(str(exc)) from exc


def _print_json(payload: dict[str, object]) -> None:
    print(json.dumps(payload), flush=True)


def controller_sim(
    command_endpoint: str = typer.Option(protocol.DEFAULT_COMMAND_ENDPOINT, help="Bind the command SUB."),
    state_endpoint: str = typer.Option(protocol.DEFAULT_STATE_ENDPOINT, help="Bind the state PUB."),
    frame_endpoint: str = typer.Option(protocol.DEFAULT_FRAME_ENDPOINT, help="Bind the camera frame PUB."),
    watchdog_ms: float = typer.Option(300.0, min=1.0, help="Hold still after this long without a command."),
    state_hz: float = typer.Option(100.0, min=0.1, help="State publishing rate."),
    frame_hz: float = typer.Option(30.0, min=0.1, help="Camera frame publishing rate."),
    scene: str = typer.Option("planar-arm", help="A shipped scene's name or a scene file (docs/tasks.md)."),
    image_size: int | None = typer.Option(None, min=8, max=1024, help="Square camera images of this side, pixels "
                                                                      "(default: the scene camera's size)."),
    initial_q: str | None = typer.Option(None, help="Initial positions of the scene's proprio joints, "
                                                    "comma-separated (planar-arm: 'shoulder,elbow' in rad)."),
    secret_key: Annotated[Path | None, typer.Option(help="CURVE on every socket (docs/security.md): this "
                                                        "controller's NAME.key_secret file.")] = None,
    allowed_clients: Annotated[list[Path] | None, typer.Option(help="CURVE: a client public key file, or a folder "
                                                                    "of them (*.key), to admit (repeatable).")]
    = None,
) -> None:
    """Run a simulated robot as a controller: binds the protocol's sockets and serves until SIGINT/SIGTERM.

    Prints one JSON line {"event": "ready", "command", "state", "frame"} with the bound endpoints
    (use port * for ephemeral ports) and, at exit, {"event": "exit", "counters": {...}}; with --secret-key the
    counters include the refused peers (docs/security.md).
    """
    try:
        joints = load_scene(scene).proprio.joints
    except SceneError as exc:
        raise fail(str(exc)) from exc
    q = _parse_q(initial_q)
    if q is not None and len(q) != len(joints):
        raise typer.BadParameter(f"{len(q)} values for the scene's {len(joints)} proprio joints {joints}",
                                 param_hint="--initial-q")
    security = _security(secret_key, allowed_clients or [])
    settings = SimControllerSettings(
        command_endpoint=command_endpoint,
        state_endpoint=state_endpoint,
        frame_endpoint=frame_endpoint,
        state_hz=state_hz,
        frame_hz=frame_hz,
        scene=scene,
        image_size=image_size,
        watchdog_ms=watchdog_ms,
        initial_q=q,
        security=security,
    )
    def announce(endpoints: dict[str, str]) -> None:
        _print_json({"event": "ready", **endpoints})

    try:
        counters = run_sim_controller(settings, on_ready=announce)
    except zmq.ZMQError as exc:  # an endpoint in use or malformed: say which, without a traceback
        typer.echo(f"controller sim: {exc}", err=True)
        raise typer.Exit(1) from exc
    except SceneError as exc:  # the scene file, its MJCF or --initial-q does not fit: nothing was bound
        raise fail(str(exc)) from exc
    _print_json({"event": "exit", "counters": counters})
