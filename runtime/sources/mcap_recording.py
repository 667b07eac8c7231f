"""`mcap:PATH`: the camera images of an edgeloop MCAP recording, paced by their own stamps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from runtime.recording import IMAGE_TOPIC, RecordingError, iter_images, iter_messages
from runtime.sources.base import Pace, RecordedSource, SourceError


class McapSource(RecordedSource):
    """Plays the images on /camera/image in log-time order, spaced as they were recorded."""

    def __init__(self, uri: str, path: Path, pace: Pace, loop: bool, fps: float) -> None:
        self.path = path
        try:  # stamps only: the images are decoded when they are read
            stamps = np.asarray([stamp for _t, _s, stamp, _p in iter_messages(path, [IMAGE_TOPIC])], np.int64)
        except RecordingError as exc:
            raise SourceError(f"{uri}: {exc}") from exc
        if len(stamps) == 0:
            raise SourceError(f"{uri}: {path} has no images on {IMAGE_TOPIC}")
        offsets = stamps - stamps[0]
        # One loop ends one typical frame period after the last frame; `fps` when there is only one frame.
        period_ns = int(np.median(np.diff(offsets))) if len(offsets) > 1 else round(1e9 / fps)
        super().__init__(uri, offsets, period_ns, pace, loop)
        self._images: Iterator[tuple[int, int, np.ndarray]] | None = None
        self._next_index = 0  # index the iterator yields next

    def _read(self, index: int) -> np.ndarray:
        if self._images is None or index < self._next_index:  # first read, or starting over
            self._images = iter_images(self.path)
            self._next_index = 0
        images = self._images
        try:
            while True:
                _seq, _stamp, image = next(images)
                self._next_index += 1
                if self._next_index > index:
                    return image
        except RecordingError as exc:
            raise SourceError(f"{self.uri}: {exc}") from exc
        except StopIteration as exc:
            raise SourceError(f"{self.uri}: {self.path} ended before frame {index}") from exc

    def close(self) -> None:
        self._images = None  # dropping the generator closes the recording file
