"""Goals (docs/goals.md): from the config at start, and from `goal` messages over ZeroMQ while running.

A goal is a view (an image file, a recording's frame, or the runtime's current view) and/or a joint
state. Views become the visual part of a goal latent (image only: a goal view carries no robot state);
joint states become the proprio part through the encoder's proprio branch, held still (dq = 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import zmq

from planning.world_model import WorldModel
from runtime.config import GoalSection
from runtime.link import protocol
from runtime.link.newest import receive_newest
from runtime.link.security import CurveServer, LinkSecurity, SecurityError
from runtime.recording import RecordingError, iter_images

# Goal messages waiting beyond this are dropped by ZeroMQ: a flood cannot grow the runtime's memory.
_GOAL_QUEUE = 16


class GoalError(ValueError):
    """A goal that cannot be used; the text names the config key or message field, and the file."""


@dataclass(frozen=True)
class GoalTarget:
    """A goal as the planner takes it (`Planner.set_goal`), with a description for logs."""

    visual: np.ndarray | None  # (visual_dim,) latent of the goal view
    state: np.ndarray | None  # (latent_dim - visual_dim,) proprio latent of the goal joint state
    description: str
    view: np.ndarray | None = None  # the goal view (BGR), when the goal has one: recorded and shown

    def message(self) -> dict[str, Any]:
        """The goal as recorded and shown on GOAL_TOPIC (runtime/channels.py)."""
        return {"description": self.description,
                "visual": self.visual.tolist() if self.visual is not None else None,
                "state": self.state.tolist() if self.state is not None else None}


def read_goal_image(path: Path, key: str = "goal.image") -> np.ndarray:
    """A goal view (BGR uint8) from an image file."""
    if not Path(path).is_file():  # checked first: OpenCV would also print its own warning
        raise GoalError(f"{key}: {path}: missing or not a readable image")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise GoalError(f"{key}: {path}: missing or not a readable image")
    return image


def recording_frame(path: Path, frame: int, key: str = "goal.recording") -> np.ndarray:
    """Image number `frame` (from 0, in recording order) of an MCAP recording's camera channel."""
    if frame < 0:
        raise GoalError(f"{key}: {path}: frame must be 0 or more, got {frame}")
    count = 0
    try:
        # Streamed: only the wanted frame is kept, however long the recording.
        for _seq, _stamp, image in iter_images(path):
            if count == frame:
                return image
            count += 1
    except RecordingError as exc:
        raise GoalError(f"{key}: {exc}") from exc
    raise GoalError(f"{key}: {path}: has {count} camera frame(s); frame {frame} does not exist")


def encode_goal(world_model: WorldModel, view: np.ndarray | None, state: np.ndarray | list[float] | None,
                description: str, state_key: str, view_key: str) -> GoalTarget:
    """Encode a goal view and/or joint state; errors name `view_key` or `state_key` when either does not fit."""
    if view is None and state is None:
        raise GoalError(f"{description}: a goal needs a view, a joint state, or both")
    visual = None
    if view is not None:
        try:
            visual = world_model.encode_goal_image(view)
        except ValueError as exc:  # e.g. a view whose size is not the one the camera calibration is for
            raise GoalError(f"{view_key}: {exc}") from exc
    proprio = None
    if state is not None:
        try:
            proprio = world_model.encode_goal_state(np.asarray(state, dtype=np.float32))
        except ValueError as exc:
            raise GoalError(f"{state_key}: {exc}") from exc
    return GoalTarget(visual, proprio, description, view)


def goal_from_config(section: GoalSection, world_model: WorldModel) -> GoalTarget | None:
    """The start goal of a run config's `goal` section; None when the section names none."""
    view: np.ndarray | None = None
    view_key = ""
    parts: list[str] = []
    if section.image is not None:
        view = read_goal_image(section.image)
        view_key = f"goal.image: {section.image}"
        parts.append(f"image {section.image}")
    elif section.recording is not None:
        assert section.frame is not None  # the config schema requires frame with recording
        view = recording_frame(section.recording, section.frame)
        view_key = f"goal.recording: {section.recording}: frame {section.frame}"
        parts.append(f"frame {section.frame} of {section.recording}")
    if section.state is not None:
        parts.append(f"state {section.state}")
    if not parts:
        return None
    return encode_goal(world_model, view, section.state, " + ".join(parts), "goal.state", view_key)


def goal_from_message(message: protocol.Goal, world_model: WorldModel,
                      current_view: np.ndarray | None) -> GoalTarget:
    """Encode a received goal; `capture` takes `current_view`, the newest frame the runtime has."""
    parts: list[str] = []
    view = message.image
    if message.capture:
        if current_view is None:
            raise GoalError(f"goal message seq {message.seq}: 'capture' but the runtime has no fresh frame")
        view = current_view
        parts.append("captured current view")
    elif view is not None:
        parts.append(f"image {view.shape[1]}x{view.shape[0]}")
    if message.state is not None:
        parts.append(f"state {[round(float(q), 4) for q in message.state]}")
    named = f"goal message seq {message.seq}"
    view_field = "'capture' (the current view)" if message.capture else "field 'image'"
    return encode_goal(world_model, view, message.state, f"{named}: " + " + ".join(parts), f"{named}: field 'state'",
                       f"{named}: {view_field}")


class GoalServer:
    """The runtime's goal socket: a PULL bound at `endpoint` that any client PUSHes goal messages to.

    `receive` never blocks or raises: what does not decode as a `goal` message, or has a view smaller than
    `min_image_size` (height, width: the model's input), is dropped and counted in `bad_messages`; goal messages
    older than the one taken in the same call are superseded, not decoded, and counted in
    `counters["superseded_goals"]` (runtime/link/newest.py bounds the decoding per call). With `security` it is a
    CURVE server admitting only the allowlisted clients; `counters` counts the rest (runtime/link/security.py).
    Not thread-safe: the control loop owns it.
    """

    def __init__(self, endpoint: str, security: LinkSecurity | None = None,
                 min_image_size: tuple[int, int] | None = None) -> None:
        self._context = zmq.Context()
        self.counters: dict[str, int] = {"superseded_goals": 0}
        self.min_image_size = min_image_size
        self._guard: CurveServer | None = None
        try:
            self._guard = None if security is None else CurveServer(self._context, security, self.counters)
        except SecurityError as exc:
            self._context.term()
            raise GoalError(f"link.goal_endpoint: {exc}") from exc
        self._socket = self._context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.RCVHWM, _GOAL_QUEUE)
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
        if self._guard is not None:
            self._guard.secure(self._socket)
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise GoalError(f"link.goal_endpoint: cannot bind {endpoint} ({exc}); choose a free endpoint "
                            f"or set link.goal_endpoint=null") from exc
        # The endpoint actually bound (a "*" port resolved to the one the OS picked).
        self.endpoint: str = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.bad_messages = 0
        self.last_error: str | None = None

    def receive(self) -> protocol.Goal | None:
        """The newest valid goal message waiting, or None; older ones waiting with it are superseded."""
        if self._guard is not None:
            self._guard.drain()
        goal = receive_newest(self._socket, protocol.Goal, self.reject, "goal", superseded=self._superseded)
        if goal is None or goal.image is None or self.min_image_size is None:
            return goal
        height, width = goal.image.shape[:2]
        if height < self.min_image_size[0] or width < self.min_image_size[1]:
            self.reject(f"goal message seq {goal.seq}: field 'image' is {width}x{height}, smaller than the model's "
                        f"{self.min_image_size[1]}x{self.min_image_size[0]} input")
            return None
        return goal

    def _superseded(self, count: int) -> None:
        self.counters["superseded_goals"] += count

    def reject(self, reason: str) -> None:
        """Count a goal message that cannot be used."""
        self.bad_messages += 1
        self.last_error = reason

    def close(self) -> None:
        """Close without lingering; safe to call twice."""
        if not self._socket.closed:
            if self._guard is not None:
                self._guard.close()
            self._socket.close(linger=0)
            self._context.term()


def send_goal(endpoint: str, message: protocol.Goal, timeout_s: float = 5.0,
              security: LinkSecurity | None = None) -> None:
    """PUSH one goal message to a runtime's goal socket (with `security`, as a CURVE client of the runtime's
    key); GoalError when none takes it within timeout_s."""
    if security is not None:
        security.require_server_key()
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    if security is not None:
        security.secure_client(socket)
    # Queue only on a completed connection, so a missing runtime shows up as a send timeout.
    socket.setsockopt(zmq.IMMEDIATE, 1)
    socket.setsockopt(zmq.SNDTIMEO, max(1, int(timeout_s * 1000)))
    socket.setsockopt(zmq.LINGER, max(1, int(timeout_s * 1000)))
    try:
        socket.connect(endpoint)
        socket.send(protocol.encode(message))
    except zmq.Again as exc:
        refused = " and admitting this client's key" if security is not None else ""
        raise GoalError(f"{endpoint}: no runtime took the goal within {timeout_s:g} s (is one running with "
                        f"link.goal_endpoint={endpoint}{refused}?)") from exc
    except zmq.ZMQError as exc:
        raise GoalError(f"{endpoint}: {exc}") from exc
    finally:
        socket.close()  # lingers until the message is out, or timeout_s
        context.term()
