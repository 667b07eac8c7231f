"""`rosbag2:PATH?topic=TOPIC`: the camera images of a ROS 2 bag (sqlite3 or mcap storage), paced by their log times.

`rosbags` reads the bag without a ROS install; it is an optional extra (`observe`) and imported only here and by
the export (runtime/offline/rosbag2_export.py), which shares the type store and the message type names below.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import cv2
import numpy as np

from runtime.sources.base import Pace, RecordedSource, SourceError

if TYPE_CHECKING:
    from rosbags.interfaces import Connection
    from rosbags.rosbag2 import Reader
    from rosbags.typesys.store import Typestore

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# Raw encodings we decode: channels per pixel and the OpenCV conversion to BGR (None: already BGR).
_ENCODINGS: dict[str, tuple[int, int | None]] = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
}
ENCODINGS = tuple(_ENCODINGS)


def typestore() -> Typestore:
    """The ROS 2 message types (Jazzy's; Image, CompressedImage and JointState are the same in every distro)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _parse_uri(uri: str, rest: str) -> tuple[Path, str | None]:
    path, _, query = rest.partition("?")
    options = parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(options) - {"topic"})
    if unknown:
        raise SourceError(f"{uri}: unknown option(s) {', '.join(unknown)}; rosbag2:PATH takes ?topic=TOPIC")
    topics = options.get("topic", [])
    if len(topics) > 1 or (topics and not topics[0]):
        raise SourceError(f"{uri}: give one topic, as rosbag2:PATH?topic=/camera/image_raw")
    return Path(path), topics[0] if topics else None


def decode_image(message: Any, msgtype: str, where: str) -> np.ndarray:
    """A deserialized Image or CompressedImage as BGR uint8 (height, width, 3); SourceError names `where`."""
    if msgtype == COMPRESSED_IMAGE:
        image = cv2.imdecode(np.asarray(message.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{where}: CompressedImage data does not decode (format {message.format!r})")
        return image
    encoding = message.encoding
    if encoding not in _ENCODINGS:
        raise SourceError(f"{where}: Image encoding {encoding!r} is not supported; expected one of "
                          f"{', '.join(ENCODINGS)}")
    channels, conversion = _ENCODINGS[encoding]
    height, width, step = int(message.height), int(message.width), int(message.step)
    data = np.asarray(message.data, dtype=np.uint8)
    if height <= 0 or width <= 0 or step < width * channels or data.size != height * step:
        raise SourceError(f"{where}: Image of {width}x{height} {encoding} with step {step} has {data.size} "
                          f"data bytes; expected height x step = {height * step}")
    pixels = data.reshape(height, step)[:, : width * channels].reshape(height, width, channels)  # rows may be padded
    return np.ascontiguousarray(pixels) if conversion is None else cv2.cvtColor(pixels, conversion)


class Rosbag2Source(RecordedSource):
    """Plays one Image or CompressedImage topic of a rosbag2 in log-time order, spaced as it was recorded."""

    def __init__(self, uri: str, rest: str, pace: Pace, loop: bool, fps: float) -> None:
        self.path, topic = _parse_uri(uri, rest)
        try:
            from rosbags.rosbag2 import Reader
        except ImportError as exc:
            raise SourceError(f"{uri}: rosbag2 sources need the rosbags package (pip install 'edgeloop[observe]')") \
                from exc
        if not self.path.exists():
            raise SourceError(f"{uri}: no such rosbag2 {self.path} (a bag folder with metadata.yaml, a .db3 or .mcap)")
        self._typestore = typestore()
        try:
            self._bag: Reader = Reader(self.path)
            self._bag.open()
        except Exception as exc:  # the storages raise many types on foreign or damaged files
            raise SourceError(f"{uri}: {self.path} is not a readable rosbag2 ({type(exc).__name__}: {exc})") from exc
        try:
            self.topic, self.msgtype, self._connections = self._pick_topic(uri, topic)
            stamps = np.asarray([stamp for _c, stamp, _d in self._messages()], dtype=np.int64)
            if len(stamps) == 0:
                raise SourceError(f"{uri}: {self.path} has no messages on {self.topic}")
            offsets = stamps - stamps[0]
            if np.any(np.diff(offsets) < 0):
                raise SourceError(f"{uri}: the log times on {self.topic} in {self.path} go backwards")
            # One loop ends one typical frame period after the last frame; `fps` when there is only one frame.
            period_ns = int(np.median(np.diff(offsets))) if len(offsets) > 1 else round(1e9 / fps)
            super().__init__(uri, offsets, period_ns, pace, loop)
        except BaseException:
            self._bag.close()
            raise
        self._iterator: Iterator[tuple[Connection, int, bytes]] | None = None
        self._next_index = 0  # index the iterator yields next

    def _pick_topic(self, uri: str, topic: str | None) -> tuple[str, str, list[Connection]]:
        topics = {name: info.msgtype for name, info in self._bag.topics.items()}
        images = sorted(name for name, msgtype in topics.items() if msgtype in IMAGE_TYPES)
        present = ", ".join(f"{name} ({topics[name]})" for name in images) or "none"
        if topic is None:
            if len(images) != 1:
                raise SourceError(f"{uri}: {self.path} has {len(images)} image topics ({present}); "
                                  f"choose one with ?topic=TOPIC")
            topic = images[0]
        if topic not in topics:
            raise SourceError(f"{uri}: {self.path} has no topic {topic}; image topics present: {present}")
        msgtype = topics[topic]
        if msgtype not in IMAGE_TYPES:
            raise SourceError(f"{uri}: {topic} in {self.path} is {msgtype}, not {IMAGE} or {COMPRESSED_IMAGE}; "
                              f"image topics present: {present}")
        return topic, msgtype, [c for c in self._bag.connections if c.topic == topic]

    def _messages(self) -> Iterator[tuple[Connection, int, bytes]]:
        try:
            yield from self._bag.messages(connections=self._connections)
        except Exception as exc:  # a damaged database or MCAP chunk, found when it is reached
            raise SourceError(f"{self.uri}: {self.path} cannot be read ({type(exc).__name__}: {exc})") from exc

    def _read(self, index: int) -> np.ndarray:
        if self._iterator is None or index < self._next_index:  # first read, or starting over
            self._iterator = self._messages()
            self._next_index = 0
        where = f"{self.uri}: {self.topic} message {index}"
        for _connection, _stamp, data in self._iterator:
            self._next_index += 1
            if self._next_index > index:
                try:
                    message = self._typestore.deserialize_cdr(data, self.msgtype)
                except Exception as exc:  # the CDR decoder raises many types on truncated or foreign data
                    raise SourceError(f"{where} does not deserialize as {self.msgtype} "
                                      f"({type(exc).__name__}: {exc})") from exc
                return decode_image(message, self.msgtype, where)
        raise SourceError(f"{self.uri}: {self.path} ended before {self.topic} message {index}")

    def close(self) -> None:
        self._iterator = None
        if self._bag.is_open:
            self._bag.close()
