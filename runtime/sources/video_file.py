"""`file:PATH`: a video file decoded with OpenCV, paced by its frame rate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.sources.base import Pace, RecordedSource, SourceError


class VideoFileSource(RecordedSource):
    """Plays a video file; frame i is due i / fps after the first (fps from the file, else `fps`)."""

    def __init__(self, uri: str, path: Path, pace: Pace, loop: bool, fps: float) -> None:
        self.path = path
        if not path.is_file():
            raise SourceError(f"{uri}: no such video file {path}")
        capture = self._open(uri)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        file_fps = capture.get(cv2.CAP_PROP_FPS)
        ok, _first = capture.read()  # a file can open and still not decode: try one frame now
        capture.release()
        if not ok or count <= 0:
            raise SourceError(f"{uri}: {path} has no decodable video frames (corrupt or unsupported codec?)")
        self.fps = file_fps if file_fps > 0 else fps
        period_ns = round(1e9 / self.fps)
        super().__init__(uri, np.arange(count, dtype=np.int64) * period_ns, period_ns, pace, loop)
        self._capture: cv2.VideoCapture | None = None
        self._next_index = 0  # index the capture decodes next

    def _open(self, uri: str) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not capture.isOpened():
            raise SourceError(f"{uri}: cannot open {self.path} as a video (corrupt or unsupported format?)")
        return capture

    def _read(self, index: int) -> np.ndarray:
        if self._capture is None or index < self._next_index:  # first read, or starting over
            if self._capture is not None:
                self._capture.release()
            self._capture = self._open(self.uri)
            self._next_index = 0
        while self._next_index < index:  # skipped frames: grab without decoding
            self._capture.grab()
            self._next_index += 1
        ok, image = self._capture.read()
        self._next_index += 1
        if not ok:
            raise SourceError(f"{self.uri}: frame {index} of {self.path} could not be decoded")
        return image

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
