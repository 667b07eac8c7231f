"""The edgeloop command protocol (docs/protocol.md): msgpack maps over ZeroMQ, one frame per message.

Every message is a msgpack map with at least ``v`` (protocol version), ``type`` and ``seq``. Stamps are
integer nanoseconds since the Unix epoch (``time.time_ns()``). Never pickle: decoding accepts only
msgpack maps of plain types and validates every field before anything acts on it.

Decoding time is bounded before anything is built: a message is refused when it is larger than its stream's
limit (`decode`'s `max_bytes`: `MAX_CONTROL_BYTES` on the command and state streams, `MAX_MESSAGE_BYTES` on the
frame and goal streams), and, while it is unpacked, when any array, map, string, nesting or the message's count
of entries goes beyond the limits below; a refused message costs its length check and the entries read so far.
A message of at most MAX_CONTROL_BYTES is first offered to the fast path (one msgspec call into typed structs,
below), which takes only exact, valid control messages; within that size its attempt costs at most the
decoding of 64 KiB.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgpack
import msgspec
import numpy as np

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # any message; the limit of the frame and goal streams
MAX_CONTROL_BYTES = 64 * 1024  # the limit of the command and state streams (command, stop, heartbeat, state)
# ZMQ_MAXMSGSIZE of every receiving socket: beyond this ZeroMQ drops the sender's connection before the message is
# read (a memory bound); between the protocol's limit and this, a message is received, refused and counted.
TRANSPORT_MAX_BYTES = 64 * 1024 * 1024
MAX_VALUES = 1024  # entries of any array (joints, action dimensions, goal state)
MAX_KEYS = 32  # entries of any map
MAX_TEXT_BYTES = 4096  # bytes of any str (keys, reasons, senders)
MAX_ENTRIES = 4096  # array and map entries of a whole message, all levels together
MAX_DEPTH = 2  # the message map, and maps or arrays inside it (goal.image, float[]), which hold no containers
MAX_SESSION_BYTES = 64  # a command's or stop's `session`: 1 to this many bytes of UTF-8
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # every int field; seq 0 and up

# Default endpoints: the controller binds, the runtime connects. Loopback unless configured.
DEFAULT_COMMAND_ENDPOINT = "tcp://127.0.0.1:5555"  # runtime PUB -> controller SUB (command, stop, heartbeat)
DEFAULT_STATE_ENDPOINT = "tcp://127.0.0.1:5556"  # controller PUB -> runtime SUB (state, heartbeat)
DEFAULT_FRAME_ENDPOINT = "tcp://127.0.0.1:5557"  # controller PUB -> runtime SUB (frame)
DEFAULT_GOAL_ENDPOINT = "tcp://127.0.0.1:5558"  # runtime binds PULL <- any client PUSH (goal)


class ProtocolError(ValueError):
    """A message that cannot be accepted; the text names the field at fault."""


class NonFiniteCommand(ProtocolError):
    """A command valid in every field but its `action`, which holds NaN or infinity: its sender has lost track
    of what it commands, so a controller holds the robot still at once rather than waiting for its watchdog."""

    def __init__(self, message: str, seq: int, session: str | None) -> None:
        super().__init__(message)
        self.seq = seq
        self.session = session


@dataclass
class Command:
    seq: int
    action: np.ndarray  # float64, one value per action dimension (joint velocity, rad/s)
    stamp_capture: int  # ns: capture stamp of the frame this command was planned from
    stamp_send: int  # ns: when the runtime sent it
    ttl_ms: float  # the controller discards the command once stamp_send + ttl is in the past
    session: str | None = None  # the sending runtime's run; None: a sender that names none
    type: str = field(default="command", init=False)


@dataclass
class Stop:
    seq: int
    stamp_send: int
    reason: str
    session: str | None = None  # as on Command
    type: str = field(default="stop", init=False)


@dataclass
class Heartbeat:
    seq: int
    stamp_send: int
    sender: str
    type: str = field(default="heartbeat", init=False)


@dataclass
class State:
    seq: int
    stamp: int  # ns: when the state was measured
    q: np.ndarray  # joint positions
    dq: np.ndarray  # joint velocities
    ee: np.ndarray  # end-effector position (controller frame); may be empty when unknown
    stopped: bool  # True while the controller holds the robot still (stop or watchdog)
    last_command_seq: int  # seq of the last command applied, -1 if none
    type: str = field(default="state", init=False)


@dataclass
class Frame:
    seq: int
    stamp: int  # ns: capture stamp
    image: np.ndarray  # uint8 BGR, (height, width, 3)
    type: str = field(default="frame", init=False)


@dataclass
class Goal:
    seq: int
    stamp_send: int
    image: np.ndarray | None  # uint8 BGR goal view, or None
    state: np.ndarray | None  # goal joint positions, or None
    capture: bool = False  # True: the goal view is the runtime's current view (never with image)
    type: str = field(default="goal", init=False)


Message = Command | Stop | Heartbeat | State | Frame | Goal


def now_ns() -> int:
    return time.time_ns()


def _floats(values: np.ndarray) -> list[float]:
    # tolist: Python floats in one C call (a comprehension over NumPy scalars costs a call each).
    floats: list[float] = np.asarray(values, dtype=np.float64).ravel().tolist()
    return floats


def _image_fields(image: np.ndarray) -> dict[str, Any]:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ProtocolError(f"image must be uint8 (height, width, 3), got {image.dtype} {image.shape}")
    return {
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "encoding": "bgr8",
        "data": np.ascontiguousarray(image).tobytes(),
    }


# Byte for byte what msgpack.packb(body, use_bin_type=True) writes (the smallest form of each value), in C.
_ENCODER = msgspec.msgpack.Encoder()


def encode(message: Message) -> bytes:
    """Serialize one message to a single msgpack frame."""
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": message.type, "seq": int(message.seq)}
    if isinstance(message, Command):
        body |= {
            "action": _floats(message.action),
            "stamp_capture": int(message.stamp_capture),
            "stamp_send": int(message.stamp_send),
            "ttl_ms": float(message.ttl_ms),
        }
    elif isinstance(message, Stop):
        body |= {"stamp_send": int(message.stamp_send), "reason": str(message.reason)}
    elif isinstance(message, Heartbeat):
        body |= {"stamp_send": int(message.stamp_send), "sender": str(message.sender)}
    elif isinstance(message, State):
        body |= {
            "stamp": int(message.stamp),
            "q": _floats(message.q),
            "dq": _floats(message.dq),
            "ee": _floats(message.ee),
            "stopped": bool(message.stopped),
            "last_command_seq": int(message.last_command_seq),
        }
    elif isinstance(message, Frame):
        body |= {"stamp": int(message.stamp)} | _image_fields(message.image)
    elif isinstance(message, Goal):
        if message.capture and message.image is not None:
            raise ProtocolError("goal: 'capture' and 'image' exclude each other")
        body["stamp_send"] = int(message.stamp_send)
        if message.capture:
            body["capture"] = True
        if message.image is not None:
            body["image"] = _image_fields(message.image)
        if message.state is not None:
            body["state"] = _floats(message.state)
    else:  # pragma: no cover - the union is closed
        raise ProtocolError(f"unknown message class {type(message).__name__}")
    if isinstance(message, (Command, Stop)) and message.session is not None:
        body["session"] = message.session
    return _ENCODER.encode(body)


_MAPS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}  # fixmap, map 16, map 32
_ARRAYS = frozenset(range(0x90, 0xA0)) | {0xDC, 0xDD}  # fixarray, array 16, array 32
_STRS = frozenset(range(0xA0, 0xC0)) | {0xD9, 0xDA, 0xDB}  # fixstr, str 8/16/32


class _Reader:
    """msgpack unpacked one entry at a time under the limits above: containers are walked here, so none is
    built before its size and depth are checked; scalars (str and bin bounded by length) are unpacked by msgpack."""

    def __init__(self, payload: bytes, max_bytes: int) -> None:
        self._payload = payload
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(payload), 1),
                                          max_str_len=MAX_TEXT_BYTES, max_bin_len=max_bytes, max_ext_len=0,
                                          max_array_len=MAX_VALUES, max_map_len=MAX_KEYS)
        self._unpacker.feed(payload)
        self._entries = 0

    def message(self) -> Any:
        value = self._value(0)
        if self._unpacker.tell() != len(self._payload):
            raise ProtocolError(f"not a msgpack message: {len(self._payload) - self._unpacker.tell()} bytes after it")
        return value

    def _marker(self) -> int:
        at = self._unpacker.tell()
        if at >= len(self._payload):
            raise ProtocolError("not a msgpack message: truncated")
        return self._payload[at]

    def _count(self, entries: int, limit: int, what: str) -> None:
        if entries > limit:
            raise ProtocolError(f"{what} of {entries} entries exceeds the limit of {limit}")
        self._entries += entries
        if self._entries > MAX_ENTRIES:
            raise ProtocolError(f"message of more than {MAX_ENTRIES} array and map entries exceeds the limit")

    def _value(self, depth: int) -> Any:
        marker = self._marker()
        if marker not in _MAPS and marker not in _ARRAYS:
            return self._unpacker.unpack()
        _check_depth(depth)
        if marker in _ARRAYS:
            length = self._unpacker.read_array_header()
            self._count(length, MAX_VALUES, "array")
            return [self._value(depth + 1) for _ in range(length)]
        length = self._unpacker.read_map_header()
        self._count(length, MAX_KEYS, "map")
        body: dict[str, Any] = {}
        for _ in range(length):
            if self._marker() not in _STRS:
                raise ProtocolError(_KEYS_NOT_STR)
            key = self._unpacker.unpack()
            body[key] = self._value(depth + 1)
        return body


def _unpack(payload: bytes, max_bytes: int) -> Any:
    """The message's value under the limits above. A payload of at most MAX_ENTRIES bytes cannot hold more entries
    than that (each takes a byte), so msgpack's C unpacker builds it at once and the container limits are checked
    on what it built; a longer one is walked entry by entry, so that nothing is built before it is checked."""
    if len(payload) > MAX_ENTRIES:
        return _Reader(payload, max_bytes).message()
    # The container limits on the headers, before anything is built (a map's header counts repeated keys too).
    value = msgpack.unpackb(payload, raw=False, max_str_len=MAX_TEXT_BYTES, max_bin_len=max_bytes, max_ext_len=0,
                            max_array_len=MAX_VALUES, max_map_len=MAX_KEYS, strict_map_key=False)
    if type(value) in _CONTAINER_TYPES:
        _check_container(value, 0)
    return value


def _check_container(value: dict[Any, Any] | list[Any], depth: int) -> None:
    """What msgpack's own limits do not cover, on a container already built: its depth and str keys, as _Reader
    checks them while walking (the entry counts msgpack checked on each header)."""
    _check_depth(depth)
    if type(value) is dict:
        if not all(type(key) is str for key in value):
            raise ProtocolError(_KEYS_NOT_STR)
        items: Any = value.values()
    else:
        items = value
    for item in items:
        if type(item) in _CONTAINER_TYPES:
            _check_container(item, depth + 1)


def _check_depth(depth: int) -> None:
    if depth == MAX_DEPTH:
        raise ProtocolError(f"containers nested deeper than {MAX_DEPTH} levels exceed the limit")


_KEYS_NOT_STR = "map keys must be msgpack str"
_CONTAINER_TYPES = (dict, list)


def _get(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in body:
        raise ProtocolError(f"{where}: missing field '{key}'")
    value = body[key]
    # bool is an int subclass; never accept it where a number is expected
    if isinstance(value, bool) and kind is not bool:
        raise ProtocolError(f"{where}: field '{key}' must be {_kind_name(kind)}, got bool")
    if not isinstance(value, kind):
        raise ProtocolError(f"{where}: field '{key}' must be {_kind_name(kind)}, got {type(value).__name__}")
    return value


def _int(body: dict[str, Any], key: str, where: str, low: int = INT64_MIN) -> int:
    """An int field within signed 64 bits and at least `low`."""
    value: int = _get(body, key, int, where)
    if not low <= value <= INT64_MAX:
        raise ProtocolError(f"{where}: field '{key}' must be an integer from {low} to {INT64_MAX}, got {value}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return kind.__name__


def _number_list(body: dict[str, Any], key: str, where: str, allow_empty: bool) -> list[int | float]:
    values: list[int | float] = _get(body, key, list, where)
    if not values and not allow_empty:
        raise ProtocolError(f"{where}: field '{key}' is empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ProtocolError(f"{where}: field '{key}' must hold numbers")
    return values


def _numbers(body: dict[str, Any], key: str, where: str, allow_empty: bool = False) -> np.ndarray:
    """A field of numbers as float64, finite or not."""
    return np.asarray(_number_list(body, key, where, allow_empty), dtype=np.float64)


def _non_finite(key: str, where: str) -> str:
    return f"{where}: field '{key}' holds a non-finite value"


def _vector(body: dict[str, Any], key: str, where: str, allow_empty: bool = False) -> np.ndarray:
    values = _number_list(body, key, where, allow_empty)
    # On the list: a few values are checked faster than NumPy can dispatch (the state stream's hot path).
    if not all(map(math.isfinite, values)):
        raise ProtocolError(_non_finite(key, where))
    return np.asarray(values, dtype=np.float64)


def _session(body: dict[str, Any], where: str) -> str | None:
    if "session" not in body:
        return None
    session: str = _get(body, "session", str, where)
    if not 0 < len(session.encode()) <= MAX_SESSION_BYTES:
        raise ProtocolError(f"{where}: field 'session' must be 1 to {MAX_SESSION_BYTES} bytes")
    return session


def _command(body: dict[str, Any], seq: int) -> Command:
    """A command, validated field by field; a non-finite action is checked last (NonFiniteCommand)."""
    ttl = float(_get(body, "ttl_ms", (int, float), "command"))
    if not math.isfinite(ttl) or ttl <= 0:
        raise ProtocolError("command: field 'ttl_ms' must be a positive number")
    command = Command(seq=seq, action=_numbers(body, "action", "command"),
                      stamp_capture=_int(body, "stamp_capture", "command"),
                      stamp_send=_int(body, "stamp_send", "command"), ttl_ms=ttl,
                      session=_session(body, "command"))
    if not np.all(np.isfinite(command.action)):
        raise NonFiniteCommand(_non_finite("action", f"command {seq}"), seq, command.session)
    return command


def _image(body: dict[str, Any], where: str) -> np.ndarray:
    width = _int(body, "width", where, low=1)
    height = _int(body, "height", where, low=1)
    encoding = _get(body, "encoding", str, where)
    data = _get(body, "data", bytes, where)
    if encoding != "bgr8":
        raise ProtocolError(f"{where}: field 'encoding' must be 'bgr8', got {encoding!r}")
    if len(data) != width * height * 3:
        raise ProtocolError(f"{where}: 'data' has {len(data)} bytes, expected width*height*3 = {width * height * 3}")
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


# The control streams' fast path: msgspec decodes a command, stop, heartbeat or state that holds exactly the
# protocol's fields straight into typed structs, in C. Whatever it does not take in full (another type, an extra
# field, a value out of range or non-finite, a long text, a map over 15 entries) goes to the checked path below,
# which accepts or refuses it and names the field: the fast path changes the speed, never the outcome
# (tests/runtime/link/test_protocol_fast_path.py compares the two on valid and malformed messages).
_Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
_Seq = Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
_Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_BYTES)]  # characters: the bytes are checked after
_Session = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_SESSION_BYTES)]  # "" when absent
_Values = Annotated[list[float], msgspec.Meta(min_length=1, max_length=MAX_VALUES)]


class _Wire(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    v: Literal[1]
    seq: _Seq


class _CommandWire(_Wire, tag="command"):
    action: _Values
    stamp_capture: _Int64
    stamp_send: _Int64
    ttl_ms: float
    session: _Session = ""


class _StopWire(_Wire, tag="stop"):
    stamp_send: _Int64
    reason: _Text
    session: _Session = ""


class _HeartbeatWire(_Wire, tag="heartbeat"):
    stamp_send: _Int64
    sender: _Text


class _StateWire(_Wire, tag="state"):
    stamp: _Int64
    q: _Values
    dq: _Values
    ee: Annotated[list[float], msgspec.Meta(max_length=MAX_VALUES)]
    stopped: bool
    last_command_seq: Annotated[int, msgspec.Meta(ge=-1, le=INT64_MAX)]


_CONTROL_DECODER = msgspec.msgpack.Decoder(_CommandWire | _StopWire | _HeartbeatWire | _StateWire)
_FIXMAP_FIRST, _FIXMAP_LAST = 0x80, 0x8F  # a map of at most 15 entries: within MAX_KEYS, duplicates included


def _finite(values: list[float]) -> bool:
    return all(map(math.isfinite, values))


def _fits(text: str, max_bytes: int) -> bool:
    """Within max_bytes of UTF-8 (a character takes at most 4: short texts are not encoded to tell)."""
    return len(text) <= max_bytes // 4 or len(text.encode()) <= max_bytes


def _decode_control(payload: bytes) -> Message | None:
    """The message if the fast path takes it in full, else None (the checked path decides)."""
    if not payload or not _FIXMAP_FIRST <= payload[0] <= _FIXMAP_LAST:
        return None
    try:
        wire = _CONTROL_DECODER.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if type(wire) is _StateWire:
        if not (_finite(wire.q) and _finite(wire.dq) and _finite(wire.ee)):
            return None
        return State(seq=wire.seq, stamp=wire.stamp, q=np.array(wire.q), dq=np.array(wire.dq), ee=np.array(wire.ee),
                     stopped=wire.stopped, last_command_seq=wire.last_command_seq)
    if type(wire) is _CommandWire:
        if not (_finite(wire.action) and math.isfinite(wire.ttl_ms) and wire.ttl_ms > 0
                and _fits(wire.session, MAX_SESSION_BYTES)):
            return None
        return Command(seq=wire.seq, action=np.array(wire.action), stamp_capture=wire.stamp_capture,
                       stamp_send=wire.stamp_send, ttl_ms=wire.ttl_ms, session=wire.session or None)
    if type(wire) is _StopWire:
        if not (_fits(wire.session, MAX_SESSION_BYTES) and _fits(wire.reason, MAX_TEXT_BYTES)):
            return None
        return Stop(seq=wire.seq, stamp_send=wire.stamp_send, reason=wire.reason, session=wire.session or None)
    assert type(wire) is _HeartbeatWire
    if not _fits(wire.sender, MAX_TEXT_BYTES):
        return None
    return Heartbeat(seq=wire.seq, stamp_send=wire.stamp_send, sender=wire.sender)


def decode(payload: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse and validate one message of at most `max_bytes` (its stream's limit). Raises ProtocolError naming the
    fault; never executes data."""
    if len(payload) > max_bytes:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the stream's limit of {max_bytes}")
    if len(payload) <= MAX_CONTROL_BYTES:
        message = _decode_control(payload)
        if message is not None:
            return message
    return _decode_checked(payload, max_bytes)


def _decode_checked(payload: bytes, max_bytes: int) -> Message:
    """decode's checked path: every field validated in turn, the first fault named."""
    try:
        body = _unpack(payload, max_bytes)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"not a msgpack message: {exc}") from exc
    if not isinstance(body, dict):
        raise ProtocolError(f"message must be a msgpack map, got {type(body).__name__}")
    version = body.get("v")
    # type check first: True == 1 and 1.0 == 1 in Python, but neither is a version a peer may send
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"field 'v': unsupported protocol version {version!r} (expected {PROTOCOL_VERSION})")
    kind = _get(body, "type", str, "message")
    seq = _int(body, "seq", kind, low=0)
    if kind == "command":
        return _command(body, seq)
    if kind == "stop":
        return Stop(seq=seq, stamp_send=_int(body, "stamp_send", kind), reason=_get(body, "reason", str, kind),
                    session=_session(body, kind))
    if kind == "heartbeat":
        return Heartbeat(
            seq=seq, stamp_send=_int(body, "stamp_send", kind), sender=_get(body, "sender", str, kind)
        )
    if kind == "state":
        return State(
            seq=seq,
            stamp=_int(body, "stamp", kind),
            q=_vector(body, "q", kind),
            dq=_vector(body, "dq", kind),
            ee=_vector(body, "ee", kind, allow_empty=True),
            stopped=_get(body, "stopped", bool, kind),
            last_command_seq=_int(body, "last_command_seq", kind, low=-1),
        )
    if kind == "frame":
        return Frame(seq=seq, stamp=_int(body, "stamp", kind), image=_image(body, kind))
    if kind == "goal":
        image = _image(_get(body, "image", dict, kind), "goal.image") if "image" in body else None
        state = _vector(body, "state", kind) if "state" in body else None
        capture = _get(body, "capture", bool, kind) if "capture" in body else False
        if capture and image is not None:
            raise ProtocolError("goal: 'capture' and 'image' exclude each other")
        if image is None and state is None and not capture:
            raise ProtocolError("goal: needs 'image', 'state' or both, or 'capture': true")
        return Goal(seq=seq, stamp_send=_int(body, "stamp_send", kind), image=image, state=state,
                    capture=capture)
    raise ProtocolError(f"field 'type': unknown message type {kind!r}")


def is_expired(command: Command, now: int | None = None) -> bool:
    """True once the command's time-to-live has passed on the receiver's clock."""
    now = now_ns() if now is None else now
    return now - command.stamp_send > command.ttl_ms * 1e6
