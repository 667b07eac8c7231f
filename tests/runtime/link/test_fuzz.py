"""Structure-aware fuzzing of the decoder: near-valid messages of every type (valid bodies with keys dropped, types
changed, NaN/inf/huge/negative numbers, wrong versions, extra keys, wrong lengths, bytes truncated or flipped) either
decode to a well-formed message or raise ProtocolError, nothing else."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.link import protocol
from runtime.link.protocol import INT64_MAX, INT64_MIN, ProtocolError

# Examples per message type (six types): docs/reliability.md, "Fuzzing", gives the time this takes.
EXAMPLES_PER_TYPE = 10_000

INT64 = st.integers(INT64_MIN, INT64_MAX)
SEQ = st.integers(0, INT64_MAX)
FLOAT = st.floats(allow_nan=False, allow_infinity=False, width=64)
TEXT = st.text(max_size=20)
# Values that are wrong almost anywhere: every msgpack type, numbers at and beyond the edges, long arrays.
WEIRD = st.one_of(
    st.none(), st.booleans(), st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1e308, -1e308, 1e39, 5e-324]),
    st.integers(-(2**63), 2**64 - 1), st.floats(), TEXT, st.binary(max_size=40),
    st.integers(0, 3000).map(lambda n: [0.5] * n),
    st.lists(st.one_of(st.floats(), st.integers(-5, 5), st.booleans(), TEXT, st.none()), max_size=6),
    st.dictionaries(TEXT, st.one_of(st.integers(-5, 5), TEXT, st.lists(st.integers(-5, 5), max_size=3)), max_size=4),
    st.builds(lambda: [[[1]]]), st.builds(lambda: {"image": {"width": 1}}),  # fresh objects: bodies are mutated
)


def _vector(min_size: int = 1) -> st.SearchStrategy[list[float]]:
    return st.lists(FLOAT, min_size=min_size, max_size=8)


@st.composite
def _image(draw: st.DrawFn) -> dict[str, Any]:
    width, height = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return {"width": width, "height": height, "encoding": "bgr8", "data": draw(st.binary(min_size=width * height * 3,
                                                                                         max_size=width * height * 3))}


def _common(kind: str) -> dict[str, st.SearchStrategy[Any]]:
    return {"v": st.just(protocol.PROTOCOL_VERSION), "type": st.just(kind), "seq": SEQ}


SESSION = st.text(min_size=1, max_size=16)
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "command": st.fixed_dictionaries(
        _common("command") | {"action": _vector(), "stamp_capture": INT64, "stamp_send": INT64,
                              "ttl_ms": st.floats(min_value=0.001, max_value=1e9)},
        optional={"session": SESSION}),
    "stop": st.fixed_dictionaries(_common("stop") | {"stamp_send": INT64, "reason": TEXT},
                                  optional={"session": SESSION}),
    "heartbeat": st.fixed_dictionaries(_common("heartbeat") | {"stamp_send": INT64, "sender": TEXT}),
    "state": st.fixed_dictionaries(_common("state") | {
        "stamp": INT64, "q": _vector(), "dq": _vector(), "ee": _vector(0), "stopped": st.booleans(),
        "last_command_seq": st.integers(-1, INT64_MAX)}),
    "frame": st.builds(lambda common, image: common | image, st.fixed_dictionaries(
        _common("frame") | {"stamp": INT64}), _image()),
    "goal": st.fixed_dictionaries(_common("goal") | {"stamp_send": INT64},
                                  optional={"image": _image(), "state": _vector(), "capture": st.booleans()}),
}


@st.composite
def _mutated_body(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """A valid body, then up to four changes: a key dropped, a value replaced, a key added, an array resized."""
    body = draw(VALID[kind])
    for _ in range(draw(st.integers(0, 4))):
        change = draw(st.sampled_from(["drop", "replace", "add", "resize", "image"]))
        keys = sorted(body)
        if change == "drop" and keys:
            del body[draw(st.sampled_from(keys))]
        elif change == "replace" and keys:
            body[draw(st.sampled_from(keys))] = draw(WEIRD)
        elif change == "add":
            body[draw(st.sampled_from(["extra", "v", "type", "session", "capture", "image", "state"]))] = draw(WEIRD)
        elif change == "resize":
            arrays = [key for key in keys if isinstance(body[key], list)]
            if arrays:
                body[draw(st.sampled_from(arrays))] = draw(st.integers(0, 3000).map(lambda n: [0.25] * n))
        elif change == "image":
            image = body.get("image", body)
            if isinstance(image, dict):
                image[draw(st.sampled_from(["width", "height", "encoding", "data"]))] = draw(WEIRD)
    return body


@st.composite
def near_valid(draw: st.DrawFn, kind: str) -> bytes:
    """A mutated body of `kind` packed (floats as float 32 or 64), then maybe truncated or with a byte changed."""
    body = draw(_mutated_body(kind))
    try:
        payload: bytes = msgpack.packb(body, use_bin_type=True, use_single_float=draw(st.booleans()))
    except OverflowError:  # a float beyond float 32
        payload = msgpack.packb(body, use_bin_type=True)
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip"]))
    if damage != "none" and payload:
        at = draw(st.integers(0, len(payload) - 1))
        payload = payload[:at] if damage == "truncate" else (
            payload[:at] + bytes([draw(st.integers(0, 255))]) + payload[at + 1:])
    return payload


def _finite_vector(values: np.ndarray, may_be_empty: bool = False) -> None:
    assert values.dtype == np.float64 and values.ndim == 1
    assert values.size <= protocol.MAX_VALUES and (may_be_empty or values.size > 0)
    assert np.all(np.isfinite(values))


def _int64(value: object, low: int = INT64_MIN) -> None:
    assert type(value) is int and low <= value <= INT64_MAX


def _image_ok(image: np.ndarray) -> None:
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3 and min(image.shape) >= 1


def _command(message: protocol.Message) -> None:
    assert isinstance(message, protocol.Command)
    _finite_vector(message.action)
    _int64(message.stamp_capture), _int64(message.stamp_send)
    assert math.isfinite(message.ttl_ms) and message.ttl_ms > 0
    assert message.session is None or 0 < len(message.session.encode()) <= protocol.MAX_SESSION_BYTES


def _stop(message: protocol.Message) -> None:
    assert isinstance(message, protocol.Stop) and isinstance(message.reason, str)
    _int64(message.stamp_send)
    assert message.session is None or 0 < len(message.session.encode()) <= protocol.MAX_SESSION_BYTES


def _heartbeat(message: protocol.Message) -> None:
    assert isinstance(message, protocol.Heartbeat) and isinstance(message.sender, str)
    _int64(message.stamp_send)


def _state(message: protocol.Message) -> None:
    assert isinstance(message, protocol.State) and type(message.stopped) is bool
    _finite_vector(message.q), _finite_vector(message.dq), _finite_vector(message.ee, may_be_empty=True)
    _int64(message.stamp), _int64(message.last_command_seq, low=-1)


def _frame(message: protocol.Message) -> None:
    assert isinstance(message, protocol.Frame)
    _image_ok(message.image)
    _int64(message.stamp)


def _goal(message: protocol.Message) -> None:
    assert isinstance(message, protocol.Goal) and type(message.capture) is bool
    assert message.image is not None or message.state is not None or message.capture
    assert not (message.capture and message.image is not None)
    if message.image is not None:
        _image_ok(message.image)
    if message.state is not None:
        _finite_vector(message.state)
    _int64(message.stamp_send)


WELL_FORMED: dict[str, Callable[[protocol.Message], None]] = {
    "command": _command, "stop": _stop, "heartbeat": _heartbeat, "state": _state, "frame": _frame, "goal": _goal}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_near_valid_messages_decode_well_formed_or_raise_protocol_error(kind: str) -> None:
    decoded: list[str] = []

    @settings(max_examples=EXAMPLES_PER_TYPE, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(payload=near_valid(kind))
    def check(payload: bytes) -> None:
        for max_bytes in (protocol.MAX_CONTROL_BYTES, protocol.MAX_MESSAGE_BYTES):
            try:
                message = protocol.decode(payload, max_bytes)
            except ProtocolError:
                continue
            _int64(message.seq, low=0)
            WELL_FORMED[message.type](message)
            decoded.append(message.type)

    check()
    # The fuzzing is near-valid: a fair share of the examples decode (of this type, or another when 'type' changed).
    assert decoded.count(kind) > EXAMPLES_PER_TYPE // 20, f"only {decoded.count(kind)} {kind} messages decoded"


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_bodies_decode(kind: str) -> None:
    """The generator's starting point is valid (but for goals that name no view or state, or a view twice), so the
    mutations are what the decoder refuses."""

    @settings(max_examples=200, deadline=None, database=None)
    @given(body=VALID[kind])
    def check(body: dict[str, Any]) -> None:
        payload = msgpack.packb(body, use_bin_type=True)
        names_nothing = not ({"image", "state"} & body.keys() or body.get("capture"))
        if kind == "goal" and (names_nothing or (body.get("capture") and "image" in body)):
            with pytest.raises(ProtocolError, match=r"needs|exclude"):
                protocol.decode(payload)
        else:
            assert protocol.decode(payload).type == kind

    check()
