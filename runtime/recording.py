"""MCAP recordings: writer for runs and episodes, readers for training data and the ``mcap:`` source.

Every topic has the schema and encoding that runtime/channels.py gives it: images as protobuf
`foxglove.CompressedImage` (PNG: lossless, so training reads back the very pixels the camera gave), the camera's
pose as `foxglove.FrameTransform`, state, commands, plans, goals and the rest as JSON with a JSON Schema. All
messages of one control tick share the MCAP ``sequence`` number, which is how readers align them.

Recordings made before the images went protobuf (images as base64 PNG inside JSON) still read.
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
from google.protobuf.message import Message
from mcap.reader import make_reader
from mcap.records import Schema
from mcap.writer import CompressionType, Writer
from mcap_protobuf.decoder import DecoderFactory

from runtime.channels import (
    CAMERA_TRANSFORM_TOPIC,
    COMMAND_TOPIC,
    IMAGE_TOPIC,
    STATE_TOPIC,
    STOP_TOPIC,
    VISUAL_STATE_TOPIC,
    channel_spec,
    encode_camera_transform,
    encode_image,
    encode_json,
)

__all__ = ["COMMAND_TOPIC", "IMAGE_TOPIC", "STATE_TOPIC", "STOP_TOPIC", "VISUAL_STATE_TOPIC", "Episode",
           "RecordingError", "RecordingWriter", "iter_images", "iter_messages", "read_episode"]


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
    """Appends stamped messages to one MCAP file (zstd chunks), each topic with its schema from runtime/channels.py."""

    def __init__(self, path: str | Path, profile: str = "edgeloop") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream: BinaryIO = self.path.open("wb")
        self._writer = Writer(self._stream, compression=CompressionType.ZSTD)
        self._writer.start(profile=profile, library="edgeloop")
        self._schemas: dict[str, int] = {}  # by schema name: the goal image shares the camera's
        self._channels: dict[str, int] = {}

    def _channel(self, topic: str) -> int:
        if topic not in self._channels:
            try:
                spec = channel_spec(topic)
            except ValueError as exc:
                raise RecordingError(f"{self.path}: {exc}") from exc
            if spec.schema_name not in self._schemas:
                self._schemas[spec.schema_name] = self._writer.register_schema(
                    name=spec.schema_name, encoding=spec.schema_encoding, data=spec.schema_data)
            self._channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding=spec.message_encoding, schema_id=self._schemas[spec.schema_name])
        return self._channels[topic]

    def _add(self, topic: str, data: bytes, stamp_ns: int, sequence: int) -> None:
        self._writer.add_message(self._channel(topic), log_time=stamp_ns, data=data, publish_time=stamp_ns,
                                 sequence=sequence)

    def write_json(self, topic: str, payload: dict[str, Any], stamp_ns: int, sequence: int) -> None:
        """A message on one of the JSON topics (state, command, stop, latent, plan, goal, visual state)."""
        self._add(topic, encode_json(payload), stamp_ns, sequence)

    def write_image(self, image: np.ndarray, stamp_ns: int, sequence: int, topic: str = IMAGE_TOPIC) -> None:
        """A BGR uint8 image as a PNG `foxglove.CompressedImage` in the camera's frame."""
        try:
            data = encode_image(image, stamp_ns)
        except ValueError as exc:
            raise RecordingError(f"{self.path}: {exc}") from exc
        self._add(topic, data, stamp_ns, sequence)

    def write_camera_transform(self, base_T_camera: np.ndarray, stamp_ns: int) -> None:
        """The camera's pose in the robot base frame (4x4, from its extrinsic calibration), once per recording."""
        self._add(CAMERA_TRANSFORM_TOPIC, encode_camera_transform(base_T_camera, stamp_ns), stamp_ns, 0)

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
    """The BGR image of a `foxglove.CompressedImage`: protobuf (`data` bytes) or, in older recordings, JSON (`data`
    base64)."""
    data = payload.get("data")
    if not isinstance(data, (bytes, str)) or not data:
        raise RecordingError(f"{where}: image message has no 'data'")
    try:
        raw = data if isinstance(data, bytes) else base64.b64decode(data)
    except ValueError as exc:
        raise RecordingError(f"{where}: image message has no valid 'data' ({exc})") from exc
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RecordingError(f"{where}: image data does not decode as {payload.get('format', '?')}")
    return image


def _message_dict(message: Message) -> dict[str, Any]:
    """A protobuf message as a dict of its fields (nested messages as dicts, bytes as bytes)."""
    fields: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is None:
            fields[field.name] = list(value) if field.is_repeated else value
        else:
            fields[field.name] = [_message_dict(v) for v in value] if field.is_repeated else _message_dict(value)
    return fields


class _Decoder:
    """A message's bytes as a dict, by its channel's message encoding (json or protobuf) and schema."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._protobuf = DecoderFactory()

    def __call__(self, schema: Schema | None, encoding: str, topic: str, data: bytes) -> dict[str, Any]:
        if encoding == "json":
            try:
                payload: dict[str, Any] = json.loads(data)
            except ValueError as exc:
                raise RecordingError(f"{self.path}: message on {topic} is not JSON ({exc})") from exc
            return payload
        decoder = self._protobuf.decoder_for(encoding, schema)
        if decoder is None:
            raise RecordingError(f"{self.path}: {topic} has message encoding {encoding!r} with schema "
                                 f"{schema.name if schema else None!r}; edgeloop reads json and protobuf")
        return _message_dict(decoder(data))


def iter_messages(path: str | Path, topics: list[str] | None = None) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
    """Yield (topic, sequence, log_time_ns, payload) in log-time order: a JSON message's payload as it was
    written, a protobuf message's fields as a dict (an image's `data` as bytes)."""
    path = Path(path)
    if not path.is_file():
        raise RecordingError(f"{path}: recording not found")
    decode = _Decoder(path)
    try:
        with path.open("rb") as stream:
            reader = make_reader(stream)
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                yield (channel.topic, message.sequence, message.log_time,
                       decode(schema, channel.message_encoding, channel.topic, message.data))
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
