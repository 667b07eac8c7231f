"""The controller's side of the link (docs/protocol.md), for robot integrators and the sim controller.

The controller binds: a SUB for commands (the runtime's PUB connects), a PUB for state and optionally a
PUB for camera frames. `poll` drains the waiting messages (up to POLL_BUDGET_BYTES of them per call) and returns
only the newest valid command or stop, so a controller that falls behind acts on the latest plan, never on a
backlog. Messages over the command stream's size limit (protocol.MAX_CONTROL_BYTES) are refused before they are
decoded (`bad_messages`); ZeroMQ itself drops only the connection of a peer that sends more than
protocol.TRANSPORT_MAX_BYTES, and that peer dials again. Every message is
validated before it can act; what fails is dropped and counted by reason (the first of each reason is logged).
Commands must come in order: one whose seq is not newer than the last command or stop of its runtime session
is dropped (`stale_seq`), a new session takes over (a restarted runtime) and the one it replaced is refused
(`retired_session`). A command that is valid but for a non-finite action comes out of `poll` as a stop, so the
robot holds still at once. Nothing received can raise.
With `security` (runtime/link/security.py) every socket is a CURVE server that admits only the allowlisted
client keys; refused peers are counted in `counters` (refused_plaintext, refused_unknown_key,
refused_handshake) and logged. Not thread-safe: one thread (the control loop) owns a link.

The robot's own safety (bounds, rate limit, stop and watchdog) sits between `poll` and the actuators:
runtime/link/safety_filter.py.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import numpy as np
import zmq

from runtime.link import protocol
from runtime.link.drops import Drops
from runtime.link.security import CurveServer, LinkSecurity

log = logging.getLogger(__name__)

# Bounded backlog: a flood is dropped by ZeroMQ rather than queued without limit.
_COMMAND_QUEUE = 1000
# Bytes taken off the command socket per poll, at most (the rest wait for the next poll): with the message limits
# (protocol.MAX_CONTROL_BYTES and its entry limits) this bounds the time one control cycle spends decoding.
POLL_BUDGET_BYTES = 256 * 1024
# Sessions replaced by a newer one whose commands are still refused; older ones are forgotten.
RETIRED_SESSIONS_KEPT = 16


class CommandOrder:
    """Which runtime session owns the robot, and the newest seq of it (docs/protocol.md#sequence-numbers).

    Commands without a session are one session of their own (""). Counts new sessions in `counters["sessions"]`.
    """

    def __init__(self, counters: dict[str, int]) -> None:
        self.counters = counters
        self.session: str | None = None  # None: no command or stop yet
        self.newest_seq = -1
        self._retired: deque[str] = deque(maxlen=RETIRED_SESSIONS_KEPT)

    def judge(self, session: str | None, seq: int) -> str | None:
        """None when a message of `session` numbered `seq` is in order (it becomes the newest), else the counter it
        is dropped under: `stale_seq` (not newer than the newest of its session) or `retired_session`."""
        name = session or ""
        if name == self.session:
            if seq <= self.newest_seq:
                return "stale_seq"
            self.newest_seq = seq
            return None
        if name in self._retired:
            return "retired_session"
        if self.session is None:
            log.info("commands from runtime session %r", name)
        else:
            self._retired.append(self.session)
            log.warning("runtime session %r replaces %r (a restarted runtime, or a second one commanding this "
                        "robot): the old session's commands are refused from now on", name, self.session)
        self.session, self.newest_seq = name, seq
        self.counters["sessions"] += 1
        return None


class ControllerLink:
    """Binds the command SUB, the state PUB and (when frame_endpoint is given) the frame PUB."""

    def __init__(
        self,
        action_dim: int,
        *,
        command_endpoint: str = protocol.DEFAULT_COMMAND_ENDPOINT,
        state_endpoint: str = protocol.DEFAULT_STATE_ENDPOINT,
        frame_endpoint: str | None = None,
        context: zmq.Context | None = None,
        security: LinkSecurity | None = None,
    ) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be at least 1, got {action_dim}")
        self.action_dim = action_dim
        self._owns_context = context is None
        self._context: zmq.Context = zmq.Context() if context is None else context
        self._sockets: list[zmq.Socket] = []
        self._closed = False
        self.counters: dict[str, int] = {
            "commands": 0,
            "stops": 0,
            "heartbeats": 0,
            "bad_messages": 0,
            "expired": 0,
            "wrong_dim": 0,
            "stale_seq": 0,
            "retired_session": 0,
            "non_finite": 0,
            "sessions": 0,
            "states_sent": 0,
            "frames_sent": 0,
        }
        self._guard: CurveServer | None = None
        try:
            if security is not None:
                self._guard = CurveServer(self._context, security, self.counters)
            self._commands = self._bind(zmq.SUB, command_endpoint)
            self._states = self._bind(zmq.PUB, state_endpoint)
            self._frames = self._bind(zmq.PUB, frame_endpoint) if frame_endpoint is not None else None
        except (zmq.ZMQError, ValueError):  # ValueError: a SecurityError
            self.close()
            raise
        # The endpoints actually bound (a "*" port resolved to the one the OS picked).
        self.command_endpoint = self._endpoint(self._commands)
        self.state_endpoint = self._endpoint(self._states)
        self.frame_endpoint = self._endpoint(self._frames) if self._frames is not None else None
        self._state_seq = 0
        self._frame_seq = 0
        self._drop = Drops(self.counters, f"command socket {self.command_endpoint}")
        self._order = CommandOrder(self.counters)

    @property
    def last_error(self) -> str | None:
        """Why the last dropped message was dropped."""
        return self._drop.last_error

    @property
    def command_socket(self) -> zmq.Socket:
        """For a caller that waits on commands and other sockets in one zmq.Poller, then calls
        poll(0, readable=True)."""
        return self._commands

    def _bind(self, kind: int, endpoint: str) -> zmq.Socket:
        socket = self._context.socket(kind)
        self._sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)
        if self._guard is not None:
            self._guard.secure(socket)
        if kind == zmq.SUB:
            socket.setsockopt(zmq.RCVHWM, _COMMAND_QUEUE)
            socket.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as exc:
            raise zmq.ZMQError(exc.errno, f"cannot bind {endpoint}: {exc.strerror}") from exc
        return socket

    @staticmethod
    def _endpoint(socket: zmq.Socket) -> str:
        endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
        return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)

    def poll(self, timeout_ms: float, *, readable: bool = False) -> protocol.Command | protocol.Stop | None:
        """Wait up to timeout_ms for input, drain it all, return the newest valid command or stop. `readable`: the
        caller's own zmq.Poller has just said the command socket is readable, so no wait and no check is needed."""
        if self._guard is not None:
            self._guard.drain()
        if not readable and timeout_ms > 0:
            readable = self._commands.poll(int(timeout_ms), zmq.POLLIN) != 0
            if not readable:
                return None
        newest: protocol.Command | protocol.Stop | None = None
        taken = 0
        for _ in range(_COMMAND_QUEUE):  # bounded, so a flooding sender cannot stall the control loop
            # EVENTS, not recv until zmq.Again: raising costs more than the rest of a command's handling. A poll that
            # said readable stands for the first check (each is a call into ZeroMQ, a syscall when it is idle).
            if taken >= POLL_BUDGET_BYTES or not (readable or int(self._commands.getsockopt(zmq.EVENTS)) & zmq.POLLIN):
                break
            readable = False
            try:
                payload = self._commands.recv(zmq.NOBLOCK)
            except zmq.Again:  # EVENTS said one was ready; never wait on the socket whatever it says
                break
            taken += len(payload)
            accepted = self._accept(payload)
            if accepted is not None:
                newest = accepted
        return newest

    def _accept(self, payload: bytes) -> protocol.Command | protocol.Stop | None:
        """The message if it may act, else None (dropped and counted by reason)."""
        try:
            message = protocol.decode(payload, protocol.MAX_CONTROL_BYTES)
        except protocol.NonFiniteCommand as exc:  # its sender has lost track: hold still now, not at the watchdog
            self._drop("non_finite", f"{exc}; holding still")
            return protocol.Stop(seq=exc.seq, stamp_send=protocol.now_ns(), reason=str(exc), session=exc.session)
        except protocol.ProtocolError as exc:
            self._drop("bad_messages", str(exc))
            return None
        if isinstance(message, protocol.Stop):
            self.counters["stops"] += 1
            self._order.judge(message.session, message.seq)  # in order or not, holding still is always safe
            return message  # and a stop never expires
        if isinstance(message, protocol.Heartbeat):
            self.counters["heartbeats"] += 1
        elif not isinstance(message, protocol.Command):
            self._drop("bad_messages", f"unexpected message type {message.type!r} on the command socket")
        elif message.action.shape[0] != self.action_dim:
            n = message.action.shape[0]
            self._drop("wrong_dim", f"command {message.seq}: 'action' has {n} values, not {self.action_dim}")
        elif protocol.is_expired(message):
            age_ms = (protocol.now_ns() - message.stamp_send) / 1e6
            self._drop("expired", f"command {message.seq}: {age_ms:.1f} ms old, ttl {message.ttl_ms} ms")
        elif (out_of_order := self._order.judge(message.session, message.seq)) is not None:
            self._drop(out_of_order, f"command {message.seq} of session {message.session!r}: the newest of session "
                                     f"{self._order.session!r} is {self._order.newest_seq}")
        else:
            self.counters["commands"] += 1
            return message
        return None

    def publish_state(
        self, q: np.ndarray, dq: np.ndarray, ee: np.ndarray | None, stopped: bool, last_command_seq: int
    ) -> None:
        """Publish the robot's measured state, stamped now."""
        state = protocol.State(
            seq=self._state_seq,
            stamp=protocol.now_ns(),
            q=np.asarray(q, dtype=np.float64),
            dq=np.asarray(dq, dtype=np.float64),
            ee=np.zeros(0) if ee is None else np.asarray(ee, dtype=np.float64),
            stopped=stopped,
            last_command_seq=last_command_seq,
        )
        self._states.send(protocol.encode(state), zmq.NOBLOCK)
        self._state_seq += 1
        self.counters["states_sent"] += 1

    def publish_heartbeat(self, sender: str = "controller") -> None:
        """Tell the runtime the controller is alive when it has no state to send."""
        heartbeat = protocol.Heartbeat(seq=self._state_seq, stamp_send=protocol.now_ns(), sender=sender)
        self._states.send(protocol.encode(heartbeat), zmq.NOBLOCK)
        self._state_seq += 1

    def publish_frame(self, image: np.ndarray, stamp: int) -> None:
        """Publish one BGR uint8 camera frame with its capture stamp (ns since the epoch)."""
        if self._frames is None:
            raise RuntimeError("publish_frame needs a ControllerLink created with a frame_endpoint")
        frame = protocol.Frame(seq=self._frame_seq, stamp=stamp, image=image)
        self._frames.send(protocol.encode(frame), zmq.NOBLOCK)
        self._frame_seq += 1
        self.counters["frames_sent"] += 1

    def close(self) -> None:
        """Unbind and close every socket without lingering; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._guard is not None:
            self._guard.close()
        for socket in self._sockets:
            socket.close(linger=0)
        if self._owns_context:
            self._context.term()

    def __enter__(self) -> ControllerLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Watchdog:
    """Expired until first fed, and again once timeout_ms pass without a feed (monotonic clock)."""

    def __init__(self, timeout_ms: float) -> None:
        if not timeout_ms > 0:
            raise ValueError(f"watchdog timeout_ms must be positive, got {timeout_ms}")
        self.timeout_s = timeout_ms / 1000.0
        self._fed_at: float | None = None

    def feed(self, now: float | None = None) -> None:
        """Fed now, or at monotonic time `now`."""
        self._fed_at = time.monotonic() if now is None else now

    def expired(self, now: float | None = None) -> bool:
        """At monotonic time `now` (default: now)."""
        now = time.monotonic() if now is None else now
        return self._fed_at is None or now - self._fed_at > self.timeout_s
