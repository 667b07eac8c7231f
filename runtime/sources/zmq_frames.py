"""`zmq://HOST:PORT`: camera frames published by a controller (protocol.Frame on its frame PUB)."""

from __future__ import annotations

import time

import zmq

from runtime.link import protocol
from runtime.link.drops import Drops
from runtime.link.newest import receive_newest
from runtime.link.redial import Redial
from runtime.link.security import LinkSecurity
from runtime.sources.base import FrameSource, SourceFrame


class ZmqFrameSource(FrameSource):
    """A conflating SUB to a controller's frame endpoint; seq gaps count as dropped frames.

    Each is counted in `counters` (the first of each kind logged, the last reason in `last_error`), never raised:
    messages that do not decode as a Frame (`bad_messages`), frames smaller than `min_image_size` (height, width;
    the model's input, which a smaller camera image would be upscaled to: `wrong_frame_size`), and connections
    ZeroMQ dropped (a message over protocol.TRANSPORT_MAX_BYTES), dialed again at once (`frame_reconnects`).
    seq and stamp are the controller's: seq restarts if the controller restarts. With `security` the socket is
    a CURVE client of the controller's public key (runtime/link/security.py).
    """

    def __init__(self, uri: str, endpoint: str, *, context: zmq.Context | None = None,
                 security: LinkSecurity | None = None, min_image_size: tuple[int, int] | None = None) -> None:
        super().__init__(uri)
        if security is not None:
            security.require_server_key()
        self.endpoint = endpoint
        self._owns_context = context is None
        self._context: zmq.Context = zmq.Context() if context is None else context
        self._socket = self._context.socket(zmq.SUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.CONFLATE, 1)  # only the newest frame waits; must precede connect
        self._socket.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        if security is not None:
            security.secure_client(self._socket)
        self._socket.connect(endpoint)
        self.min_image_size = min_image_size
        self.counters: dict[str, int] = {"bad_messages": 0, "wrong_frame_size": 0}
        self._drops = Drops(self.counters, f"frame socket {endpoint}")
        self._redial = Redial(self._socket, endpoint, self.counters, "frame_reconnects", f"frame socket {endpoint}")
        self._last_seq: int | None = None
        self._closed = False

    @property
    def bad_messages(self) -> int:
        return self.counters["bad_messages"]

    @property
    def last_error(self) -> str | None:
        return self._drops.last_error

    def _drain(self) -> protocol.Frame | None:
        self._redial.check()
        frame = receive_newest(self._socket, protocol.Frame, lambda reason: self._drops("bad_messages", reason),
                               "frame")
        if frame is None or self.min_image_size is None:
            return frame
        height, width = frame.image.shape[:2]
        if height < self.min_image_size[0] or width < self.min_image_size[1]:
            self._drops("wrong_frame_size", f"frame {frame.seq} is {width}x{height}, smaller than the model's "
                                            f"{self.min_image_size[1]}x{self.min_image_size[0]} input")
            self._last_seq = frame.seq  # refused, not dropped: no gap in seq for it
            return None
        return frame

    def read_latest(self, timeout_s: float) -> SourceFrame | None:
        deadline = time.monotonic() + timeout_s
        while True:
            frame = self._drain()
            if frame is not None:
                return self._accept(frame)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._socket.poll(max(1, int(remaining * 1000)), zmq.POLLIN)

    def _accept(self, frame: protocol.Frame) -> SourceFrame:
        # Frames the conflating socket discarded show up as a gap in seq. A smaller seq means the
        # controller restarted: nothing to count.
        if self._last_seq is not None and frame.seq > self._last_seq + 1:
            self.dropped += frame.seq - self._last_seq - 1
        self._last_seq = frame.seq
        self.frames += 1
        return SourceFrame(seq=frame.seq, stamp_ns=frame.stamp, image=frame.image)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._redial.close()
        self._socket.close(linger=0)
        if self._owns_context:
            self._context.term()
