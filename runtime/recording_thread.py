"""A run's recording written on a thread of its own, so that encoding frames (PNG: milliseconds for a camera-sized
image) and compressing chunks never take time from a control tick or an asynchronous command.

The loop's threads hand each message over in a queue put (microseconds); one writer thread encodes and appends them
in order to the RecordingWriter it owns. The arrays handed over are kept until written, so callers must not change
them afterwards (the loop never does: every frame is a new array). When the disk cannot keep up and the queue is
full, a message is dropped rather than waited for, counted in `dropped` and logged the first time. An error on the
writer thread (a full disk, an image it cannot encode) ends the recording and is raised by the next write and by
`close`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from runtime.channels import IMAGE_TOPIC
from runtime.recording import RecordingWriter

log = logging.getLogger(__name__)

QUEUE_MESSAGES = 1024  # about 10 s of a 30 Hz run's messages: room for a slow disk's pause


class RecordingThreadError(RuntimeError):
    """The writer thread stopped; the text names the recording and why."""


class BackgroundRecording:
    """The loop's recording: the ChannelWriter calls of RecordingWriter, carried out on a writer thread."""

    def __init__(self, writer: RecordingWriter, capacity: int = QUEUE_MESSAGES) -> None:
        self.path = writer.path
        self.written = 0
        self.dropped = 0
        self._writer = writer
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=capacity)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._write_until_closed, name="recording", daemon=True)
        self._thread.start()

    def _write_until_closed(self) -> None:
        while (write := self._queue.get()) is not None:
            if self._error is None:
                try:
                    write()
                    self.written += 1
                except BaseException as exc:  # kept for the loop's thread, which raises it
                    self._error = exc
        self._writer.close()

    def _raise_if_stopped(self) -> None:
        if self._error is not None:
            raise RecordingThreadError(f"{self.path}: the recording stopped: {self._error}") from self._error

    def _put(self, write: Callable[[], None]) -> None:
        self._raise_if_stopped()
        try:
            self._queue.put_nowait(write)
        except queue.Full:
            if self.dropped == 0:
                log.warning("%s: the recording falls behind (%d messages waiting): messages are dropped, counted in "
                            "summary.json as recording.dropped", self.path, self._queue.maxsize)
            self.dropped += 1

    def write_json(self, topic: str, payload: dict[str, Any], stamp_ns: int, sequence: int) -> None:
        self._put(lambda: self._writer.write_json(topic, payload, stamp_ns, sequence))

    def write_image(self, image: np.ndarray, stamp_ns: int, sequence: int, topic: str = IMAGE_TOPIC) -> None:
        self._put(lambda: self._writer.write_image(image, stamp_ns, sequence, topic))

    def write_camera_transform(self, base_T_camera: np.ndarray, stamp_ns: int) -> None:
        self._put(lambda: self._writer.write_camera_transform(base_T_camera, stamp_ns))

    def close(self) -> None:
        """Write what is queued, finish the file; raises what stopped the writer thread, if anything did."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)  # blocking: everything queued before it is written first
            self._thread.join()
        self._raise_if_stopped()
