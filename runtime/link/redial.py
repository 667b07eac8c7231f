"""Dialing again when ZeroMQ drops a connecting socket's connection for good.

A connecting socket whose peer sends a message over its ZMQ_MAXMSGSIZE (protocol.TRANSPORT_MAX_BYTES) has that
connection dropped by ZeroMQ, which then never dials again, even after the peer restarts: the stream would be dead
for the rest of the run. `Redial` watches the socket's connection events (a socket monitor): a disconnection that
ZeroMQ does not follow with a reconnection attempt of its own within `GRACE_S` (it does at once when the peer went
away or refused a handshake) is dialed again, counted in `counters[counter]`, and the first one logged
(runtime/link/drops.py).
"""

from __future__ import annotations

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from runtime.link.drops import Drops
from runtime.link.protocol import TRANSPORT_MAX_BYTES

# ZeroMQ reports its own reconnection attempt right after the disconnection; this long without one, it made none.
GRACE_S = 0.1
# The monitor is read at most this often: a read costs a ZeroMQ poll, more than the rest of a state's handling.
CHECK_EVERY_S = 0.02
_WATCHED = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CONNECT_DELAYED | zmq.EVENT_CONNECTED


class Redial:
    """Keeps `socket` (already connected to `endpoint`) connected; `check` once per cycle, on the owner's thread."""

    def __init__(self, socket: zmq.Socket[bytes], endpoint: str, counters: dict[str, int], counter: str,
                 where: str) -> None:
        self._socket = socket
        self._endpoint = endpoint
        self._counter = counter
        counters.setdefault(counter, 0)
        self._drops = Drops(counters, where, "lost its connection")
        self._monitor = socket.get_monitor_socket(_WATCHED)
        self._dropped_at: float | None = None  # a disconnection not followed by ZeroMQ's own attempt yet
        self._next_check = 0.0

    def check(self) -> None:
        """Dial again if a connection was dropped for good since the last calls; never blocks."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        while self._monitor.poll(0):
            if recv_monitor_message(self._monitor)["event"] == zmq.EVENT_DISCONNECTED:
                self._dropped_at = now if self._dropped_at is None else self._dropped_at
            else:
                self._dropped_at = None  # ZeroMQ is reconnecting by itself
        if self._dropped_at is not None and now - self._dropped_at >= GRACE_S:
            self._dropped_at = None
            self._socket.disconnect(self._endpoint)
            self._socket.connect(self._endpoint)
            self._drops(self._counter, f"ZeroMQ dropped the connection to {self._endpoint} for good (a message "
                                       f"over its {TRANSPORT_MAX_BYTES} byte limit); dialed again")

    def close(self) -> None:
        """Before the socket closes."""
        if not self._socket.closed:
            self._socket.disable_monitor()
        self._monitor.close(linger=0)
