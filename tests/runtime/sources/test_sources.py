"""Frame sources by URI: real videos, image folders, MCAP recordings and controller streams."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from runtime.link import protocol
from runtime.recording import RecordingWriter
from runtime.sources import SourceError, open_source
from runtime.sources.base import FrameSource, SourceFrame
from runtime.sources.opencv_device import CaptureDeviceSource

LEVELS = [0, 60, 120, 180, 240]  # one flat gray level per frame, so decoded frames are recognizable
SIZE = (48, 64)  # height, width


def _image(level: int) -> np.ndarray:
    return np.full((*SIZE, 3), level, dtype=np.uint8)


def _level(frame: SourceFrame) -> int:
    """The written gray level closest to a (lossily decoded) frame."""
    return min(LEVELS, key=lambda level: abs(float(frame.image.mean()) - level))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "feed.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (SIZE[1], SIZE[0]))
    assert writer.isOpened()
    for level in LEVELS:
        writer.write(_image(level))
    writer.release()
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "frames"
    path.mkdir()
    for i, level in enumerate(LEVELS):
        cv2.imwrite(str(path / f"frame_{i:03d}.png"), _image(level))
    (path / "notes.txt").write_text("not an image")
    return path


def _mcap(path: Path, spacing_ns: int, count: int = len(LEVELS)) -> Path:
    start = 1_700_000_000_000_000_000
    with RecordingWriter(path) as writer:
        for i in range(count):
            writer.write_image(_image(LEVELS[i % len(LEVELS)]), start + i * spacing_ns, sequence=i)
    return path


def _read_all(source: FrameSource, limit: int = 50) -> list[SourceFrame]:
    frames = []
    while len(frames) < limit and (frame := source.read_latest(5.0)) is not None:
        frames.append(frame)
    return frames


@pytest.fixture(params=["file", "images", "mcap"])
def recorded_uri(request: pytest.FixtureRequest, video: Path, folder: Path, tmp_path: Path) -> str:
    return {
        "file": f"file:{video}",
        "images": f"images:{folder}",
        "mcap": f"mcap:{_mcap(tmp_path / 'feed.mcap', spacing_ns=100_000_000)}",
    }[request.param]


def test_fast_pace_returns_every_frame_once_then_finishes(recorded_uri: str) -> None:
    with open_source(recorded_uri, pace="fast", loop=False) as source:
        frames = _read_all(source)
        assert [f.seq for f in frames] == [0, 1, 2, 3, 4]
        assert [_level(f) for f in frames] == LEVELS
        assert all(f.image.shape == (*SIZE, 3) and f.image.dtype == np.uint8 for f in frames)
        assert source.finished and source.read_latest(0.0) is None
        assert source.frames == 5 and source.dropped == 0


def test_looping_wraps_around_and_seq_keeps_increasing(recorded_uri: str) -> None:
    with open_source(recorded_uri, pace="fast", loop=True) as source:
        frames = [source.read_latest(1.0) for _ in range(12)]
    assert all(f is not None for f in frames)
    assert [f.seq for f in frames if f is not None] == list(range(12))
    assert [_level(f) for f in frames if f is not None] == (LEVELS * 3)[:12]
    assert not source.finished


def test_realtime_pace_returns_the_current_frame_and_counts_skipped_ones(tmp_path: Path) -> None:
    path = _mcap(tmp_path / "fast.mcap", spacing_ns=10_000_000, count=40)  # 100 fps, 0.4 s long
    with open_source(f"mcap:{path}", pace="realtime", loop=False) as source:
        first = source.read_latest(1.0)
        assert first is not None and first.seq == 0
        time.sleep(0.1)  # at least 10 frame periods pass
        later = source.read_latest(1.0)
        assert later is not None and later.seq >= 10
        assert source.dropped == later.seq - 1 and source.frames == 2
        assert later.stamp_ns - first.stamp_ns == later.seq * 10_000_000  # stamps follow the recording
        assert _level(later) == LEVELS[later.seq % len(LEVELS)]
        time.sleep(0.4)  # past the end: the last frame is still handed out, then the source is finished
        last = source.read_latest(1.0)
        assert last is not None and last.seq == 39
        assert source.read_latest(1.0) is None and source.finished
        assert source.frames + source.dropped == 40


def test_realtime_pace_waits_for_the_next_frame_instead_of_repeating(tmp_path: Path) -> None:
    path = _mcap(tmp_path / "slow.mcap", spacing_ns=3600 * 10**9, count=2)  # one frame per hour
    with open_source(f"mcap:{path}", pace="realtime") as source:
        assert source.read_latest(1.0) is not None
        assert source.read_latest(0.05) is None  # nothing new: no repeat of the old frame
        assert not source.finished and source.frames == 1 and source.dropped == 0


def test_realtime_looping_continues_past_the_end(video: Path) -> None:
    with open_source(f"file:{video}", pace="realtime", loop=True) as source:  # 10 fps, 0.5 s per loop
        assert source.read_latest(1.0) is not None
        time.sleep(0.6)
        frame = source.read_latest(1.0)
        assert frame is not None and frame.seq >= 6  # into the second loop
        assert _level(frame) == LEVELS[frame.seq % len(LEVELS)]
        assert source.dropped == frame.seq - 1


def test_zmq_frames_count_gaps_as_drops_and_bad_messages_without_raising(zmq_context: zmq.Context) -> None:
    publisher = zmq_context.socket(zmq.PUB)
    publisher.bind("tcp://127.0.0.1:*")
    endpoint = publisher.getsockopt_string(zmq.LAST_ENDPOINT)

    def frame(seq: int) -> bytes:
        return protocol.encode(protocol.Frame(seq=seq, stamp=1000 + seq, image=_image(LEVELS[seq % 5])))

    with open_source("zmq:" + endpoint.removeprefix("tcp:")) as source:
        seq = 0
        while (first := source.read_latest(0.02)) is None and seq < 500:  # until the SUB is connected
            publisher.send(frame(seq))
            seq += 1
        assert first is not None and first.stamp_ns == 1000 + first.seq
        dropped_before = source.dropped  # frames sent while connecting do not count

        for payload in (b"garbage", protocol.encode(protocol.Stop(seq=0, stamp_send=0, reason="x"))):
            publisher.send(payload)
            deadline = time.monotonic() + 5
            bad_before = source.bad_messages
            while source.bad_messages == bad_before and time.monotonic() < deadline:
                assert source.read_latest(0.05) is None
        assert source.bad_messages == 2 and "unexpected message type 'stop'" in str(source.last_error)

        base = first.seq + 1
        for i in range(base, base + 10):  # a burst: the conflating socket keeps only the newest
            publisher.send(frame(i))
        received = []
        while not received or received[-1].seq != base + 9:
            got = source.read_latest(5.0)
            assert got is not None
            received.append(got)
        assert len(received) + source.dropped - dropped_before == 10
        assert _level(received[-1]) == LEVELS[(base + 9) % 5]


def test_capture_thread_keeps_only_the_newest_frame(video: Path, wait_until: Callable[..., bool]) -> None:
    """The grabber used for cameras and GStreamer, exercised on a file read as fast as it decodes."""
    source = CaptureDeviceSource(f"test:{video}", str(video), cv2.CAP_FFMPEG)
    try:
        assert wait_until(lambda: source.dropped == 4)  # nobody reads: each frame supersedes the last
        last = source.read_latest(1.0)
        assert last is not None and last.seq == 4 and _level(last) == LEVELS[-1]
        assert source.frames == 1
        assert source.read_latest(5.0) is None and source.finished  # the file (the "camera") ended
    finally:
        source.close()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp:feed.mp4", "unknown source scheme 'ftp'"),
        ("feed.mp4", "unknown source scheme"),
        ("file:", "nothing after 'file:'"),
        ("file:/no/such/feed.mp4", "no such video file /no/such/feed.mp4"),
        ("images:/no/such/folder", "no such folder /no/such/folder"),
        ("mcap:/no/such/run.mcap", "/no/such/run.mcap"),
        ("v4l2:/dev/video99", "no such device /dev/video99"),
        ("v4l2:camera", "expected v4l2:/dev/videoN or v4l2:N"),
        ("zmq://127.0.0.1", "expected zmq://HOST:PORT"),
        ("zmq:127.0.0.1:5557", "expected zmq://HOST:PORT"),
    ],
)
def test_bad_uris_are_refused_naming_the_uri(uri: str, message: str) -> None:
    with pytest.raises(SourceError, match=message) as raised:
        open_source(uri)
    assert uri in str(raised.value)


def test_gstreamer_without_backend_says_so() -> None:
    if cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        pytest.skip("this OpenCV has GStreamer; the refusal applies only to builds without it")
    with pytest.raises(SourceError, match="no GStreamer backend"):
        open_source("gst:videotestsrc ! appsink")


def test_corrupt_video_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=str(path)):
        open_source(f"file:{path}")


def test_empty_folder_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no images here")
    with pytest.raises(SourceError, match=f"folder {tmp_path} holds no image files"):
        open_source(f"images:{tmp_path}")


def test_unreadable_image_is_reported_naming_the_file(folder: Path) -> None:
    broken = folder / "frame_002.png"
    broken.write_bytes(b"\x89PNG but not really")
    with open_source(f"images:{folder}", pace="fast") as source:
        assert source.read_latest(1.0) is not None
        assert source.read_latest(1.0) is not None
        with pytest.raises(SourceError, match=str(broken)):
            source.read_latest(1.0)


def test_mcap_that_is_not_a_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "random.mcap"
    path.write_bytes(b"definitely not mcap" * 10)
    with pytest.raises(SourceError, match=str(path)):
        open_source(f"mcap:{path}")


def test_mcap_without_images_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state_only.mcap"
    with RecordingWriter(path) as writer:
        writer.write_json("/robot/state", {"q": [0.0, 0.0]}, stamp_ns=1, sequence=0)
    with pytest.raises(SourceError, match="has no images on /camera/image"):
        open_source(f"mcap:{path}")
