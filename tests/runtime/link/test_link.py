"""RuntimeLink and ControllerLink over real sockets: commands arrive, newest wins, bad input is counted."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
import zmq
from waiting import wait_state

from runtime.link import protocol
from runtime.link.controller_side import ControllerLink, Watchdog
from runtime.link.runtime_side import RuntimeLink

ANY_PORT = "tcp://127.0.0.1:*"
WaitUntil = Callable[..., bool]


@pytest.fixture
def controller() -> Iterator[ControllerLink]:
    link = ControllerLink(action_dim=2, command_endpoint=ANY_PORT, state_endpoint=ANY_PORT, frame_endpoint=ANY_PORT)
    yield link
    link.close()


@pytest.fixture
def runtime(controller: ControllerLink) -> Iterator[RuntimeLink]:
    link = RuntimeLink(controller.command_endpoint, controller.state_endpoint)
    yield link
    link.close()


def _poll_until(controller: ControllerLink, counter: str, target: int) -> list[protocol.Command | protocol.Stop]:
    """Poll until counters[counter] reaches target; return what poll handed out on the way."""
    handed_out: list[protocol.Command | protocol.Stop] = []
    deadline = time.monotonic() + 5.0
    while controller.counters[counter] < target and time.monotonic() < deadline:
        message = controller.poll(timeout_ms=50)
        if message is not None:
            handed_out.append(message)
    assert controller.counters[counter] >= target, controller.counters
    return handed_out


def _connect_commands(runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil) -> None:
    """PUB/SUB drops what is sent before the connection exists: send until one command gets through."""
    assert wait_until(lambda: (runtime.send_command(np.zeros(2), 0, 1000.0), controller.poll(20))[1] is not None)


def _connect_states(runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil) -> None:
    def one_state_arrives() -> bool:
        controller.publish_state(np.zeros(2), np.zeros(2), None, True, -1)
        return wait_state(runtime, 0.02) is not None

    assert wait_until(one_state_arrives)


def test_bound_endpoints_resolve_the_ephemeral_port(controller: ControllerLink) -> None:
    for endpoint in (controller.command_endpoint, controller.state_endpoint, controller.frame_endpoint):
        assert endpoint is not None and endpoint.startswith("tcp://127.0.0.1:")
        assert not endpoint.endswith("*") and int(endpoint.rsplit(":", 1)[1]) > 0


def test_commands_arrive_with_their_fields(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_commands(runtime, controller, wait_until)
    seq = runtime.send_command(np.array([0.5, -0.25]), stamp_capture=42, ttl_ms=500.0)
    (command,) = _poll_until(controller, "commands", controller.counters["commands"] + 1)
    assert isinstance(command, protocol.Command)
    assert command.seq == seq and command.stamp_capture == 42 and command.ttl_ms == 500.0
    np.testing.assert_array_equal(command.action, [0.5, -0.25])
    assert runtime.counters["commands_sent"] >= 2


def test_newest_command_wins_and_a_stop_beats_older_commands(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_commands(runtime, controller, wait_until)
    base = controller.counters["commands"]
    seqs = [runtime.send_command(np.array([float(i), 0.0]), 0, 1000.0) for i in range(3)]
    time.sleep(0.2)  # let all three reach the controller's queue, so one poll drains them together
    handed_out = _poll_until(controller, "commands", base + 3)
    assert [m.seq for m in handed_out] == [seqs[-1]]  # the older two were superseded, not handed out

    runtime.send_command(np.array([1.0, 1.0]), 0, 1000.0)
    stop_seq = runtime.send_stop("operator")
    time.sleep(0.2)
    handed_out = _poll_until(controller, "stops", 1)
    assert isinstance(handed_out[-1], protocol.Stop)
    assert handed_out[-1].seq == stop_seq and handed_out[-1].reason == "operator"
    assert runtime.counters["stops_sent"] == 1
    assert stop_seq > seqs[-1]  # seq increases across commands and stops


def test_states_and_heartbeats_reach_the_runtime(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_states(runtime, controller, wait_until)
    assert runtime.latest_state() is None  # nothing new since the last call
    controller.publish_state(np.array([0.1, 0.2]), np.array([0.3, 0.4]), np.array([0.5, 0.6]), False, 17)
    state = wait_state(runtime, 5.0)
    assert state is not None
    np.testing.assert_array_equal(state.q, [0.1, 0.2])
    np.testing.assert_array_equal(state.ee, [0.5, 0.6])
    assert state.stopped is False and state.last_command_seq == 17

    heard_before = runtime.last_heard
    controller.publish_heartbeat("arm")
    assert wait_until(lambda: runtime.latest_state() is None and runtime.counters["heartbeats"] == 1)
    assert runtime.last_heard is not None and heard_before is not None and runtime.last_heard > heard_before


def test_runtime_drops_and_counts_bad_state_messages(zmq_context: zmq.Context, wait_until: WaitUntil) -> None:
    """A misbehaving controller: garbage, wrong version, wrong type. Counted, never raised."""
    publisher = zmq_context.socket(zmq.PUB)
    publisher.bind(ANY_PORT)
    endpoint = publisher.getsockopt_string(zmq.LAST_ENDPOINT)
    good = protocol.encode(
        protocol.State(seq=0, stamp=1, q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(0), stopped=True, last_command_seq=-1)
    )
    wrong_version = msgpack.packb(msgpack.unpackb(good) | {"v": 99})
    wrong_type = protocol.encode(protocol.Stop(seq=1, stamp_send=1, reason="not a state"))
    with RuntimeLink("tcp://127.0.0.1:9", endpoint, context=zmq_context) as runtime:
        assert wait_until(lambda: (publisher.send(good), wait_state(runtime, 0.02))[1] is not None)
        # The state socket conflates, so send one bad message at a time and wait for it to be counted.
        for count, payload in enumerate([b"\x00garbage", wrong_version, wrong_type, msgpack.packb([1])], 1):
            publisher.send(payload)
            assert wait_until(lambda c=count: runtime.latest_state() is None and runtime.counters["bad_messages"] == c)
        assert runtime.last_error is not None and "msgpack map" in runtime.last_error
        assert runtime.counters["states"] >= 1


def test_controller_drops_and_counts_every_kind_of_bad_command(
    controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil
) -> None:
    """A misbehaving runtime: each bad message is dropped and counted by reason; poll never hands it out (a
    non-finite action is handed out as a stop in its place)."""
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(controller.command_endpoint)

    seqs = itertools.count()

    def command(**changes: object) -> bytes:
        body = {
            "v": 1,
            "type": "command",
            "seq": next(seqs),
            "action": [0.1, 0.2],
            "stamp_capture": 0,
            "stamp_send": protocol.now_ns(),
            "ttl_ms": 1000.0,
        }
        return msgpack.packb(body | changes, use_bin_type=True)

    assert wait_until(lambda: (publisher.send(command()), controller.poll(20))[1] is not None)
    before = dict(controller.counters)
    bad = {
        "bad_messages": [
            b"garbage",
            command(v=2),
            command(ttl_ms=-1),
            protocol.encode(protocol.Frame(seq=0, stamp=0, image=np.zeros((2, 2, 3), np.uint8))),
        ],
        "expired": [command(stamp_send=protocol.now_ns() - 10_000_000_000)],
        "wrong_dim": [command(action=[0.1, 0.2, 0.3]), command(action=[0.1])],
        "stale_seq": [command(seq=0)],
        "non_finite": [command(action=[0.1, float("nan")])],
    }
    for payloads in bad.values():
        for payload in payloads:
            publisher.send(payload)
    handed_out = _poll_until(controller, "bad_messages", before["bad_messages"] + 4)
    handed_out += _poll_until(controller, "wrong_dim", before["wrong_dim"] + 2)
    handed_out += _poll_until(controller, "expired", before["expired"] + 1)
    handed_out += _poll_until(controller, "stale_seq", before["stale_seq"] + 1)
    handed_out += _poll_until(controller, "non_finite", before["non_finite"] + 1)
    assert all(isinstance(message, protocol.Stop) and "non-finite" in message.reason for message in handed_out)
    for reason, payloads in bad.items():
        assert controller.counters[reason] == before[reason] + len(payloads), reason
    assert controller.counters["commands"] == before["commands"]
    assert controller.last_error is not None

    publisher.send(command(seq=10**6))  # a good command still gets through after all that
    (accepted,) = _poll_until(controller, "commands", before["commands"] + 1)
    assert accepted.seq == 10**6


def test_runtime_refuses_to_send_what_the_controller_would_drop(runtime: RuntimeLink) -> None:
    with pytest.raises(protocol.ProtocolError, match="'action'"):
        runtime.send_command(np.array([0.0, np.nan]), 0, 100.0)
    with pytest.raises(protocol.ProtocolError, match="'ttl_ms'"):
        runtime.send_command(np.zeros(2), 0, 0.0)
    assert runtime.counters["commands_sent"] == 0


def test_frames_publish_only_when_configured(controller: ControllerLink) -> None:
    controller.publish_frame(np.zeros((4, 4, 3), np.uint8), protocol.now_ns())
    assert controller.counters["frames_sent"] == 1
    with ControllerLink(action_dim=2, command_endpoint=ANY_PORT, state_endpoint=ANY_PORT) as no_camera:
        assert no_camera.frame_endpoint is None
        with pytest.raises(RuntimeError, match="frame_endpoint"):
            no_camera.publish_frame(np.zeros((4, 4, 3), np.uint8), 0)


def test_binding_a_taken_endpoint_names_it(controller: ControllerLink) -> None:
    with pytest.raises(zmq.ZMQError, match=controller.state_endpoint):
        ControllerLink(action_dim=2, command_endpoint=ANY_PORT, state_endpoint=controller.state_endpoint)


def test_close_never_hangs_with_unsent_messages() -> None:
    link = RuntimeLink("tcp://127.0.0.1:9", "tcp://127.0.0.1:9")  # nobody listens
    for _ in range(100):
        link.send_command(np.zeros(2), 0, 100.0)
    link.close()
    link.close()


def test_watchdog_expires_until_fed_and_after_silence() -> None:
    watchdog = Watchdog(timeout_ms=20)
    assert watchdog.expired()  # never fed: hold still
    watchdog.feed()
    time.sleep(0.05)
    assert watchdog.expired()
    patient = Watchdog(timeout_ms=60_000)
    patient.feed()
    assert not patient.expired()
    with pytest.raises(ValueError, match="positive"):
        Watchdog(timeout_ms=0)


def _raw_command(seq: int, session: str | None = "run-a", action: tuple[float, ...] = (0.1, 0.2)) -> bytes:
    body: dict[str, object] = {"v": 1, "type": "command", "seq": seq, "action": list(action), "stamp_capture": 0,
                               "stamp_send": protocol.now_ns(), "ttl_ms": 1000.0}
    if session is not None:
        body["session"] = session
    return msgpack.packb(body, use_bin_type=True)


def _raw_stop(seq: int, session: str) -> bytes:
    return protocol.encode(protocol.Stop(seq=seq, stamp_send=protocol.now_ns(), reason="test", session=session))


def _one_by_one(controller: ControllerLink, publisher: zmq.Socket[bytes],
                payloads: list[bytes]) -> list[protocol.Command | protocol.Stop | None]:
    """Send each payload and poll until it has been seen (counted under some reason); what each poll gave."""
    given: list[protocol.Command | protocol.Stop | None] = []
    for payload in payloads:
        seen = sum(controller.counters.values()) - controller.counters["states_sent"]
        publisher.send(payload)
        message = None
        deadline = time.monotonic() + 5.0
        while sum(controller.counters.values()) - controller.counters["states_sent"] == seen:
            assert time.monotonic() < deadline, "the controller never saw the message"
            message = controller.poll(timeout_ms=20)
        given.append(message)
    return given


def _connected_publisher(controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil,
                         session: str) -> zmq.Socket[bytes]:
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(controller.command_endpoint)
    seq = iter(range(10**6))
    assert wait_until(lambda: (publisher.send(_raw_command(next(seq), session)), controller.poll(20))[1] is not None)
    return publisher


def test_controller_applies_only_commands_newer_than_the_last_of_their_session(
    controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    """seq 10, then 3, then 10 again: only the first acts. A new session (a restarted runtime) may start again at 0;
    the session it replaced is refused from then on, except its stops (holding still is always safe)."""
    publisher = _connected_publisher(controller, zmq_context, wait_until, "run-a")
    before = dict(controller.counters)
    given = _one_by_one(controller, publisher, [
        _raw_command(1000, "run-a"), _raw_command(3, "run-a"), _raw_command(1000, "run-a"),
        _raw_stop(1001, "run-a"), _raw_command(1001, "run-a"),  # the stop took seq 1001
        _raw_command(1002, "run-a"),
        _raw_command(0, "run-b"), _raw_command(1, "run-b"),
        _raw_command(2000, "run-a"), _raw_stop(2001, "run-a"), _raw_command(2, "run-b"),
    ])
    kinds = [None if m is None else (m.type, m.seq, m.session) for m in given]
    assert kinds == [("command", 1000, "run-a"), None, None, ("stop", 1001, "run-a"), None,
                     ("command", 1002, "run-a"), ("command", 0, "run-b"), ("command", 1, "run-b"),
                     None, ("stop", 2001, "run-a"), ("command", 2, "run-b")]
    gained = {key: controller.counters[key] - before[key] for key in before}
    assert gained["stale_seq"] == 3 and gained["retired_session"] == 1 and gained["sessions"] == 1
    assert gained["commands"] == 5 and gained["stops"] == 2
    assert controller.last_error is not None and "run-a" in controller.last_error
    said = [r.getMessage() for r in caplog.records]
    assert sum("stale_seq" in line for line in said) == 1, said  # the first of each kind is logged, once
    assert sum("retired_session" in line for line in said) == 1, said
    assert sum("run-b" in line and "run-a" in line and "session" in line for line in said) >= 1, said


def test_commands_without_a_session_are_ordered_as_one_session(
    controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil
) -> None:
    publisher = _connected_publisher(controller, zmq_context, wait_until, "run-a")
    given = _one_by_one(controller, publisher, [_raw_command(5, None), _raw_command(4, None), _raw_command(6, None)])
    assert [None if m is None else m.seq for m in given] == [5, None, 6]
    assert controller.counters["stale_seq"] == 1


def test_each_runtime_link_is_its_own_session_and_the_newest_owns_the_robot(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_commands(runtime, controller, wait_until)
    assert len(runtime.session) == 16 and int(runtime.session, 16) >= 0
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint) as restarted:
        assert restarted.session != runtime.session
        _connect_commands(restarted, controller, wait_until)  # its seq starts at 0 again, and it is obeyed
        retired = controller.counters["retired_session"]
        runtime.send_command(np.ones(2), 0, 1000.0)
        _poll_until(controller, "retired_session", retired + 1)
        restarted.send_command(np.ones(2), 0, 1000.0)
        (command,) = _poll_until(controller, "commands", controller.counters["commands"] + 1)
        assert command.session == restarted.session


def test_a_non_finite_command_stops_the_robot_at_once(
    controller: ControllerLink, zmq_context: zmq.Context, wait_until: WaitUntil
) -> None:
    """Not dropped and left to the watchdog: poll hands out a stop in its place, naming the command."""
    publisher = _connected_publisher(controller, zmq_context, wait_until, "run-a")
    before = dict(controller.counters)
    (stop,) = _one_by_one(controller, publisher, [_raw_command(10**6, "run-a", (float("nan"), 0.0))])
    assert isinstance(stop, protocol.Stop)
    assert stop.seq == 10**6 and "non-finite" in stop.reason and "10000" in stop.reason
    assert controller.counters["non_finite"] == before["non_finite"] + 1
    assert controller.counters["bad_messages"] == before["bad_messages"]


def test_runtime_drops_states_older_than_the_newest_and_says_why_it_has_none(
    zmq_context: zmq.Context, wait_until: WaitUntil
) -> None:
    publisher = zmq_context.socket(zmq.PUB)
    publisher.bind(ANY_PORT)
    endpoint = publisher.getsockopt_string(zmq.LAST_ENDPOINT)

    def state(stamp: int, seq: int = 0) -> bytes:
        return protocol.encode(protocol.State(seq=seq, stamp=stamp, q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(0),
                                              stopped=True, last_command_seq=-1))

    newest = protocol.now_ns()
    with RuntimeLink("tcp://127.0.0.1:9", endpoint, context=zmq_context, state_timeout_ms=500.0) as runtime:
        assert wait_until(lambda: (publisher.send(state(newest)), wait_state(runtime, 0.02))[1] is not None)
        assert runtime.state_trouble() is None

        def counted(payload: bytes, counter: str) -> None:
            count = runtime.counters[counter]
            publisher.send(payload)
            assert wait_until(lambda: runtime.latest_state() is None and runtime.counters[counter] == count + 1)

        counted(state(newest - 1), "old_states")
        counted(state(newest - 10**9), "old_states")
        counted(state(protocol.now_ns() + 10**10), "future_states")  # 10 s ahead: never becomes the newest
        counted(b"garbage", "bad_messages")
        trouble = runtime.state_trouble()
        assert trouble is not None
        assert trouble.startswith("state messages older than the newest: 2 since ") and \
            "stamped ahead of this clock: 1 since" in trouble and "malformed: 1 since" in trouble, trouble
        publisher.send(state(newest + 1, seq=7))
        accepted = wait_state(runtime, 5.0)
        assert accepted is not None and accepted.seq == 7 and runtime.state_trouble() is None


def test_runtime_says_when_the_controller_sends_only_heartbeats(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_states(runtime, controller, wait_until)

    def only_heartbeats_said() -> bool:
        controller.publish_heartbeat("arm")
        trouble = runtime.state_trouble() or ""
        return runtime.latest_state() is None and trouble.startswith("heartbeats but no state: ")

    assert wait_until(only_heartbeats_said)


def test_the_first_bad_state_message_of_each_kind_is_logged(
    zmq_context: zmq.Context, wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    publisher = zmq_context.socket(zmq.PUB)
    publisher.bind(ANY_PORT)
    endpoint = publisher.getsockopt_string(zmq.LAST_ENDPOINT)
    with RuntimeLink("tcp://127.0.0.1:9", endpoint, context=zmq_context) as runtime:
        assert wait_until(lambda: (publisher.send(b"garbage"), runtime.latest_state())[1] is None
                          and runtime.counters["bad_messages"] >= 3)
    said = [r.getMessage() for r in caplog.records if "bad_messages" in r.getMessage()]
    assert len(said) == 1 and "not a msgpack message" in said[0] and endpoint in said[0], said


def test_the_link_benchmark_times_both_sides_on_real_sockets_in_alternating_blocks() -> None:
    from runtime.evaluation.link_bench import bench_link

    result = bench_link(round_trips=200, block=50)
    ours, raw = result["sides"]["edgeloop"], result["sides"]["raw_pyzmq"]
    # Every timed round trip was answered (a lost one raises), in whole blocks on each side.
    assert ours["round_trips"] == raw["round_trips"] == 200
    # The raw side sends the bytes of a command as our link encodes one (stamps of now are 9-byte ints).
    now = protocol.now_ns()
    assert result["command_bytes"] == len(protocol.encode(protocol.Command(
        seq=0, action=np.full(2, 0.25), stamp_capture=now, stamp_send=now, ttl_ms=2000.0, session="0" * 16)))
    assert ours["p50_us"] <= ours["p90_us"] <= ours["p99_us"]
    assert result["ratio_p50"] == pytest.approx(ours["p50_us"] / raw["p50_us"])


def test_a_reply_held_back_is_sent_again_and_left_out_of_the_times() -> None:
    """An echo that leaves one message unanswered stands in for ZeroMQ holding a reply back."""
    import threading

    from runtime.evaluation import link_bench

    context = zmq.Context()
    commands, states = link_bench._raw_echo_sockets(context)
    leave_next = threading.Event()
    left: list[bytes] = []
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if commands.poll(20):
                message = commands.recv()
                if leave_next.is_set():
                    leave_next.clear()
                    left.append(message)
                else:
                    states.send(b"state")

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    raw = link_bench._Raw(link_bench._endpoint(commands), link_bench._endpoint(states), b"command")
    try:
        link_bench._until_answered(raw)
        leave_next.set()
        assert link_bench._timed_round_trip(raw, "raw") is None  # no reply within HELD_BACK_MS: sent again
        assert left == [b"command"] and not leave_next.is_set()
        seconds = link_bench._timed_round_trip(raw, "raw")
        assert seconds is not None and seconds < link_bench.HELD_BACK_MS / 1000
    finally:
        stop.set()
        thread.join(5)
        raw.close()
        commands.close()
        states.close()
        context.term()


def test_a_poll_told_the_socket_is_readable_drains_the_backlog_and_does_not_wait_when_it_is_not(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_commands(runtime, controller, wait_until)
    poller = zmq.Poller()
    poller.register(controller.command_socket, zmq.POLLIN)
    before = controller.counters["commands"]
    seqs = [runtime.send_command(np.full(2, 0.1 * i), 0, 1000.0) for i in range(3)]
    assert wait_until(lambda: controller.command_socket.getsockopt(zmq.EVENTS) & zmq.POLLIN)
    time.sleep(0.05)  # the other two arrive behind the first
    assert dict(poller.poll(1000))
    newest = controller.poll(0, readable=True)
    assert isinstance(newest, protocol.Command) and newest.seq == seqs[-1]
    assert controller.counters["commands"] == before + 3
    # Told readable when nothing waits (a caller's stale readiness): nothing, at once.
    start = time.monotonic()
    assert controller.poll(1000, readable=True) is None
    assert time.monotonic() - start < 0.5


def test_the_runtime_takes_the_state_its_wait_saw_and_only_the_newest(
    runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil
) -> None:
    _connect_states(runtime, controller, wait_until)
    for seq in (7, 8, 9):
        controller.publish_state(np.full(2, float(seq)), np.zeros(2), None, False, seq)
    time.sleep(0.05)  # all three are in; the conflating socket keeps the last
    assert runtime.wait_for_state(1000)
    state = runtime.latest_state()
    assert state is not None and state.last_command_seq == 9
    assert runtime.latest_state() is None  # taken once
    controller.publish_state(np.zeros(2), np.zeros(2), None, False, 10)
    newer = wait_state(runtime, 2.0)
    assert newer is not None and newer.last_command_seq == 10
