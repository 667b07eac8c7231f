"""Latest-only receiving: drain a socket without blocking and keep the newest message of one type."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import zmq

from runtime.link import protocol

M = TypeVar("M", protocol.Frame, protocol.Goal)


def receive_newest(socket: zmq.Socket[bytes], kind: type[M], reject: Callable[[str], None], where: str) -> M | None:
    """The newest valid `kind` message waiting on `socket`, or None; undecodable or other messages go to `reject`."""
    newest: M | None = None
    while True:
        try:
            payload = socket.recv(zmq.NOBLOCK)
        except zmq.Again:
            return newest
        try:
            message = protocol.decode(payload)
        except protocol.ProtocolError as exc:
            reject(str(exc))
            continue
        if isinstance(message, kind):
            newest = message
        else:
            reject(f"unexpected message type {message.type!r} on the {where} socket")
