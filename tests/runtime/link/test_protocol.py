"""The wire codec: every message type round-trips; anything else is a ProtocolError naming the field."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.link import protocol
from runtime.link.protocol import Command, Frame, Goal, Heartbeat, ProtocolError, State, Stop

IMAGE = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)

MESSAGES: list[protocol.Message] = [
    Command(
        seq=7,
        action=np.array([0.5, -1.25]),
        stamp_capture=1_700_000_000_000_000_000,
        stamp_send=1_700_000_000_010_000_000,
        ttl_ms=200.0,
    ),
    Stop(seq=8, stamp_send=123, reason="operator"),
    Command(seq=16, action=np.array([0.5]), stamp_capture=1, stamp_send=2, ttl_ms=100.0, session="9f2c41d07a3e5b68"),
    Stop(seq=17, stamp_send=3, reason="runtime exiting", session="9f2c41d07a3e5b68"),
    Heartbeat(seq=9, stamp_send=456, sender="sim"),
    State(
        seq=10,
        stamp=789,
        q=np.array([0.1, 0.2]),
        dq=np.array([0.0, -0.3]),
        ee=np.array([0.5, 0.1]),
        stopped=True,
        last_command_seq=-1,
    ),
    State(
        seq=11,
        stamp=790,
        q=np.array([0.1]),
        dq=np.array([0.0]),
        ee=np.zeros(0),
        stopped=False,
        last_command_seq=3,
    ),
    Frame(seq=12, stamp=1000, image=IMAGE),
    Goal(seq=13, stamp_send=2000, image=IMAGE, state=np.array([1.0, -1.0])),
    Goal(seq=14, stamp_send=2001, image=None, state=np.array([1.0, -1.0])),
    Goal(seq=15, stamp_send=2002, image=IMAGE, state=None),
]


def _assert_same(a: object, b: object) -> None:
    assert type(a) is type(b)
    for key, value in vars(a).items():
        other = vars(b)[key]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            assert value is not None and other is not None, key
            np.testing.assert_array_equal(value, other, err_msg=key)
        else:
            assert value == other, key


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.type}-{m.seq}")
def test_every_message_type_round_trips(message: protocol.Message) -> None:
    _assert_same(protocol.decode(protocol.encode(message)), message)


def test_frame_image_keeps_bgr_layout() -> None:
    decoded = protocol.decode(protocol.encode(Frame(seq=0, stamp=1, image=IMAGE)))
    assert isinstance(decoded, Frame)
    assert decoded.image.dtype == np.uint8 and decoded.image.shape == (4, 5, 3)


@settings(max_examples=100, deadline=None)
@given(
    seq=st.integers(0, 2**63 - 1),
    action=st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=1, max_size=8),
    ttl=st.floats(min_value=1e-3, max_value=1e6),
)
def test_any_valid_command_round_trips(seq: int, action: list[float], ttl: float) -> None:
    command = Command(seq=seq, action=np.array(action), stamp_capture=seq, stamp_send=seq, ttl_ms=ttl)
    _assert_same(protocol.decode(protocol.encode(command)), command)


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=200))
def test_arbitrary_bytes_only_ever_raise_protocol_error(payload: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        protocol.decode(payload)


_DELETE = object()


def _body(message: protocol.Message, **changes: Any) -> bytes:
    """The message's wire map with fields replaced (or removed with _DELETE), re-packed."""
    body = msgpack.unpackb(protocol.encode(message))
    for key, value in changes.items():
        if value is _DELETE:
            del body[key]
        else:
            body[key] = value
    return msgpack.packb(body, use_bin_type=True)


COMMAND = MESSAGES[0]
STOP = MESSAGES[1]
HEARTBEAT = MESSAGES[4]
STATE = MESSAGES[5]
FRAME = MESSAGES[7]
GOAL_WITHOUT_IMAGE = MESSAGES[9]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xc1\xff garbage", "not a msgpack message"),
        (msgpack.packb([1, 2, 3]), "must be a msgpack map"),
        (msgpack.packb("command"), "must be a msgpack map"),
        (_body(COMMAND, v=2), "field 'v'"),
        (_body(COMMAND, v=True), "field 'v'"),
        (_body(COMMAND, v=1.0), "field 'v'"),
        (_body(COMMAND, v=_DELETE), "field 'v'"),
        (_body(COMMAND, type="teleport"), "field 'type'"),
        (_body(COMMAND, type=3), "field 'type'"),
        (_body(COMMAND, seq=_DELETE), "missing field 'seq'"),
        (_body(COMMAND, seq="7"), "field 'seq' must be int"),
        (_body(COMMAND, seq=True), "field 'seq' must be int, got bool"),
        (_body(COMMAND, action=_DELETE), "missing field 'action'"),
        (_body(COMMAND, action=[]), "field 'action' is empty"),
        (_body(COMMAND, action=[0.1, "fast"]), "field 'action' must hold numbers"),
        (_body(COMMAND, action=[0.1, float("nan")]), "field 'action' holds a non-finite value"),
        (_body(COMMAND, action=[float("inf"), 0.0]), "field 'action' holds a non-finite value"),
        (_body(COMMAND, action=[float("nan")], ttl_ms=0), "field 'ttl_ms'"),  # the rest is checked first
        (_body(COMMAND, session=7), "field 'session' must be str"),
        (_body(COMMAND, session=""), "field 'session' must be 1 to 64 bytes"),
        (_body(STOP, session="x" * 65), "field 'session' must be 1 to 64 bytes"),
        (_body(COMMAND, ttl_ms=0), "field 'ttl_ms'"),
        (_body(COMMAND, ttl_ms=float("nan")), "field 'ttl_ms'"),
        (_body(COMMAND, stamp_send=1.5), "field 'stamp_send' must be int"),
        (_body(COMMAND, stamp_capture=_DELETE), "missing field 'stamp_capture'"),
        (_body(STOP, reason=_DELETE), "missing field 'reason'"),
        (_body(HEARTBEAT, sender=1), "field 'sender' must be str"),
        (_body(STATE, stopped=1), "field 'stopped' must be bool"),
        (_body(STATE, q=[0.1, float("nan")]), "field 'q' holds a non-finite value"),
        (_body(STATE, last_command_seq=_DELETE), "missing field 'last_command_seq'"),
        (_body(FRAME, data=b"\x00" * 5), "'data' has 5 bytes"),
        (_body(FRAME, encoding="rgb8"), "field 'encoding'"),
        (_body(GOAL_WITHOUT_IMAGE, state=_DELETE), "goal: needs 'image', 'state' or both"),
        (b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1), "exceeds"),
    ],
)
def test_malformed_messages_raise_protocol_error_naming_the_field(payload: bytes, expected: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(expected)):
        protocol.decode(payload)


def test_a_command_that_is_valid_but_for_a_non_finite_action_names_its_seq_and_session() -> None:
    """Controllers hold still at once on such a command (docs/protocol.md), so the error says which one it was."""
    with pytest.raises(protocol.NonFiniteCommand, match="command 7: field 'action' holds a non-finite value") as caught:
        protocol.decode(_body(COMMAND, action=[0.1, float("nan")], session="abc"))
    assert caught.value.seq == 7 and caught.value.session == "abc"
    with pytest.raises(ProtocolError) as other:  # a malformed command is not mistaken for a non-finite one
        protocol.decode(_body(COMMAND, action=[float("nan")], stamp_send="now"))
    assert not isinstance(other.value, protocol.NonFiniteCommand)


def test_a_sender_without_a_session_decodes_as_session_none() -> None:
    decoded = protocol.decode(protocol.encode(COMMAND))
    assert isinstance(decoded, Command) and decoded.session is None
    assert "session" not in msgpack.unpackb(protocol.encode(COMMAND))


def test_unknown_extra_fields_are_ignored_for_forward_compatibility() -> None:
    decoded = protocol.decode(_body(COMMAND, gripper="open"))
    _assert_same(decoded, COMMAND)


def test_expiry_is_checked_against_the_receivers_clock() -> None:
    command = Command(seq=0, action=np.zeros(2), stamp_capture=0, stamp_send=1_000_000_000, ttl_ms=100.0)
    assert not protocol.is_expired(command, now=1_000_000_000 + 100_000_000)
    assert protocol.is_expired(command, now=1_000_000_000 + 100_000_001)
    assert not protocol.is_expired(command, now=1_000_000_000 - 5_000_000_000)  # sender's clock ahead
    fresh = Command(seq=1, action=np.zeros(2), stamp_capture=0, stamp_send=protocol.now_ns(), ttl_ms=60_000.0)
    assert not protocol.is_expired(fresh)
    assert protocol.is_expired(command)  # sent in 1970


def test_encode_refuses_images_that_are_not_bgr8() -> None:
    with pytest.raises(ProtocolError, match="image must be uint8"):
        protocol.encode(Frame(seq=0, stamp=0, image=np.zeros((4, 4), dtype=np.uint8)))


def test_a_map_header_over_the_key_limit_is_refused_even_when_its_keys_repeat() -> None:
    # 40 entries, 35 of them the same key: a dict of 5 once built, but the header says 40 (> MAX_KEYS).
    entries = [("v", 1), ("type", "heartbeat"), ("seq", 0), ("stamp_send", 1)] + [("sender", "x")] * 36
    payload = b"\xde" + len(entries).to_bytes(2, "big") + b"".join(
        msgpack.packb(key) + msgpack.packb(value) for key, value in entries)
    assert len(payload) <= protocol.MAX_ENTRIES  # the fast path's size
    with pytest.raises(protocol.ProtocolError):
        protocol.decode(payload, protocol.MAX_CONTROL_BYTES)
