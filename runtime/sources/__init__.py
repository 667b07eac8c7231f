"""Frame sources by URI (docs/sources.md): recordings, cameras, pipelines and controller streams."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runtime.sources.base import FrameSource, Pace, SourceError, SourceFrame

if TYPE_CHECKING:
    from runtime.link.security import LinkSecurity

__all__ = ["SCHEMES", "FrameSource", "SourceError", "SourceFrame", "open_source"]

SCHEMES = ("file", "images", "mcap", "rosbag2", "v4l2", "gst", "zmq")
# Playback rate for recordings without their own timing (image folders, videos without a frame rate).
DEFAULT_FPS = 30.0


def open_source(
    uri: str, *, pace: Pace = "realtime", loop: bool = True, fps: float = DEFAULT_FPS,
    security: LinkSecurity | None = None, min_image_size: tuple[int, int] | None = None,
) -> FrameSource:
    """Open a frame source by URI. `pace`, `loop` and `fps` apply to recordings (file, images, mcap, rosbag2),
    `security` (CURVE keys) and `min_image_size` ((height, width): smaller frames are refused and counted) to a
    controller's frame stream (zmq://)."""
    scheme, sep, rest = uri.partition(":")
    if not sep or scheme not in SCHEMES:
        raise SourceError(f"{uri}: unknown source scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")
    if not rest:
        raise SourceError(f"{uri}: nothing after '{scheme}:'")
    if not fps > 0:
        raise SourceError(f"{uri}: fps must be positive, got {fps}")
    # Imports per scheme keep cameras' and sockets' modules out of runs that do not use them.
    if scheme == "file":
        from runtime.sources.video_file import VideoFileSource

        return VideoFileSource(uri, Path(rest), pace, loop, fps)
    if scheme == "images":
        from runtime.sources.image_folder import ImageFolderSource

        return ImageFolderSource(uri, Path(rest), pace, loop, fps)
    if scheme == "mcap":
        from runtime.sources.mcap_recording import McapSource

        return McapSource(uri, Path(rest), pace, loop, fps)
    if scheme == "rosbag2":
        from runtime.sources.rosbag2 import Rosbag2Source

        return Rosbag2Source(uri, rest, pace, loop, fps)
    if scheme == "v4l2":
        from runtime.sources.opencv_device import open_v4l2

        return open_v4l2(uri, rest)
    if scheme == "gst":
        from runtime.sources.opencv_device import open_gstreamer

        return open_gstreamer(uri, rest)
    from runtime.sources.zmq_frames import ZmqFrameSource

    host, _, port = rest.removeprefix("//").rpartition(":")
    if not rest.startswith("//") or not host or not port.isdigit():
        raise SourceError(f"{uri}: expected zmq://HOST:PORT")
    return ZmqFrameSource(uri, "tcp:" + rest, security=security, min_image_size=min_image_size)
