"""Link faults over real sockets: huge messages refused before they are decoded, an oversized message that costs
the connection, goals superseded or too small, a silent controller said once. Each is counted."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
import zmq
from waiting import wait_state

from runtime.goals import GoalServer
from runtime.link import protocol
from runtime.link.controller_side import ControllerLink
from runtime.link.runtime_side import RuntimeLink
from runtime.sources.zmq_frames import ZmqFrameSource

ANY_PORT = "tcp://127.0.0.1:*"
WaitUntil = Callable[..., bool]
HUGE = [0.5] * 900_000  # 8.1 MB of floats: under the 8 MiB limit
# Many tiny maps: a message under 8 MiB whose decoding builds a million Python objects.
MANY_OBJECTS = [[{"a": 1}] * 1000] * 1000


def _state(stamp: int | None = None) -> bytes:
    return protocol.encode(protocol.State(seq=0, stamp=protocol.now_ns() if stamp is None else stamp,
                                          q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(0), stopped=True,
                                          last_command_seq=-1))


def _frame(side: int = 8) -> bytes:
    return protocol.encode(protocol.Frame(seq=0, stamp=protocol.now_ns(), image=np.zeros((side, side, 3), np.uint8)))


@pytest.fixture
def controller() -> Iterator[ControllerLink]:
    link = ControllerLink(action_dim=2, command_endpoint=ANY_PORT, state_endpoint=ANY_PORT)
    yield link
    link.close()


@pytest.fixture
def fake_controller(zmq_context: zmq.Context) -> tuple[zmq.Socket[bytes], str]:
    """A PUB bound where a controller's state or frame stream would be."""
    publisher = zmq_context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(ANY_PORT)
    return publisher, publisher.getsockopt_string(zmq.LAST_ENDPOINT)


def _command(seqs: Iterator[int], **changes: object) -> bytes:
    body = {"v": 1, "type": "command", "seq": next(seqs), "action": [0.1, 0.2], "stamp_capture": 0,
            "stamp_send": protocol.now_ns(), "ttl_ms": 1000.0}
    return msgpack.packb(body | changes, use_bin_type=True)


def test_huge_commands_are_refused_by_size_before_they_are_decoded(
        controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil) -> None:
    """900 000 action values, or a million tiny objects: refused as bad messages by the limits checked while
    unpacking (not decoded and then found to be the wrong dimension); valid commands still get through."""
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(controller.command_endpoint)
    seqs = itertools.count()
    assert wait_until(lambda: (publisher.send(_command(seqs)), controller.poll(20))[1] is not None)
    before = dict(controller.counters)
    for payload in (_command(seqs, action=HUGE), _command(seqs, extra=MANY_OBJECTS),
                    _command(seqs, reason="x" * 100_000)):
        assert len(payload) < protocol.MAX_MESSAGE_BYTES
        publisher.send(payload)
    assert wait_until(lambda: (controller.poll(20), controller.counters["bad_messages"])[1]
                      == before["bad_messages"] + 3), controller.counters
    assert controller.counters["wrong_dim"] == before["wrong_dim"]
    assert controller.last_error is not None and "limit" in controller.last_error
    publisher.send(_command(seqs))
    assert wait_until(lambda: controller.poll(20) is not None)


def test_a_message_over_8_mib_is_counted_and_the_controller_keeps_the_connection(
        controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil) -> None:
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(controller.command_endpoint)
    seqs = itertools.count()
    assert wait_until(lambda: (publisher.send(_command(seqs)), controller.poll(20))[1] is not None)
    publisher.send(b"\x00" * (protocol.MAX_MESSAGE_BYTES + 1))
    publisher.send(_command(seqs))  # sent at once after it: the connection was kept, so it arrives
    assert wait_until(lambda: (controller.poll(20), controller.counters["bad_messages"])[1] == 1)
    assert wait_until(lambda: controller.counters["commands"] >= 2 or controller.poll(20) is not None)


@pytest.mark.parametrize("size", [protocol.MAX_MESSAGE_BYTES + 1, protocol.TRANSPORT_MAX_BYTES + 1])
def test_the_state_stream_survives_an_oversized_message(
        size: int, fake_controller: tuple[zmq.Socket[bytes], str], wait_until: WaitUntil) -> None:
    """Over 8 MiB: dropped and counted. Over ZeroMQ's own limit too: ZeroMQ drops the connection, which the
    runtime (the connecting side) dials again and counts; valid states resume either way."""
    publisher, endpoint = fake_controller
    with RuntimeLink("tcp://127.0.0.1:9", endpoint) as runtime:
        assert wait_until(lambda: (publisher.send(_state()), wait_state(runtime, 0.02))[1] is not None)
        publisher.send(b"\x00" * size)
        # The socket conflates: a state sent at once would replace the oversized message before it is read.
        assert wait_until(lambda: (runtime.latest_state(), runtime.counters)[1]["bad_messages"]
                          + runtime.counters["state_reconnects"] == 1), runtime.counters
        assert wait_until(lambda: (publisher.send(_state()), wait_state(runtime, 0.02))[1] is not None,
                          timeout_s=10.0), runtime.counters
        if size > protocol.TRANSPORT_MAX_BYTES:
            assert runtime.counters["state_reconnects"] == 1
        else:
            assert runtime.counters["bad_messages"] == 1 and runtime.counters["state_reconnects"] == 0


def test_the_frame_stream_survives_a_message_over_the_transport_limit(
        fake_controller: tuple[zmq.Socket[bytes], str], wait_until: WaitUntil) -> None:
    publisher, endpoint = fake_controller
    source = ZmqFrameSource("zmq://test", endpoint)
    try:
        assert wait_until(lambda: (publisher.send(_frame()), source.read_latest(0.02))[1] is not None)
        publisher.send(b"\x00" * (protocol.TRANSPORT_MAX_BYTES + 1))
        assert wait_until(lambda: (publisher.send(_frame()), source.read_latest(0.02))[1] is not None
                          and source.counters["frame_reconnects"] == 1, timeout_s=10.0), source.counters
    finally:
        source.close()


def test_frames_smaller_than_the_model_takes_are_refused_and_counted(
        fake_controller: tuple[zmq.Socket[bytes], str], wait_until: WaitUntil,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 32x32 camera for a 64x64 model: never upscaled silently into the encoder."""
    publisher, endpoint = fake_controller
    source = ZmqFrameSource("zmq://test", endpoint, min_image_size=(64, 64))
    try:
        assert wait_until(lambda: (publisher.send(_frame(64)), source.read_latest(0.02))[1] is not None)
        assert wait_until(lambda: (publisher.send(_frame(32)), source.read_latest(0.02))[1] is None
                          and source.counters["wrong_frame_size"] >= 3)
        assert source.frames == 1 and any("32x32" in record.getMessage() for record in caplog.records)
        assert wait_until(lambda: (publisher.send(_frame(96)), source.read_latest(0.02))[1] is not None)
    finally:
        source.close()


def _goal(**changes: object) -> bytes:
    body = {"v": 1, "type": "goal", "seq": 0, "stamp_send": protocol.now_ns(), "state": [0.1, 0.2]}
    return msgpack.packb(body | changes, use_bin_type=True)


@pytest.fixture
def goal_server() -> Iterator[GoalServer]:
    server = GoalServer(ANY_PORT, min_image_size=(16, 16))
    yield server
    server.close()


@pytest.fixture
def goal_client(goal_server: GoalServer, zmq_context: zmq.Context) -> zmq.Socket[bytes]:
    client = zmq_context.socket(zmq.PUSH)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(goal_server.endpoint)
    return client


def _all_taken(server: GoalServer, wait_until: WaitUntil, counted: int) -> list[protocol.Goal]:
    taken: list[protocol.Goal] = []

    def done() -> bool:
        goal = server.receive()
        if goal is not None:
            taken.append(goal)
        return len(taken) + server.bad_messages + server.counters["superseded_goals"] >= counted

    assert wait_until(done), server.counters
    return taken


def test_huge_goals_are_refused_before_decoding_and_small_views_refused(
        goal_server: GoalServer, goal_client: zmq.Socket[bytes], wait_until: WaitUntil) -> None:
    tiny = {"width": 8, "height": 8, "encoding": "bgr8", "data": bytes(8 * 8 * 3)}
    for payload in (_goal(state=HUGE), _goal(extra=MANY_OBJECTS), _goal(image=tiny)):
        goal_client.send(payload)
        assert wait_until(lambda: goal_server.receive() is None and goal_server.bad_messages >= 1)
        goal_server.bad_messages = 0
        assert goal_server.last_error is not None
    goal_client.send(_goal())
    assert len(_all_taken(goal_server, wait_until, 1)) == 1


def test_goals_superseded_by_a_newer_one_are_counted(
        goal_server: GoalServer, goal_client: zmq.Socket[bytes], wait_until: WaitUntil) -> None:
    goal_client.send(_goal(seq=0))
    assert len(_all_taken(goal_server, wait_until, 1)) == 1
    for seq in range(1, 6):
        goal_client.send(_goal(seq=seq))
    time.sleep(0.2)  # all five wait together, so one receive takes the newest
    taken = _all_taken(goal_server, wait_until, 5)
    assert taken[-1].seq == 5
    assert goal_server.counters["superseded_goals"] == 5 - len(taken)
    assert goal_server.counters["superseded_goals"] >= 1


def test_the_runtime_says_once_when_the_controller_falls_silent(
        fake_controller: tuple[zmq.Socket[bytes], str], wait_until: WaitUntil,
        caplog: pytest.LogCaptureFixture) -> None:
    """A dead controller is said (once per silence), whether or not it is also the camera."""
    publisher, endpoint = fake_controller
    with RuntimeLink("tcp://127.0.0.1:9", endpoint, state_timeout_ms=100) as runtime:
        assert wait_until(lambda: (publisher.send(_state()), wait_state(runtime, 0.02))[1] is not None)
        caplog.set_level(logging.WARNING)
        for _ in range(30):
            runtime.latest_state()
            time.sleep(0.01)
        silent = [record.getMessage() for record in caplog.records if "nothing from the controller" in
                  record.getMessage()]
        assert len(silent) == 1, silent
        assert wait_until(lambda: (publisher.send(_state()), wait_state(runtime, 0.02))[1] is not None)
        assert any("back" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("field", "value"), [("seq", 2**63), ("seq", -1), ("stamp_send", 2**64 - 1)])
def test_integers_beyond_signed_64_bit_or_negative_seq_are_refused(field: str, value: int) -> None:
    with pytest.raises(protocol.ProtocolError, match=f"'{field}'"):
        protocol.decode(_command(itertools.count(), **{field: value}))
