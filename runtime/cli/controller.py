"""`edgeloop controller sim`: the simulated arm as a standalone controller process."""

from __future__ import annotations

import json
import logging
import sys

import typer
import zmq

from runtime.link import protocol
from runtime.sim.controller import SimControllerSettings, run_sim_controller


def _parse_q(text: str) -> tuple[float, float]:
    problem = typer.BadParameter(f"expected two comma-separated angles, not {text!r}",
                                 param_hint="--initial-q")
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as exc:
        raise problem from exc
    if len(values) != 2:
        raise problem
    return values[0], values[1]


def _print_json(payload: dict[str, object]) -> None:
    print(json.dumps(payload), flush=True)


def controller_sim(
    command_endpoint: str = typer.Option(protocol.DEFAULT_COMMAND_ENDPOINT, help="Bind the command SUB."),
    state_endpoint: str = typer.Option(protocol.DEFAULT_STATE_ENDPOINT, help="Bind the state PUB."),
    frame_endpoint: str = typer.Option(protocol.DEFAULT_FRAME_ENDPOINT, help="Bind the camera frame PUB."),
    watchdog_ms: float = typer.Option(300.0, min=1.0, help="Hold still after this long without a command."),
    state_hz: float = typer.Option(100.0, min=0.1, help="State publishing rate."),
    frame_hz: float = typer.Option(30.0, min=0.1, help="Camera frame publishing rate."),
    image_size: int = typer.Option(64, min=8, max=256, help="Rendered camera image side in pixels."),
    initial_q: str = typer.Option("0,0", help="Initial joint angles in rad, 'shoulder,elbow'."),
) -> None:
    """Run the simulated arm as a controller: binds the protocol's sockets and serves until SIGINT/SIGTERM.

    Prints one JSON line {"event": "ready", "command", "state", "frame"} with the bound endpoints
    (use port * for ephemeral ports) and, at exit, {"event": "exit", "counters": {...}}.
    """
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    settings = SimControllerSettings(
        command_endpoint=command_endpoint,
        state_endpoint=state_endpoint,
        frame_endpoint=frame_endpoint,
        state_hz=state_hz,
        frame_hz=frame_hz,
        image_size=image_size,
        watchdog_ms=watchdog_ms,
        initial_q=_parse_q(initial_q),
    )
    def announce(endpoints: dict[str, str]) -> None:
        _print_json({"event": "ready", **endpoints})

    try:
        counters = run_sim_controller(settings, on_ready=announce)
    except zmq.ZMQError as exc:  # an endpoint in use or malformed: say which, without a traceback
        typer.echo(f"controller sim: {exc}", err=True)
        raise typer.Exit(1) from exc
    _print_json({"event": "exit", "counters": counters})
