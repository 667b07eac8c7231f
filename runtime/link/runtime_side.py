"""The runtime's side of the controller link (docs/protocol.md): commands out, newest state in.

The runtime connects; the controller binds. Commands and stops go out on a PUB, each carrying this link's
random `session`, so a controller tells a restarted runtime (whose seq starts again at 0) from a stale one; the
controller's state arrives on a SUB with CONFLATE=1, so only the newest state ever waits. Nothing received can
raise: a message that does not decode, has the wrong version or an unexpected type, a state stamped before the
newest one seen, or one stamped further ahead of this clock than the state timeout, is dropped and counted by
reason (the first of each reason is logged); `state_trouble` says what the state stream carried instead of a
state since the last one.
Decoding is bounded (protocol.MAX_CONTROL_BYTES, and the conflating socket holds one message). A message over
ZeroMQ's own limit costs the state connection, which is dialed again at once (`state_reconnects`,
runtime/link/redial.py). When nothing valid has come from the controller for the state timeout, that is logged,
once per silence, and so is its return.
With `security` (runtime/link/security.py) both sockets are CURVE clients of the controller's public key.
Not thread-safe: one thread (the control loop) owns a link.
"""

from __future__ import annotations

import logging
import math
import secrets
import time

import numpy as np
import zmq

from runtime.link import protocol
from runtime.link.drops import Drops
from runtime.link.redial import Redial
from runtime.link.security import LinkSecurity

log = logging.getLogger(__name__)

# What the state stream can carry instead of a usable state, as `state_trouble` words it.
_TROUBLE = {"bad_messages": "state messages malformed", "old_states": "state messages older than the newest",
            "future_states": "state messages stamped ahead of this clock", "heartbeats": "heartbeats but no state"}


def _clock(stamp_ns: int) -> str:
    """Local wall-clock time of day with milliseconds, for operators' messages."""
    seconds, ns = divmod(stamp_ns, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{ns // 1_000_000:03d}"


class RuntimeLink:
    """PUB to the controller's command endpoint, conflating SUB to its state endpoint."""

    def __init__(
        self, command_endpoint: str, state_endpoint: str, *, context: zmq.Context | None = None,
        security: LinkSecurity | None = None, state_timeout_ms: float = 500.0,
    ) -> None:
        """`state_timeout_ms` (the run's link.state_timeout_ms): states stamped further ahead of this clock than
        that are dropped, so one bogus stamp cannot make every later state look old."""
        if security is not None:
            security.require_server_key()
        self.command_endpoint = command_endpoint
        self.state_endpoint = state_endpoint
        self._owns_context = context is None
        self._context: zmq.Context = zmq.Context() if context is None else context
        self._commands = self._context.socket(zmq.PUB)
        self._commands.setsockopt(zmq.LINGER, 0)
        # Queue only to a live connection: what was sent after a controller died must not wait in the socket for
        # the next controller on the port (docs/reliability.md, Process faults).
        self._commands.setsockopt(zmq.IMMEDIATE, 1)
        if security is not None:
            security.secure_client(self._commands)
        self._commands.connect(command_endpoint)
        self._states = self._context.socket(zmq.SUB)
        self._states.setsockopt(zmq.LINGER, 0)
        self._states.setsockopt(zmq.CONFLATE, 1)  # latest state only; must be set before connect
        self._states.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
        self._states.setsockopt(zmq.SUBSCRIBE, b"")
        if security is not None:
            security.secure_client(self._states)
        self._states.connect(state_endpoint)
        self.session = secrets.token_hex(8)  # this run, on every command and stop
        self._seq = 0
        self._max_ahead_ns = int(state_timeout_ms * 1e6)
        self._timeout_s = state_timeout_ms / 1000.0
        self._silent = False  # the silence since last_heard was logged
        self._newest: protocol.State | None = None
        self._readable = False  # wait_for_state saw the state socket readable, and nothing was taken since
        self._newest_stamp: int | None = None  # of the newest state accepted
        self._trouble: dict[str, tuple[int, int]] = {}  # since the last accepted state: reason -> (count, first ns)
        self.last_heard: float | None = None  # time.monotonic() of the last valid state or heartbeat
        self.counters: dict[str, int] = {
            "states": 0,
            "heartbeats": 0,
            "bad_messages": 0,
            "old_states": 0,
            "future_states": 0,
            "commands_sent": 0,
            "stops_sent": 0,
        }
        self._drops = Drops(self.counters, f"state socket {state_endpoint}")
        self._redial = Redial(self._states, state_endpoint, self.counters, "state_reconnects",
                              f"state socket {state_endpoint}")
        self._closed = False

    @property
    def last_error(self) -> str | None:
        """Why the last dropped message was dropped."""
        return self._drops.last_error

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    def send_command(self, action: np.ndarray, stamp_capture: int, ttl_ms: float) -> int:
        """Publish one joint-velocity command; returns its seq. Refuses what the controller would drop."""
        action = np.asarray(action, dtype=np.float64).ravel()
        # math on the few values: NumPy's dispatch costs more than the check itself here (the command hot path).
        if action.size == 0 or not all(map(math.isfinite, action.tolist())):
            raise protocol.ProtocolError(f"command: 'action' must be finite and non-empty, got {action}")
        if not ttl_ms > 0:
            raise protocol.ProtocolError(f"command: field 'ttl_ms' must be a positive number, got {ttl_ms}")
        seq = self._next_seq()
        message = protocol.Command(seq=seq, action=action, stamp_capture=stamp_capture, stamp_send=protocol.now_ns(),
                                   ttl_ms=ttl_ms, session=self.session)
        self._commands.send(protocol.encode(message), zmq.NOBLOCK)  # a PUB never blocks; it drops at HWM
        self.counters["commands_sent"] += 1
        return seq

    def send_stop(self, reason: str) -> int:
        """Publish a stop; the controller holds the robot still until the next command. Returns its seq."""
        seq = self._next_seq()
        message = protocol.Stop(seq=seq, stamp_send=protocol.now_ns(), reason=reason, session=self.session)
        self._commands.send(protocol.encode(message), zmq.NOBLOCK)
        self.counters["stops_sent"] += 1
        return seq

    def _take(self) -> None:
        """Decode the message waiting, if any: the conflating socket holds only the newest. One arriving meanwhile
        waits for the next call."""
        self._redial.check()
        # EVENTS, not recv until zmq.Again: raising costs more than the rest of a state's handling. A wait that just
        # saw the socket readable stands for it (each is a call into ZeroMQ, a syscall when it is idle).
        readable, self._readable = self._readable, False
        if not (readable or int(self._states.getsockopt(zmq.EVENTS)) & zmq.POLLIN):
            return
        try:
            payload = self._states.recv(zmq.NOBLOCK)
        except zmq.Again:  # EVENTS said one was ready; never wait on the socket whatever it says
            return
        try:
            message = protocol.decode(payload, protocol.MAX_CONTROL_BYTES)
        except protocol.ProtocolError as exc:
            self._drop("bad_messages", str(exc))
            return
        if isinstance(message, protocol.State):
            if not self._in_order(message):
                return
            self._newest, self._newest_stamp = message, message.stamp
            self._trouble.clear()
            self.counters["states"] += 1
        elif isinstance(message, protocol.Heartbeat):
            self.counters["heartbeats"] += 1
            self._note_trouble("heartbeats")
        else:
            self._drop("bad_messages", f"unexpected message type {message.type!r} on the state socket")
            return
        self.last_heard = time.monotonic()

    def _in_order(self, state: protocol.State) -> bool:
        """A state stamped no earlier than the newest seen and not too far ahead of this clock; else dropped."""
        ahead_ns = state.stamp - protocol.now_ns()
        if ahead_ns > self._max_ahead_ns:
            self._drop("future_states", f"state {state.seq} is stamped {ahead_ns / 1e6:.0f} ms ahead of this clock "
                                        f"(more than the {self._max_ahead_ns / 1e6:g} ms state timeout): the clocks "
                                        f"disagree")
            return False
        if self._newest_stamp is not None and state.stamp < self._newest_stamp:
            self._drop("old_states", f"state {state.seq} is stamped {(self._newest_stamp - state.stamp) / 1e6:.3f} ms "
                                     f"before the newest seen")
            return False
        return True

    def _drop(self, reason: str, detail: str) -> None:
        self._drops(reason, detail)
        self._note_trouble(reason)

    def _note_trouble(self, reason: str) -> None:
        count, first = self._trouble.get(reason, (0, protocol.now_ns()))
        self._trouble[reason] = (count + 1, first)

    def state_trouble(self) -> str | None:
        """What the state stream carried since the last valid state, worded for a stop reason: e.g.
        "state messages malformed: 12 since 14:03:12.301"; None when it carried nothing else."""
        if not self._trouble:
            return None
        return "; ".join(f"{_TROUBLE[reason]}: {count} since {_clock(first)}"
                         for reason, (count, first) in self._trouble.items())

    def wait_for_state(self, timeout_ms: float) -> bool:
        """Block up to `timeout_ms` until something arrives on the state socket; True if it did. For callers that
        wait on the controller (a round trip, a start-up), not for the control loop, which never blocks here."""
        self._readable = bool(self._states.poll(max(0, int(timeout_ms)), zmq.POLLIN))
        return self._readable

    def latest_state(self) -> protocol.State | None:
        """The newest valid state received since the last call, or None. Never blocks."""
        self._take()
        self._say_silence()
        state, self._newest = self._newest, None
        return state

    def _say_silence(self) -> None:
        """Log when nothing valid came from the controller for the state timeout, and when it comes back."""
        if self.last_heard is None:
            return
        silent_s = time.monotonic() - self.last_heard
        if silent_s > self._timeout_s and not self._silent:
            self._silent = True
            log.warning("state socket %s: nothing from the controller for %.0f ms: it stopped, restarted or is "
                        "unreachable (a controller that is also the camera sends no frames either); the runtime "
                        "stops the robot until it is back", self.state_endpoint, silent_s * 1000)
        elif silent_s <= self._timeout_s and self._silent:
            self._silent = False
            log.warning("state socket %s: the controller is back", self.state_endpoint)

    def close(self) -> None:
        """Close both sockets without lingering; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._redial.close()
        self._commands.close(linger=0)
        self._states.close(linger=0)
        if self._owns_context:
            self._context.term()

    def __enter__(self) -> RuntimeLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
