"""A run's or episode's MCAP recording as a ROS 2 bag (docs/rosbag2.md); `edgeloop export rosbag2` runs it.

The recording is read only through runtime/recording.py's readers, so this does not depend on how the MCAP
stores its messages. Topics written, each message stamped with the time it describes and logged at its MCAP log
time:

- `/camera/image` (sensor_msgs/msg/Image, bgr8) or `/camera/image/compressed` (sensor_msgs/msg/CompressedImage,
  png or jpeg): the frames, stamped with their capture time;
- `/joint_states` (sensor_msgs/msg/JointState): position q and velocity dq, stamped with the controller's own
  stamp of the state;
- `/robot/command` (sensor_msgs/msg/JointState, velocity only): each command's action, the joint-velocity
  targets in rad/s of docs/protocol.md, named like the joints;
- `/robot/stop` (std_msgs/msg/String): each stop's reason.
"""

from __future__ import annotations

import heapq
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.recording import COMMAND_TOPIC, IMAGE_TOPIC, STATE_TOPIC, STOP_TOPIC, iter_images, iter_messages
from runtime.sources.rosbag2 import COMPRESSED_IMAGE, IMAGE, typestore

STORAGES = ("sqlite3", "mcap")
IMAGE_FORMATS = ("raw", "png", "jpeg")  # raw: sensor_msgs/Image bgr8; else CompressedImage in that format

JOINT_STATES_TOPIC = "/joint_states"
JOINT_STATE = "sensor_msgs/msg/JointState"
STRING = "std_msgs/msg/String"


class ExportError(ValueError):
    """A recording that cannot be exported, or an output that cannot be written; the text names which."""


def recording_of(run_or_recording: Path) -> Path:
    """A run folder's run.mcap, or the MCAP file itself."""
    return run_or_recording / "run.mcap" if run_or_recording.is_dir() else run_or_recording


def _timed(path: Path) -> Iterator[tuple[int, int, str, Any]]:
    """(log time, order, topic, payload) of everything exported, in log-time order; images' payload is the image."""
    images = ((stamp, 0, IMAGE_TOPIC, image) for _seq, stamp, image in iter_images(path))
    others = ((stamp, 1, topic, payload)
              for topic, _seq, stamp, payload in iter_messages(path, [STATE_TOPIC, COMMAND_TOPIC, STOP_TOPIC]))
    return heapq.merge(images, others, key=lambda item: (item[0], item[1]))


class _BagWriter:
    """The ROS 2 messages of one export, built with rosbags' type store and written to one bag."""

    def __init__(self, out: Path, storage: str, images: str, joint_names: list[str] | None) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.store = typestore()
        self.types = self.store.types
        self.images = images
        self.joint_names = joint_names
        plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
        self.writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self.writer.open()
        self.connections: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.msgtypes: dict[str, str] = {}

    def _header(self, stamp_ns: int, frame_id: str = "") -> Any:
        time = self.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 1_000_000_000,
                                                         nanosec=stamp_ns % 1_000_000_000)
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def write(self, topic: str, msgtype: str, message: Any, log_time_ns: int) -> None:
        if topic not in self.connections:
            self.connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.store)
            self.msgtypes[topic] = msgtype
            self.counts[topic] = 0
        self.writer.write(self.connections[topic], log_time_ns, self.store.serialize_cdr(message, msgtype))
        self.counts[topic] += 1

    def image(self, image: np.ndarray, stamp_ns: int) -> None:
        header = self._header(stamp_ns, "camera")
        if self.images == "raw":
            height, width = image.shape[:2]
            message = self.types[IMAGE](header=header, height=height, width=width, encoding="bgr8", is_bigendian=0,
                                        step=width * 3, data=np.ascontiguousarray(image).reshape(-1))
            self.write(IMAGE_TOPIC, IMAGE, message, stamp_ns)
            return
        ok, encoded = cv2.imencode("." + self.images, image)
        if not ok:
            raise ExportError(f"an image of shape {image.shape} could not be {self.images}-encoded")
        message = self.types[COMPRESSED_IMAGE](header=header, format=self.images, data=encoded.reshape(-1))
        self.write(IMAGE_TOPIC + "/compressed", COMPRESSED_IMAGE, message, stamp_ns)

    def _names(self, count: int, where: str) -> list[str]:
        if self.joint_names is None:
            return [f"joint_{i}" for i in range(count)]
        if len(self.joint_names) != count:
            raise ExportError(f"{where} has {count} joint value(s) but --joint-names gives {len(self.joint_names)}")
        return self.joint_names

    def joint_state(self, topic: str, stamp_ns: int, log_time_ns: int, where: str, position: list[float],
                    velocity: list[float]) -> None:
        count = max(len(position), len(velocity))
        message = self.types[JOINT_STATE](header=self._header(stamp_ns), name=self._names(count, where),
                                          position=np.asarray(position, np.float64),
                                          velocity=np.asarray(velocity, np.float64),
                                          effort=np.zeros(0, np.float64))
        self.write(topic, JOINT_STATE, message, log_time_ns)

    def stop(self, reason: str, log_time_ns: int) -> None:
        self.write(STOP_TOPIC, STRING, self.types[STRING](data=reason), log_time_ns)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def export_rosbag2(recording: Path, out: Path, *, storage: str = "sqlite3", images: str = "raw",
                   joint_names: list[str] | None = None) -> dict[str, tuple[str, int]]:
    """Write `recording` (an MCAP, or a run folder holding run.mcap) as a rosbag2 folder `out`; returns each
    topic written with its message type and count. RecordingError for an unreadable recording, ExportError for
    anything else; a failed export leaves no bag behind."""
    if storage not in STORAGES:
        raise ExportError(f"storage must be one of {', '.join(STORAGES)}, not {storage!r}")
    if images not in IMAGE_FORMATS:
        raise ExportError(f"images must be one of {', '.join(IMAGE_FORMATS)}, not {images!r}")
    path = recording_of(recording)
    if out.exists():
        raise ExportError(f"{out} exists already; rosbag2 bags are written to a new folder")
    try:
        import rosbags  # noqa: F401 - only to say what is missing before anything is written
    except ImportError as exc:
        raise ExportError("exporting to rosbag2 needs the rosbags package (pip install 'edgeloop[observe]')") from exc
    bag = _BagWriter(out, storage, images, joint_names)
    try:
        for log_time, _order, topic, payload in _timed(path):
            where = f"{path}: {topic} at log time {log_time}"
            if topic == IMAGE_TOPIC:
                bag.image(payload, log_time)
                continue
            try:
                if topic == STATE_TOPIC:
                    bag.joint_state(JOINT_STATES_TOPIC, int(payload.get("stamp_ns", log_time)), log_time, where,
                                    payload["q"], payload["dq"])
                elif topic == COMMAND_TOPIC:
                    bag.joint_state(COMMAND_TOPIC, int(payload.get("stamp_ns", log_time)), log_time, where,
                                    [], payload["action"])
                else:
                    bag.stop(str(payload["reason"]), log_time)
            except ExportError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                raise ExportError(f"{where}: message lacks a field or has one of the wrong type ({exc!r})") from exc
        if not bag.counts:
            raise ExportError(f"{path}: nothing to export (no {IMAGE_TOPIC}, {STATE_TOPIC}, {COMMAND_TOPIC} or "
                              f"{STOP_TOPIC} messages)")
        bag.close()
    except BaseException:
        bag.abort()
        shutil.rmtree(out, ignore_errors=True)
        raise
    return {topic: (bag.msgtypes[topic], count) for topic, count in bag.counts.items()}
