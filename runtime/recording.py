"""MCAP recordings: writer for runs and episodes, readers for training data and the ``mcap:`` source.

Images go on ``/camera/image`` as ``foxglove.CompressedImage`` (JSON encoding, PNG payload), so
Foxglove shows them. Robot state, commands, a run's stops and anything else go on their own JSON channels. All
messages of one control tick share the MCAP ``sequence`` number, which is how readers align them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

IMAGE_TOPIC = "/camera/image"
STATE_TOPIC = "/robot/state"
COMMAND_TOPIC = "/robot/command"
STOP_TOPIC = "/robot/stop"  # a run's stops: seq and reason
# Training episodes recorded in simulation: what the camera shows that the task is about (docs/training.md).
VISUAL_STATE_TOPIC = "/task/visual_state"

_COMPRESSED_IMAGE_SCHEMA = {
    "title": "foxglove.CompressedImage",
    "type": "object",
    "properties": {
        "timestamp": {
            "type": "object",
            "properties": {"sec": {"type": "integer"}, "nsec": {"type": "integer"}},
        },
        "frame_id": {"type": "string"},
        "data": {"type": "string", "contentEncoding": "base64"},
        "format": {"type": "string"},
    },
}


class RecordingError(ValueError):
    """A recording that cannot be read; the text names the file and what is wrong."""


@dataclass
class Episode:
    """One recorded episode, aligned by tick: row t of every array belongs to tick t."""

    path: Path
    frames: np.ndarray  # uint8 BGR (T, H, W, 3)
    q: np.ndarray  # (T, J) joint positions
    dq: np.ndarray  # (T, J) joint velocities
    actions: np.ndarray  # (T, A) command applied after the frame of tick t
    stamps: np.ndarray  # int64 ns (T,)
    visual_state: np.ndarray | None = None  # (T, S) when every tick has one on VISUAL_STATE_TOPIC

    def __len__(self) -> int:
        return len(self.stamps)


class RecordingWriter:
    """Appends stamped messages to one MCAP file (zstd chunks)."""

    def __init__(self, path: str | Path, profile: str = "edgeloop") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: BinaryIO = self.path.open("wb")
        self._writer = Writer(self._stream, compression=CompressionType.ZSTD)
        self._writer.start(profile=profile, library="edgeloop")
        self._channels: dict[str, int] = {}

    def _channel(self, topic: str, schema_name: str, schema: dict[str, Any]) -> int:
        if topic not in self._channels:
            schema_id = self._writer.register_schema(
                name=schema_name, encoding="jsonschema", data=json.dumps(schema).encode()
            )
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="json", schema_id=schema_id
            )
        return self._channels[topic]

    def write_json(self, topic: str, payload: dict[str, Any], stamp_ns: int, sequence: int,
                   schema_name: str | None = None) -> None:
        schema_name = schema_name or "edgeloop" + topic.replace("/", ".")
        channel = self._channel(topic, schema_name, {"type": "object"})
        self._writer.add_message(channel, log_time=stamp_ns, data=json.dumps(payload).encode(),
                                 publish_time=stamp_ns, sequence=sequence)

    def write_image(self, image: np.ndarray, stamp_ns: int, sequence: int, frame_id: str = "camera",
                    topic: str = IMAGE_TOPIC) -> None:
        ok, png = cv2.imencode(".png", image)
        if not ok:
            raise RecordingError(f"{self.path}: could not PNG-encode an image of shape {image.shape}")
        payload = {
            "timestamp": {"sec": stamp_ns // 1_000_000_000, "nsec": stamp_ns % 1_000_000_000},
            "frame_id": frame_id,
            "format": "png",
            "data": base64.b64encode(png.tobytes()).decode("ascii"),
        }
        channel = self._channel(topic, "foxglove.CompressedImage", _COMPRESSED_IMAGE_SCHEMA)
        self._writer.add_message(channel, log_time=stamp_ns, data=json.dumps(payload).encode(),
                                 publish_time=stamp_ns, sequence=sequence)

    def write_tick(self, sequence: int, stamp_ns: int, image: np.ndarray, q: np.ndarray, dq: np.ndarray,
                   action: np.ndarray, visual_state: np.ndarray | None = None) -> None:
        """One training tick: the frame, the state measured with it, the action applied after it, and in
        simulation the task's visual state (the positions training anchors the visual latent to)."""
        self.write_image(image, stamp_ns, sequence)
        self.write_json(STATE_TOPIC, {"seq": sequence, "stamp_ns": stamp_ns, "q": q.tolist(), "dq": dq.tolist()},
                        stamp_ns, sequence)
        self.write_json(COMMAND_TOPIC, {"seq": sequence, "stamp_ns": stamp_ns, "action": action.tolist()},
                        stamp_ns, sequence)
        if visual_state is not None:
            self.write_json(VISUAL_STATE_TOPIC, {"seq": sequence, "stamp_ns": stamp_ns,
                                                 "state": visual_state.tolist()}, stamp_ns, sequence)

    def close(self) -> None:
        self._writer.finish()
        self._stream.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_image(payload: dict[str, Any], where: str) -> np.ndarray:
    try:
        raw = np.frombuffer(base64.b64decode(payload["data"]), dtype=np.uint8)
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordingError(f"{where}: image message has no valid base64 'data' ({exc})") from exc
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None:
        raise RecordingError(f"{where}: image data does not decode as {payload.get('format', '?')}")
    return image


def iter_messages(path: str | Path, topics: list[str] | None = None) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
    """Yield (topic, sequence, log_time_ns, decoded JSON payload) in log-time order."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: recording not found")
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream)
            for _schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                try:
                    payload = json.loads(message.data)
                except ValueError as exc:
                    raise RecordingError(f"{path}: message on {channel.topic} is not JSON ({exc})") from exc
                yield channel.topic, message.sequence, message.log_time, payload
    except RecordingError:
        raise
    except Exception as exc:  # the mcap reader raises many types on truncated or foreign files
        raise RecordingError(f"{path}: not a readable MCAP recording ({type(exc).__name__}: {exc})") from exc


def iter_images(path: str | Path, topic: str = IMAGE_TOPIC) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (sequence, stamp_ns, BGR image) for every image on `topic`."""
    for _topic, sequence, stamp, payload in iter_messages(path, [topic]):
        yield sequence, stamp, _decode_image(payload, f"{path}: {topic} seq {sequence}")


def read_episode(path: str | Path) -> Episode:
    """Load one recorded episode; ticks missing any of image, state or command are skipped. The visual state
    is loaded when the recording has any; then every tick kept must have one."""
    path = Path(path)
    images: dict[int, np.ndarray] = {}
    states: dict[int, dict[str, Any]] = {}
    commands: dict[int, dict[str, Any]] = {}
    visual_states: dict[int, dict[str, Any]] = {}
    stamps: dict[int, int] = {}
    for topic, sequence, stamp, payload in iter_messages(
            path, [IMAGE_TOPIC, STATE_TOPIC, COMMAND_TOPIC, VISUAL_STATE_TOPIC]):
        if topic == IMAGE_TOPIC:
            images[sequence] = _decode_image(payload, f"{path}: {topic} seq {sequence}")
            stamps[sequence] = stamp
        elif topic == STATE_TOPIC:
            states[sequence] = payload
        elif topic == COMMAND_TOPIC:
            commands[sequence] = payload
        else:
            visual_states[sequence] = payload
    ticks = sorted(set(images) & set(states) & set(commands))
    if not ticks:
        raise RecordingError(f"{path}: no tick has an image, a state and a command (is it an episode recording?)")
    if visual_states and not set(ticks) <= set(visual_states):
        missing = len(set(ticks) - set(visual_states))
        raise RecordingError(f"{path}: {missing} of {len(ticks)} ticks lack a {VISUAL_STATE_TOPIC} message")
    try:
        return Episode(
            path=path,
            frames=np.stack([images[t] for t in ticks]),
            q=np.asarray([states[t]["q"] for t in ticks], dtype=np.float32),
            dq=np.asarray([states[t]["dq"] for t in ticks], dtype=np.float32),
            actions=np.asarray([commands[t]["action"] for t in ticks], dtype=np.float32),
            stamps=np.asarray([stamps[t] for t in ticks], dtype=np.int64),
            visual_state=np.asarray([visual_states[t]["state"] for t in ticks], dtype=np.float32)
            if visual_states else None,
        )
    except (KeyError, ValueError) as exc:
        raise RecordingError(f"{path}: state, command or visual state messages lack 'q', 'dq', 'action' or "
                             f"'state' ({exc})") from exc
