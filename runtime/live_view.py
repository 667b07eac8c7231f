"""The live view: a Foxglove WebSocket server (foxglove-sdk, the `observe` extra) that shows a run as it goes.

It takes the same messages as the run's recording, on the same topics with the same schemas (runtime/channels.py),
plus, every tick, the newest camera frame and robot state, so that a stopped robot is still seen, and the goal
(its latents and view) and the camera's pose (when calibrated) when they change and once a second, so that a
viewer who connects later sees them too. Nothing is
encoded for a channel no viewer subscribes to: `Channel.has_sinks()`, a check of well under a microsecond, comes
first, so with no viewer connected the loop pays that check per message and nothing else. Messages go out
through the SDK's own threads; a slow viewer loses messages, the loop never waits for it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.channels import (
    CAMERA_TRANSFORM_TOPIC,
    CHANNELS,
    GOAL_IMAGE_TOPIC,
    GOAL_TOPIC,
    IMAGE_TOPIC,
    STATE_TOPIC,
    encode_camera_transform,
    encode_image,
    encode_json,
    state_payload,
)
from runtime.config import LiveViewSection
from runtime.goals import GoalTarget
from runtime.link import protocol
from runtime.sources import SourceFrame

if TYPE_CHECKING:
    import foxglove

REPEAT_S = 1.0  # the goal and the camera's pose, for viewers who connect later


class LiveViewError(ValueError):
    """The live view cannot start; the text names the key to change."""


class LiveView:
    """Serves one run's channels on `section.host:section.port` until `close`."""

    def __init__(self, section: LiveViewSection) -> None:
        try:
            import foxglove
        except ImportError as exc:
            raise LiveViewError("live_view.enabled: the live view needs foxglove-sdk: pip install 'edgeloop[observe]' "
                                "(or set live_view.enabled=false)") from exc
        self.image_format = section.image_format
        self._context = foxglove.Context()  # its own: nothing else logged in this process reaches the viewers
        try:
            self._server = foxglove.start_server(name="edgeloop", host=section.host, port=section.port,
                                                 context=self._context)
        except RuntimeError as exc:
            raise LiveViewError(f"live_view: cannot listen on {section.host}:{section.port} ({exc}); choose another "
                                f"live_view.port (0: any free one) or set live_view.enabled=false") from exc
        self.port: int = self._server.port
        self.address = f"ws://{section.host}:{self.port}"  # what to open in Foxglove
        self._channels: dict[str, foxglove.Channel] = {
            topic: foxglove.Channel(topic, schema=foxglove.Schema(name=spec.schema_name, encoding=spec.schema_encoding,
                                                                  data=spec.schema_data),
                                    message_encoding=spec.message_encoding, context=self._context)
            for topic, spec in CHANNELS.items()}
        self._shown_frame: int | None = None  # stamp of the camera frame last sent
        self._shown_state: int | None = None  # seq of the state last sent
        self._goal: GoalTarget | None = None
        self._goal_messages: list[tuple[str, bytes]] = []  # the goal's, encoded once per goal
        self._goal_sent = 0.0  # perf_counter
        self._base_T_camera: np.ndarray | None = None
        self._camera_sent = 0.0  # perf_counter

    def write_json(self, topic: str, payload: dict[str, Any], stamp_ns: int, sequence: int) -> None:
        channel = self._channels[topic]
        if not channel.has_sinks():
            return
        if topic == STATE_TOPIC:
            if payload.get("seq") == self._shown_state:
                return
            self._shown_state = payload.get("seq")
        channel.log(encode_json(payload), log_time=stamp_ns)

    def write_image(self, image: np.ndarray, stamp_ns: int, sequence: int, topic: str = IMAGE_TOPIC) -> None:
        channel = self._channels[topic]
        if not channel.has_sinks() or (topic == IMAGE_TOPIC and stamp_ns == self._shown_frame):
            return
        if topic == IMAGE_TOPIC:
            self._shown_frame = stamp_ns
        channel.log(encode_image(image, stamp_ns, self.image_format), log_time=stamp_ns)

    def show(self, frame: SourceFrame | None, state: protocol.State | None, goal: GoalTarget | None) -> None:
        """Once a tick: the newest frame and state, each unless already sent, and the goal."""
        if frame is not None:
            self.write_image(frame.image, frame.stamp_ns, 0)
        if state is not None and self._channels[STATE_TOPIC].has_sinks():
            self.write_json(STATE_TOPIC, state_payload(state), state.stamp, state.seq)
        if goal is not None:
            self._show_goal(goal)
        self._show_camera_transform()

    def set_camera_transform(self, base_T_camera: np.ndarray) -> None:
        """The camera's pose in the robot base frame (4x4, from its calibration), shown from the next tick."""
        self._base_T_camera = np.array(base_T_camera, dtype=np.float64)
        self._camera_sent = 0.0

    def _show_camera_transform(self) -> None:
        now = time.perf_counter()
        channel = self._channels[CAMERA_TRANSFORM_TOPIC]
        if self._base_T_camera is None or now - self._camera_sent < REPEAT_S or not channel.has_sinks():
            return
        self._camera_sent = now
        stamp = protocol.now_ns()
        channel.log(encode_camera_transform(self._base_T_camera, stamp), log_time=stamp)

    def _show_goal(self, goal: GoalTarget) -> None:
        now = time.perf_counter()
        if goal is self._goal and now - self._goal_sent < REPEAT_S:
            return
        wanted = [topic for topic in (GOAL_TOPIC, GOAL_IMAGE_TOPIC) if self._channels[topic].has_sinks()]
        if not wanted:
            return
        stamp = protocol.now_ns()
        if goal is not self._goal:
            self._goal = goal
            self._goal_messages = [(GOAL_TOPIC, encode_json(goal.message()))]
            if goal.view is not None:
                self._goal_messages.append((GOAL_IMAGE_TOPIC, encode_image(goal.view, stamp, self.image_format)))
        self._goal_sent = now
        for topic, data in self._goal_messages:
            if topic in wanted:
                self._channels[topic].log(data, log_time=stamp)

    def close(self) -> None:
        self._server.stop()


def open_live_view(section: LiveViewSection) -> LiveView | None:
    """The live view a run's config asks for, or None."""
    return LiveView(section) if section.enabled else None
