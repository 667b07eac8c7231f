"""`v4l2:` cameras and `gst:` pipelines: live capture through OpenCV with a grabber thread.

A live camera produces frames whether or not anyone reads them, and its driver queues them; reading
them in order would hand the loop an ever older view. A thread therefore reads continuously and keeps
only the newest frame, counting each one superseded before the loop took it as dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2

from runtime.sources.base import FrameSource, SourceError, SourceFrame

log = logging.getLogger(__name__)

# A live capture that fails this many reads in a row has ended (unplugged camera, EOS of a pipeline).
_FAILED_READS_TO_END = 50


class CaptureDeviceSource(FrameSource):
    """Any cv2.VideoCapture target read by a grabber thread that keeps only the newest frame."""

    def __init__(self, uri: str, target: str | int, backend: int) -> None:
        super().__init__(uri)
        self._capture = cv2.VideoCapture(target, backend)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"{uri}: OpenCV cannot open {target!r} (device missing, busy or not a camera?)")
        self._ready = threading.Condition()
        self._newest: SourceFrame | None = None  # produced and not yet returned
        self._produced = 0
        self._ended = False  # the grabber has stopped: no frame will come after _newest
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._grab, name=f"grab {uri}", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        failures = 0
        while not self._stopping.is_set() and failures < _FAILED_READS_TO_END:
            ok, image = self._capture.read()
            stamp = time.time_ns()  # drivers' own stamps are not portable across backends
            if not ok or image is None:
                failures += 1
                time.sleep(0.01)
                continue
            failures = 0
            with self._ready:
                if self._newest is not None:
                    self.dropped += 1
                self._newest = SourceFrame(seq=self._produced, stamp_ns=stamp, image=image)
                self._produced += 1
                self._ready.notify_all()
        if not self._stopping.is_set():
            log.warning("%s: capture stopped delivering frames; the source has ended", self.uri)
        with self._ready:
            self._ended = True
            self._ready.notify_all()  # wake a reader waiting for a frame that will not come

    def read_latest(self, timeout_s: float) -> SourceFrame | None:
        with self._ready:
            self._ready.wait_for(lambda: self._newest is not None or self._ended, timeout_s)
            frame, self._newest = self._newest, None
            if frame is None:
                self.finished = self._ended
                return None
            self.frames += 1
            return frame

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2.0)  # a blocked driver read returns within a frame period or so
        self._capture.release()


def open_v4l2(uri: str, device: str) -> CaptureDeviceSource:
    """`v4l2:/dev/videoN` or `v4l2:N`."""
    target: str | int = int(device) if device.isdigit() else device
    if isinstance(target, str) and not target.startswith("/dev/"):
        raise SourceError(f"{uri}: expected v4l2:/dev/videoN or v4l2:N, got {device!r}")
    if isinstance(target, str) and not Path(target).exists():
        raise SourceError(f"{uri}: no such device {target}")
    return CaptureDeviceSource(uri, target, cv2.CAP_V4L2)


def open_gstreamer(uri: str, pipeline: str) -> CaptureDeviceSource:
    """`gst:PIPELINE`, a GStreamer pipeline ending in appsink (needs OpenCV built with GStreamer)."""
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError(
            f"{uri}: this OpenCV has no GStreamer backend (pip wheels lack it; use the system's or JetPack's)"
        )
    return CaptureDeviceSource(uri, pipeline, cv2.CAP_GSTREAMER)
