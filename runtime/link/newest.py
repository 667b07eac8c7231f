"""Latest-only receiving: drain a socket without blocking and keep the newest message of one type.

Decoding is bounded per call: at most `MAX_TAKEN` messages are taken off the socket (the rest wait for the next
call), and they are decoded newest first, so only messages newer than the one kept are ever decoded; the older
ones are superseded without being decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import zmq

from runtime.link import protocol

M = TypeVar("M", protocol.Frame, protocol.Goal)

# Messages taken off a socket per call: each is decoded at most once, and at most this many per call.
MAX_TAKEN = 4


def receive_newest(socket: zmq.Socket[bytes], kind: type[M], reject: Callable[[str], None], where: str, *,
                   max_bytes: int = protocol.MAX_MESSAGE_BYTES,
                   superseded: Callable[[int], None] | None = None) -> M | None:
    """The newest valid `kind` message of those waiting on `socket` (up to MAX_TAKEN), or None. Messages newer
    than it that are undecodable or of another type go to `reject`; the number of older ones, never decoded, to
    `superseded`."""
    payloads: list[bytes] = []
    while len(payloads) < MAX_TAKEN:
        try:
            payloads.append(socket.recv(zmq.NOBLOCK))
        except zmq.Again:
            break
    for index in range(len(payloads) - 1, -1, -1):
        try:
            message = protocol.decode(payloads[index], max_bytes)
        except protocol.ProtocolError as exc:
            reject(str(exc))
            continue
        if isinstance(message, kind):
            if superseded is not None and index > 0:
                superseded(index)
            return message
        reject(f"unexpected message type {message.type!r} on the {where} socket")
    return None
