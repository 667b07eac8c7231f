"""The control streams' fast path (msgspec) against the checked path: on every message either it declines (and the
checked path decides) or it returns exactly what the checked path returns (runtime/link/protocol.py)."""

from __future__ import annotations

import itertools
from dataclasses import fields

import msgpack
import numpy as np
import pytest

from runtime.evaluation.fuzz import near_valid
from runtime.link import protocol


def _same(a: protocol.Message, b: protocol.Message) -> bool:
    if type(a) is not type(b):
        return False
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and x.shape == y.shape
                    and np.array_equal(x, y, equal_nan=True)):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _outcome(payload: bytes) -> protocol.Message | str:
    try:
        return protocol._decode_checked(payload, protocol.MAX_CONTROL_BYTES)
    except protocol.ProtocolError as exc:
        return f"refused: {exc}"


CONTROL = ("command", "stop", "heartbeat", "state")


def test_the_fast_path_takes_every_valid_control_message_and_agrees_with_the_checked_path() -> None:
    now = protocol.now_ns()
    messages: list[protocol.Message] = [
        protocol.Command(seq=7, action=np.array([0.1, -2.5, 3.0]), stamp_capture=now, stamp_send=now + 1,
                         ttl_ms=150.0, session="ab" * 8),
        protocol.Command(seq=0, action=np.array([1e300]), stamp_capture=-1, stamp_send=0, ttl_ms=1e-3),
        protocol.Stop(seq=2**63 - 1, stamp_send=now, reason="é" * 2048, session="x" * 64),
        protocol.Stop(seq=1, stamp_send=now, reason="", session="é" * 32),
        protocol.Heartbeat(seq=3, stamp_send=now, sender=""),
        protocol.State(seq=4, stamp=now, q=np.zeros(1024), dq=np.ones(1024), ee=np.zeros(0), stopped=True,
                       last_command_seq=-1),
    ]
    for message in messages:
        payload = protocol.encode(message)
        fast = protocol._decode_control(payload)
        assert fast is not None and _same(fast, message) and _same(fast, _outcome(payload)), message


@pytest.mark.parametrize("seed", [0, 1])
def test_on_near_valid_messages_the_fast_path_declines_or_agrees(seed: int) -> None:
    taken = declined = accepted_by_checked = 0
    for payload in itertools.islice(near_valid(CONTROL, seed), 6000):
        fast, checked = protocol._decode_control(payload), _outcome(payload)
        if fast is None:
            declined += 1
        else:
            taken += 1
            assert not isinstance(checked, str) and _same(fast, checked), (payload.hex(), fast, checked)
        accepted_by_checked += not isinstance(checked, str)
    # Both kinds occur, so the comparison covers messages the checked path accepts (extra fields, ints for
    # floats) and ones it refuses.
    assert taken > 100 and declined > 3000 and accepted_by_checked > taken


def _map(*items: tuple[str, object]) -> bytes:
    return bytes([0x80 + len(items)]) + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in items)


def test_repeated_keys_a_map_16_header_and_trailing_bytes_end_as_the_checked_path_says() -> None:
    state = [("v", 1), ("type", "state"), ("seq", 3), ("stamp", 5), ("q", [0.5]), ("dq", [0.0]), ("ee", []),
             ("stopped", False), ("last_command_seq", -1)]
    repeated_seq = _map(*state, ("seq", 9))
    repeated_type = _map(("type", "command"), *state)
    wide_header = b"\xde\x00\x09" + _map(*state)[1:]  # the same 9 entries under a map 16 header
    trailing = protocol.encode(protocol.Heartbeat(seq=1, stamp_send=2, sender="c")) + b"\x00"
    for payload in (repeated_seq, repeated_type, wide_header, trailing):
        fast, checked = protocol._decode_control(payload), _outcome(payload)
        assert fast is None or (not isinstance(checked, str) and _same(fast, checked)), (payload, fast, checked)
    assert protocol.decode(repeated_seq).seq == 9  # the last value of a repeated key, on both paths
    assert protocol._decode_control(wide_header) is None and isinstance(_outcome(wide_header), protocol.State)
    assert protocol._decode_control(trailing) is None
    with pytest.raises(protocol.ProtocolError, match=r"not a msgpack message: .*extra data"):
        protocol.decode(trailing)


def test_texts_over_their_byte_limit_are_declined_and_refused() -> None:
    long_reason = protocol.encode(protocol.Stop(seq=1, stamp_send=2, reason="é" * 2049))  # 4098 bytes
    long_session = protocol.encode(protocol.Command(seq=1, action=np.zeros(2), stamp_capture=0, stamp_send=0,
                                                    ttl_ms=1.0, session="é" * 33))  # 66 bytes
    for payload in (long_reason, long_session):
        assert protocol._decode_control(payload) is None and isinstance(_outcome(payload), str)


def test_encode_writes_the_bytes_msgpack_writes() -> None:
    """encode uses msgspec's encoder; peers in other languages were written against msgpack's smallest forms."""
    now = protocol.now_ns()
    messages: list[protocol.Message] = [
        protocol.Command(seq=s, action=np.array([0.1, -2.5, 3.0]), stamp_capture=-s, stamp_send=now, ttl_ms=150.0,
                         session="ab" * 8) for s in (0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**63 - 1)]
    messages += [protocol.Stop(seq=1, stamp_send=-(2**63), reason="r" * n) for n in (0, 31, 32, 255, 256, 65536)]
    messages += [protocol.State(seq=4, stamp=now, q=np.zeros(n), dq=np.ones(n), ee=np.zeros(0), stopped=True,
                                last_command_seq=-1) for n in (1, 15, 16, 1024)]
    messages += [protocol.Frame(seq=1, stamp=now, image=np.zeros((h, 4, 3), np.uint8)) for h in (1, 21, 22, 5462)]
    messages += [protocol.Goal(seq=1, stamp_send=now, image=None, state=np.array([0.5, -1.0])),
                 protocol.Goal(seq=2, stamp_send=now, image=None, state=None, capture=True)]
    for message in messages:
        payload = protocol.encode(message)
        assert payload == msgpack.packb(msgpack.unpackb(payload), use_bin_type=True), message
