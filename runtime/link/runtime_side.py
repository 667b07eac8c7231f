"""The runtime's side of the controller link (docs/protocol.md): commands out, newest state in.

The runtime connects; the controller binds. Commands and stops go out on a PUB; the controller's state
arrives on a SUB with CONFLATE=1, so only the newest state ever waits. Nothing received can raise: a
message that does not decode, has the wrong version or an unexpected type is dropped and counted.
With `security` (runtime/link/security.py) both sockets are CURVE clients of the controller's public key.
Not thread-safe: one thread (the control loop) owns a link.
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from runtime.link import protocol
from runtime.link.security import LinkSecurity


class RuntimeLink:
    """PUB to the controller's command endpoint, conflating SUB to its state endpoint."""

    def __init__(
        self, command_endpoint: str, state_endpoint: str, *, context: zmq.Context | None = None,
        security: LinkSecurity | None = None,
    ) -> None:
        if security is not None:
            security.require_server_key()
        self.command_endpoint = command_endpoint
        self.state_endpoint = state_endpoint
        self._owns_context = context is None
        self._context: zmq.Context = zmq.Context() if context is None else context
        self._commands = self._context.socket(zmq.PUB)
        self._commands.setsockopt(zmq.LINGER, 0)
        if security is not None:
            security.secure_client(self._commands)
        self._commands.connect(command_endpoint)
        self._states = self._context.socket(zmq.SUB)
        self._states.setsockopt(zmq.LINGER, 0)
        self._states.setsockopt(zmq.CONFLATE, 1)  # latest state only; must be set before connect
        self._states.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_MESSAGE_BYTES)
        self._states.setsockopt(zmq.SUBSCRIBE, b"")
        if security is not None:
            security.secure_client(self._states)
        self._states.connect(state_endpoint)
        self._seq = 0
        self._newest: protocol.State | None = None
        self.last_heard: float | None = None  # time.monotonic() of the last valid state or heartbeat
        self.last_error: str | None = None  # why the last dropped message was dropped
        self.counters: dict[str, int] = {
            "states": 0,
            "heartbeats": 0,
            "bad_messages": 0,
            "commands_sent": 0,
            "stops_sent": 0,
        }
        self._closed = False

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def send_command(self, action: np.ndarray, stamp_capture: int, ttl_ms: float) -> int:
        """Publish one joint-velocity command; returns its seq. Refuses what the controller would drop."""
        action = np.asarray(action, dtype=np.float64).ravel()
        if action.size == 0 or not np.all(np.isfinite(action)):
            raise protocol.ProtocolError(f"command: 'action' must be finite and non-empty, got {action}")
        if not ttl_ms > 0:
            raise protocol.ProtocolError(f"command: field 'ttl_ms' must be a positive number, got {ttl_ms}")
        seq = self._next_seq()
        message = protocol.Command(
            seq=seq, action=action, stamp_capture=stamp_capture, stamp_send=protocol.now_ns(), ttl_ms=ttl_ms
        )
        self._commands.send(protocol.encode(message), zmq.NOBLOCK)  # a PUB never blocks; it drops at HWM
        self.counters["commands_sent"] += 1
        return seq

    def send_stop(self, reason: str) -> int:
        """Publish a stop; the controller holds the robot still until the next command. Returns its seq."""
        seq = self._next_seq()
        message = protocol.Stop(seq=seq, stamp_send=protocol.now_ns(), reason=reason)
        self._commands.send(protocol.encode(message), zmq.NOBLOCK)
        self.counters["stops_sent"] += 1
        return seq

    def _drain(self) -> None:
        """Decode everything waiting; keep the newest state, count the rest."""
        while True:
            try:
                payload = self._states.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                message = protocol.decode(payload)
            except protocol.ProtocolError as exc:
                self._drop(str(exc))
                continue
            if isinstance(message, protocol.State):
                self._newest = message
                self.counters["states"] += 1
            elif isinstance(message, protocol.Heartbeat):
                self.counters["heartbeats"] += 1
            else:
                self._drop(f"unexpected message type {message.type!r} on the state socket")
                continue
            self.last_heard = time.monotonic()

    def _drop(self, reason: str) -> None:
        self.counters["bad_messages"] += 1
        self.last_error = reason

    def latest_state(self) -> protocol.State | None:
        """The newest valid state received since the last call, or None. Never blocks."""
        self._drain()
        state, self._newest = self._newest, None
        return state

    def close(self) -> None:
        """Close both sockets without lingering; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._commands.close(linger=0)
        self._states.close(linger=0)
        if self._owns_context:
            self._context.term()

    def __enter__(self) -> RuntimeLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
