"""`edgeloop goal capture | send | from-recording`: make goal images and switch a running runtime's goal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from runtime.cli.common import SecretKeyOption, client_security, fail
from runtime.link import protocol

OutOption = Annotated[Path, typer.Option("--out", help="Goal image file to write (.png or .jpg).")]


def _write_image(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(path), image)
    except cv2.error as exc:  # an extension OpenCV has no writer for
        raise fail(f"{path}: cannot write an image ({exc})") from exc
    if not written:
        raise fail(f"{path}: cannot write an image (is the extension .png or .jpg?)")
    typer.echo(str(path))


def _parse_state(text: str) -> np.ndarray:
    try:
        values = np.asarray([float(part) for part in text.split(",")], dtype=np.float64)
    except ValueError as exc:
        raise typer.BadParameter(f"expected comma-separated joint positions in rad, not {text!r}",
                                 param_hint="--state") from exc
    if not np.all(np.isfinite(values)):
        raise typer.BadParameter(f"joint positions must be finite, not {text!r}", param_hint="--state")
    return values


def goal_capture(
    source: Annotated[str, typer.Option(help="Frame source URI (file:, images:, mcap:, rosbag2:, v4l2:, gst:, zmq://).")],
    out: OutOption,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Give up when no frame arrives within this long.")]
    = 10.0,
    secret_key: SecretKeyOption = None,
    controller_key: Annotated[Path | None, typer.Option(help="CURVE: a zmq:// controller's public key file.")]
    = None,
) -> None:
    """Save the current view of a frame source as a goal image."""
    from runtime.sources import SourceError, open_source

    security = client_security(secret_key, controller_key, "--controller-key")
    try:
        with open_source(source, security=security) as frames:
            frame = frames.read_latest(timeout_s)
    except SourceError as exc:
        raise fail(str(exc)) from exc
    if frame is None:
        raise fail(f"{source}: no frame within {timeout_s:g} s")
    _write_image(out, frame.image)


def goal_from_recording(
    recording: Annotated[Path, typer.Argument(help="MCAP recording with a /camera/image channel.")],
    frame: Annotated[int, typer.Option(min=0, help="Index of the frame, from 0, in recording order.")],
    out: OutOption,
) -> None:
    """Save frame N of a recording as a goal image."""
    from runtime.goals import GoalError, recording_frame

    try:
        image = recording_frame(recording, frame, key="recording")
    except GoalError as exc:
        raise fail(str(exc)) from exc
    _write_image(out, image)


def goal_send(
    endpoint: Annotated[str, typer.Option(help="The runtime's goal endpoint (its link.goal_endpoint).")]
    = protocol.DEFAULT_GOAL_ENDPOINT,
    image: Annotated[Path | None, typer.Option(help="Goal view from an image file.")] = None,
    state: Annotated[str | None, typer.Option(help="Goal joint positions in rad, comma-separated: q1,q2.")]
    = None,
    capture: Annotated[bool, typer.Option("--capture", help="Goal view: the runtime's current view.")] = False,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Give up when no runtime takes it within this long.")]
    = 5.0,
    secret_key: SecretKeyOption = None,
    runtime_key: Annotated[Path | None, typer.Option(help="CURVE: the runtime's public key file.")] = None,
) -> None:
    """Send a goal message to a running runtime: a view (--image or --capture) and/or a joint state (--state)."""
    from runtime.goals import GoalError, read_goal_image, send_goal

    if image is not None and capture:
        raise typer.BadParameter("give --image or --capture, not both", param_hint="--image")
    if image is None and state is None and not capture:
        raise typer.BadParameter("give --image, --capture or --state (a state may join a view)")
    security = client_security(secret_key, runtime_key, "--runtime-key")
    try:
        view = read_goal_image(image, key="--image") if image is not None else None
        message = protocol.Goal(seq=0, stamp_send=protocol.now_ns(), image=view,
                                state=_parse_state(state) if state is not None else None, capture=capture)
        send_goal(endpoint, message, timeout_s, security)
    except (GoalError, protocol.ProtocolError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"sent goal to {endpoint}")
