"""Frame sources: the interface, and the pacing shared by every recorded source (docs/sources.md).

The control loop only ever consumes the newest frame. A source therefore hands out the newest frame not
returned before and counts the frames that were available but superseded before being read as dropped.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import numpy as np

Pace = Literal["realtime", "fast"]


class SourceError(ValueError):
    """A source that cannot be opened or read; the text names the URI or file."""


@dataclass
class SourceFrame:
    seq: int  # increases with every frame the source produced (returned or dropped)
    stamp_ns: int  # capture time, ns since the Unix epoch
    image: np.ndarray  # BGR uint8 (height, width, 3)


class FrameSource(ABC):
    """A camera, a recording or a stream of frames, read newest-first."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.frames = 0  # frames returned by read_latest
        self.dropped = 0  # frames that were available but superseded before being read
        self.finished = False  # the source has ended and will return no more frames

    @abstractmethod
    def read_latest(self, timeout_s: float) -> SourceFrame | None:
        """The newest frame not returned before, or None if nothing new arrives within timeout_s."""

    def close(self) -> None:  # noqa: B027 - sources without resources need no close
        """Release the device, file or socket."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordedSource(FrameSource):
    """A finite recording whose frame times are known up front, played back newest-first.

    `fast` returns the next frame on every call. `realtime` maps the wall clock since the first read onto
    the recording's own timeline and returns the frame that is current now, counting the skipped ones as
    dropped. With `loop` the recording starts over after its last frame (one frame period after it) and
    seq keeps increasing; without, the last frame is still returned and then the source is finished.
    Subclasses provide the frame offsets and `_read(index)`; reads arrive in increasing index order
    except when the recording starts over.
    """

    def __init__(self, uri: str, offsets_ns: np.ndarray, period_ns: int, pace: Pace, loop: bool) -> None:
        super().__init__(uri)
        if pace not in ("realtime", "fast"):
            raise SourceError(f"{uri}: pace must be 'realtime' or 'fast', got {pace!r}")
        self.pace: Pace = pace
        self.loop = loop
        self._offsets = np.asarray(offsets_ns, dtype=np.int64)  # ns since the first frame, non-decreasing
        self._count = len(self._offsets)
        self._duration = int(self._offsets[-1]) + max(1, int(period_ns))  # one loop of the recording
        self._last = -1  # position of the last frame returned
        self._start_monotonic = 0  # ns, set by the first realtime read
        self._start_epoch = 0

    @abstractmethod
    def _read(self, index: int) -> np.ndarray:
        """Decode frame `index` of the recording (BGR uint8)."""

    def _offset(self, position: int) -> int:
        """Recording time of a position (index plus whole loops), ns since the first frame."""
        loops, index = divmod(position, self._count)
        return loops * self._duration + int(self._offsets[index])

    def _position_at(self, elapsed_ns: int) -> int:
        """The position that is current `elapsed_ns` after the first frame."""
        loops, into_loop = divmod(elapsed_ns, self._duration)
        index = int(np.searchsorted(self._offsets, into_loop, side="right")) - 1
        position = loops * self._count + index
        return position if self.loop else min(position, self._count - 1)

    def _emit(self, position: int, stamp_ns: int) -> SourceFrame:
        image = self._read(position % self._count)
        self._last = position
        self.frames += 1
        return SourceFrame(seq=position, stamp_ns=stamp_ns, image=image)

    def read_latest(self, timeout_s: float) -> SourceFrame | None:
        if self.finished:
            return None
        if self.pace == "fast":
            if not self.loop and self._last + 1 >= self._count:
                self.finished = True
                return None
            return self._emit(self._last + 1, time.time_ns())
        now = time.monotonic_ns()
        if self._last < 0:
            self._start_monotonic, self._start_epoch = now, time.time_ns()
        deadline = now + int(timeout_s * 1e9)
        while True:
            elapsed = now - self._start_monotonic
            position = self._position_at(elapsed)
            if position > self._last:
                self.dropped += position - self._last - 1
                return self._emit(position, self._start_epoch + self._offset(position))
            if self._last == self._count - 1 and not self.loop:
                next_due = self._duration  # the last frame stays current for one frame period
                if elapsed >= next_due:
                    self.finished = True
                    return None
            else:
                next_due = self._offset(self._last + 1)
            wait = min(deadline - now, next_due - elapsed)
            if deadline <= now:
                return None
            time.sleep(max(wait, 0) / 1e9)
            now = time.monotonic_ns()
