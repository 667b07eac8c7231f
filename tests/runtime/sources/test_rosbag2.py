"""`rosbag2:` sources on real bags written here with rosbags, in both storages."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from runtime.sources import SourceError, open_source
from runtime.sources.base import FrameSource, SourceFrame

rosbags = pytest.importorskip("rosbags", reason="rosbag2 sources need the observe extra (rosbags)")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

STORE = get_typestore(Stores.ROS2_HUMBLE)  # another distro's store than the runtime's: the types agree
T = STORE.types
START_NS = 1_700_000_000_000_000_000
SIZE = (6, 8)  # height, width
COUNT = 5
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


def _bgr(i: int) -> np.ndarray:
    """Frame i: blue, green and red differ and a gradient runs across, so channel order and layout show."""
    image = np.zeros((*SIZE, 3), np.uint8)
    image[..., 0] = 10 + 40 * i
    image[..., 1] = np.arange(SIZE[1], dtype=np.uint8) * 20
    image[..., 2] = 250 - 40 * i
    return image


def _header(stamp_ns: int) -> Any:
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9,
                                                                             nanosec=stamp_ns % 10**9),
                                    frame_id="camera")


def _raw(image: np.ndarray, encoding: str, stamp_ns: int, padding: int = 0) -> Any:
    alpha = np.full((*image.shape[:2], 1), 255, np.uint8)
    pixels = {"bgr8": image, "rgb8": image[..., ::-1], "mono8": image[..., :1],
              "bgra8": np.concatenate([image, alpha], axis=2),
              "rgba8": np.concatenate([image[..., ::-1], alpha], axis=2)}[encoding]
    height, width, channels = pixels.shape
    rows = np.zeros((height, width * channels + padding), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return T["sensor_msgs/msg/Image"](header=_header(stamp_ns), height=height, width=width, encoding=encoding,
                                      is_bigendian=0, step=width * channels + padding, data=rows.reshape(-1))


def _compressed(image: np.ndarray, stamp_ns: int) -> Any:
    ok, png = cv2.imencode(".png", image)
    assert ok
    return T["sensor_msgs/msg/CompressedImage"](header=_header(stamp_ns), format="png", data=png.reshape(-1))


def _write_bag(path: Path, storage: str, topics: dict[str, tuple[str, Sequence[tuple[int, Any]]]]) -> Path:
    """A bag with, per topic, its type and (log time, message or raw CDR bytes) pairs."""
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage]) as writer:
        for topic, (msgtype, messages) in topics.items():
            connection = writer.add_connection(topic, msgtype, typestore=STORE)
            for stamp, message in messages:
                data = message if isinstance(message, bytes) else STORE.serialize_cdr(message, msgtype)
                writer.write(connection, stamp, data)
    return path


def _feed(encoding: str, spacing_ns: int = 100_000_000, count: int = COUNT) -> tuple[str, list[tuple[int, Any]]]:
    stamps = [START_NS + i * spacing_ns for i in range(count)]
    if encoding == "compressed":
        return "sensor_msgs/msg/CompressedImage", [(s, _compressed(_bgr(i % COUNT), s)) for i, s in enumerate(stamps)]
    return "sensor_msgs/msg/Image", [(s, _raw(_bgr(i % COUNT), encoding, s)) for i, s in enumerate(stamps)]


def _read_all(source: FrameSource, limit: int = 50) -> list[SourceFrame]:
    frames = []
    while len(frames) < limit and (frame := source.read_latest(5.0)) is not None:
        frames.append(frame)
    return frames


@pytest.fixture(params=list(STORAGES))
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8", "bgra8", "rgba8", "compressed"])
def test_every_frame_decodes_to_bgr_in_order(tmp_path: Path, storage: str, encoding: str) -> None:
    bag = _write_bag(tmp_path / "bag", storage, {"/camera/image_raw": _feed(encoding)})
    with open_source(f"rosbag2:{bag}?topic=/camera/image_raw", pace="fast", loop=False) as source:
        frames = _read_all(source)
        assert source.finished and source.frames == COUNT and source.dropped == 0
    assert [f.seq for f in frames] == list(range(COUNT))
    for i, frame in enumerate(frames):
        expected = _bgr(i)
        if encoding == "mono8":  # one channel, the written blue one, replicated
            expected = np.repeat(expected[..., :1], 3, axis=2)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (*SIZE, 3)
        np.testing.assert_array_equal(frame.image, expected)


def test_the_only_image_topic_is_taken_without_naming_it_and_the_storage_file_opens_alone(tmp_path: Path,
                                                                                          storage: str) -> None:
    bag = _write_bag(tmp_path / "bag", storage, {
        "/camera/image_raw/compressed": _feed("compressed"),
        "/joint_states": ("sensor_msgs/msg/JointState", [(START_NS, T["sensor_msgs/msg/JointState"](
            header=_header(START_NS), name=["a"], position=np.zeros(1), velocity=np.zeros(1),
            effort=np.zeros(1)))]),
    })
    storage_file = next(p for p in bag.iterdir() if p.suffix in (".db3", ".mcap"))
    for uri in (f"rosbag2:{bag}", f"rosbag2:{storage_file}"):
        with open_source(uri, pace="fast", loop=False) as source:
            assert len(_read_all(source)) == COUNT


def test_rows_padded_beyond_the_width_are_cropped(tmp_path: Path) -> None:
    message = _raw(_bgr(2), "rgb8", START_NS, padding=5)
    bag = _write_bag(tmp_path / "bag", "sqlite3", {"/cam": ("sensor_msgs/msg/Image", [(START_NS, message)])})
    with open_source(f"rosbag2:{bag}", pace="fast", loop=False) as source:
        frame = source.read_latest(1.0)
    assert frame is not None
    np.testing.assert_array_equal(frame.image, _bgr(2))


def test_looping_wraps_around_and_seq_keeps_increasing(tmp_path: Path, storage: str) -> None:
    bag = _write_bag(tmp_path / "bag", storage, {"/cam": _feed("bgr8")})
    with open_source(f"rosbag2:{bag}", pace="fast", loop=True) as source:
        frames = [source.read_latest(1.0) for _ in range(12)]
    assert [f.seq for f in frames if f is not None] == list(range(12))
    for frame in frames:
        assert frame is not None
        np.testing.assert_array_equal(frame.image, _bgr(frame.seq % COUNT))


def test_realtime_pace_follows_the_log_times(tmp_path: Path) -> None:
    """Frames 10 ms apart, then one an hour later: the replay's stamps and waits are the bag's log times."""
    _msgtype, feed = _feed("bgr8")
    log_times = [START_NS, START_NS + 10_000_000, START_NS + 3600 * 10**9]
    messages = [(stamp, message) for stamp, (_s, message) in zip(log_times, feed, strict=False)]
    bag = _write_bag(tmp_path / "bag", "mcap", {"/cam": ("sensor_msgs/msg/Image", messages)})
    with open_source(f"rosbag2:{bag}", pace="realtime", loop=False) as source:
        first = source.read_latest(1.0)
        time.sleep(0.05)
        second = source.read_latest(1.0)
        assert first is not None and second is not None and (first.seq, second.seq) == (0, 1)
        assert second.stamp_ns - first.stamp_ns == 10_000_000
        np.testing.assert_array_equal(second.image, _bgr(1))
        assert source.read_latest(0.05) is None and not source.finished  # the third is an hour away
        assert source.frames == 2 and source.dropped == 0


def _refused(uri: str) -> str:
    with pytest.raises(SourceError) as raised:
        open_source(uri, pace="fast").close()
    message = str(raised.value)
    assert message.startswith(uri)
    return message


def test_missing_and_unreadable_bags_are_refused_naming_them(tmp_path: Path) -> None:
    assert "no such rosbag2 /no/such/bag" in _refused("rosbag2:/no/such/bag")
    fake = tmp_path / "fake.db3"
    fake.write_bytes(b"not a database" * 100)
    assert f"{fake} is not a readable rosbag2" in _refused(f"rosbag2:{fake}")
    folder = tmp_path / "empty"
    folder.mkdir()
    assert f"{folder} is not a readable rosbag2" in _refused(f"rosbag2:{folder}")


def test_topics_that_are_missing_ambiguous_or_not_images_are_refused_listing_the_image_topics(
        tmp_path: Path, storage: str) -> None:
    bag = _write_bag(tmp_path / "bag", storage, {
        "/left/image_raw": _feed("bgr8"),
        "/right/image_raw/compressed": _feed("compressed"),
        "/status": ("std_msgs/msg/String", [(START_NS, T["std_msgs/msg/String"](data="ok"))]),
    })
    listed = "/left/image_raw (sensor_msgs/msg/Image), /right/image_raw/compressed (sensor_msgs/msg/CompressedImage)"
    assert f"has 2 image topics ({listed}); choose one with ?topic=TOPIC" in _refused(f"rosbag2:{bag}")
    assert f"has no topic /front; image topics present: {listed}" in _refused(f"rosbag2:{bag}?topic=/front")
    assert "/status in" in (message := _refused(f"rosbag2:{bag}?topic=/status"))
    assert "is std_msgs/msg/String, not sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage" in message
    assert "unknown option(s) rate" in _refused(f"rosbag2:{bag}?topic=/left/image_raw&rate=2")


def test_unsupported_encodings_and_corrupt_data_are_reported_naming_the_topic(tmp_path: Path, storage: str) -> None:
    wrong = _raw(_bgr(0), "bgr8", START_NS)
    wrong.encoding = "16UC1"
    short = _raw(_bgr(0), "bgr8", START_NS)
    short.data = short.data[:-7]
    garbage = T["sensor_msgs/msg/CompressedImage"](header=_header(START_NS), format="jpeg",
                                                   data=np.frombuffer(b"\xff\xd8 not a jpeg", np.uint8))
    bag = _write_bag(tmp_path / "bag", storage, {
        "/depth": ("sensor_msgs/msg/Image", [(START_NS, wrong)]),
        "/short": ("sensor_msgs/msg/Image", [(START_NS, short)]),
        "/garbage/compressed": ("sensor_msgs/msg/CompressedImage", [(START_NS, garbage)]),
        "/truncated": ("sensor_msgs/msg/Image", [(START_NS, b"\x00\x01\x00\x00\x07")]),
    })
    expected = {
        "/depth": "/depth message 0: Image encoding '16UC1' is not supported; expected one of bgr8, rgb8, mono8",
        "/short": "/short message 0: Image of 8x6 bgr8 with step 24 has 137 data bytes; expected height x step = 144",
        "/garbage/compressed": "/garbage/compressed message 0: CompressedImage data does not decode (format 'jpeg')",
        "/truncated": "/truncated message 0 does not deserialize as sensor_msgs/msg/Image",
    }
    for topic, message in expected.items():
        with open_source(f"rosbag2:{bag}?topic={topic}", pace="fast") as source, \
                pytest.raises(SourceError, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
            source.read_latest(1.0)
        assert str(raised.value).startswith(f"rosbag2:{bag}?topic={topic}")
