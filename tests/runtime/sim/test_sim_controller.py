"""The simulated controller over real sockets: commands move the arm, the watchdog stops it, it streams."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np
import pytest
import zmq
from waiting import drive_until, exit_line_after_sigterm, reaped, wait_state

from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink
from runtime.sim.arm import forward_kinematics
from runtime.sim.controller import SimControllerSettings, run_sim_controller
from runtime.sources import open_source

ANY_PORT = "tcp://127.0.0.1:*"
WaitUntil = Callable[..., bool]


@dataclass
class RunningController:
    thread: threading.Thread
    stop: threading.Event
    endpoints: dict[str, str]
    counters: dict[str, int] = field(default_factory=dict)

    def halt(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        return self.counters


def start_controller(settings: SimControllerSettings) -> RunningController:
    ready = threading.Event()
    endpoints: dict[str, str] = {}
    stop = threading.Event()
    running = RunningController(threading.Thread(), stop, endpoints)

    def on_ready(bound: dict[str, str]) -> None:
        endpoints.update(bound)
        ready.set()

    def run() -> None:
        running.counters = run_sim_controller(settings, stop, on_ready)

    running.thread = threading.Thread(target=run, daemon=True)
    running.thread.start()
    assert ready.wait(20), "sim controller did not become ready"
    return running


@pytest.fixture
def controller() -> Iterator[RunningController]:
    running = start_controller(
        SimControllerSettings(
            command_endpoint=ANY_PORT,
            state_endpoint=ANY_PORT,
            frame_endpoint=ANY_PORT,
            watchdog_ms=150.0,
            frame_hz=20.0,
            initial_q=(0.2, -0.3),
        )
    )
    yield running
    running.halt()


@pytest.fixture
def runtime(controller: RunningController) -> Iterator[RuntimeLink]:
    link = RuntimeLink(controller.endpoints["command"], controller.endpoints["state"])
    yield link
    link.close()


def test_commands_move_the_arm_and_the_watchdog_stops_it(
    controller: RunningController, runtime: RuntimeLink, wait_until: WaitUntil, caplog: pytest.LogCaptureFixture
) -> None:
    first = wait_state(runtime, 5.0)
    assert first is not None
    assert first.stopped and first.last_command_seq == -1  # holding still until the first command
    np.testing.assert_allclose(first.q, [0.2, -0.3], atol=1e-6)
    np.testing.assert_allclose(first.ee, forward_kinematics(first.q), atol=1e-6)

    moving = drive_until(runtime, lambda s: s.q[0] > 0.35 and s.q[1] < -0.45, action=[1.0, -1.0], ttl_ms=1000.0)
    assert not moving.stopped and moving.last_command_seq >= 0
    assert moving.dq[0] > 0 and moving.dq[1] < 0

    # Silence: the watchdog holds the arm still and says so.
    assert wait_until(lambda: (s := wait_state(runtime, 0.1)) is not None and s.stopped and abs(s.dq).max() < 1e-3)
    rest = wait_state(runtime, 5.0)
    assert rest is not None
    assert wait_until(
        lambda: (
            (s := wait_state(runtime, 0.1)) is not None and s.seq > rest.seq + 5 and np.allclose(s.q, rest.q, atol=1e-3)
        )
    )

    counters = controller.halt()
    assert counters["watchdog_stops"] == 1
    assert counters["commands_applied"] >= 1 and counters["stops_applied"] == 0
    assert sum("no valid command" in r.getMessage() for r in caplog.records) == 1  # logged once per silence


def test_a_stop_holds_the_arm_until_the_next_command(
    controller: RunningController, runtime: RuntimeLink, wait_until: WaitUntil
) -> None:
    assert wait_state(runtime, 5.0) is not None
    drive_until(runtime, action=[-1.0, 0.0], ttl_ms=1000.0, condition=lambda s: not s.stopped)
    runtime.send_stop("test")
    assert wait_until(lambda: (s := wait_state(runtime, 0.1)) is not None and s.stopped)
    held = wait_state(runtime, 5.0)
    assert held is not None and held.stopped
    resumed = drive_until(runtime, action=[1.0, 0.0], ttl_ms=1000.0, condition=lambda s: not s.stopped and s.dq[0] > 0)
    assert resumed.last_command_seq > held.last_command_seq
    assert controller.halt()["stops_applied"] == 1


def test_a_command_beyond_the_scenes_bounds_holds_the_arm_still_at_once(
    controller: RunningController, runtime: RuntimeLink
) -> None:
    """Refused by the controller's own safety filter, not clipped and not left running until the watchdog."""
    drive_until(runtime, lambda s: not s.stopped and s.dq[0] > 0.5, action=[1.0, 0.0], ttl_ms=1000.0)
    held = drive_until(runtime, lambda s: s.stopped, action=[5.0, 0.0], ttl_ms=1000.0)  # the arm's bounds are ±2
    assert held.last_command_seq >= 0
    resumed = drive_until(runtime, lambda s: not s.stopped, action=[1.0, 0.0], ttl_ms=1000.0)
    assert resumed.last_command_seq > held.last_command_seq
    counters = controller.halt()
    assert counters["out_of_bounds"] >= 1 and counters["watchdog_stops"] == 0


def test_a_non_finite_command_holds_the_arm_still_at_once(controller: RunningController, runtime: RuntimeLink,
                                                          zmq_context: zmq.Context) -> None:
    drive_until(runtime, lambda s: not s.stopped and s.dq[0] > 0.5, action=[1.0, 0.0], ttl_ms=1000.0)
    publisher = zmq_context.socket(zmq.PUB)  # a runtime gone wrong, on the same session as the one driving
    publisher.connect(controller.endpoints["command"])
    nan = protocol.Command(seq=10**9, action=np.zeros(2), stamp_capture=0, stamp_send=0, ttl_ms=1000.0,
                           session=runtime.session)
    body = msgpack.unpackb(protocol.encode(nan)) | {"action": [float("nan"), 0.0], "stamp_send": protocol.now_ns()}
    for _ in range(100):  # PUB/SUB: until the connection is up and the arm held
        publisher.send(msgpack.packb(body))
        state = wait_state(runtime, 0.02)
        if state is not None and state.stopped:
            break
    assert state is not None and state.stopped
    counters = controller.halt()
    assert counters["non_finite"] >= 1 and counters["watchdog_stops"] == 0 and counters["bad_messages"] == 0


def test_the_applied_action_is_rate_limited() -> None:
    """With max_rate 4 rad/s², a jump to 2 rad/s from rest takes about half a second, counted."""
    running = start_controller(SimControllerSettings(command_endpoint=ANY_PORT, state_endpoint=ANY_PORT,
                                                     frame_endpoint=ANY_PORT, frame_hz=1.0, max_rate=4.0))
    try:
        with RuntimeLink(running.endpoints["command"], running.endpoints["state"]) as runtime:
            first = drive_until(runtime, lambda s: not s.stopped, action=[2.0, 0.0], ttl_ms=1000.0)
            assert first.dq[0] < 1.0  # at most 0.4 on the first command, then +4 rad/s² (each state is ≤ 10 ms old)
            fast = drive_until(runtime, lambda s: s.dq[0] > 1.9, action=[2.0, 0.0], ttl_ms=1000.0)
            assert fast.stamp - first.stamp > 0.3e9
    finally:
        counters = running.halt()
    assert counters["rate_limited"] > 5


def test_frames_stream_with_increasing_seq_and_capture_stamps(controller: RunningController) -> None:
    endpoint = controller.endpoints["frame"]
    with open_source("zmq:" + endpoint.removeprefix("tcp:")) as frames:
        received = [f for f in (frames.read_latest(5.0) for _ in range(4)) if f is not None]
    assert len(received) == 4
    assert all(f.image.shape == (64, 64, 3) and f.image.dtype == np.uint8 for f in received)
    assert [f.seq for f in received] == sorted({f.seq for f in received})
    assert all(b.stamp_ns > a.stamp_ns for a, b in itertools.pairwise(received))
    assert received[0].image.std() > 0  # a rendered scene, not a blank buffer


def test_runtime_sees_the_controller_go_and_come_back() -> None:
    settings = SimControllerSettings(
        command_endpoint=ANY_PORT, state_endpoint=ANY_PORT, frame_endpoint=ANY_PORT, frame_hz=1.0
    )
    first = start_controller(settings)
    endpoints = first.endpoints
    with RuntimeLink(endpoints["command"], endpoints["state"]) as runtime:
        assert wait_state(runtime, 5.0) is not None
        first.halt()
        runtime.latest_state()  # whatever was already in flight
        assert wait_state(runtime, 0.5) is None  # gone: no states

        again = start_controller(
            SimControllerSettings(
                command_endpoint=endpoints["command"],
                state_endpoint=endpoints["state"],
                frame_endpoint=endpoints["frame"],
                frame_hz=1.0,
            )
        )
        try:
            assert wait_state(runtime, 10.0) is not None  # the SUB reconnected by itself
            # ... and so did the command PUB.
            drive_until(runtime, lambda s: not s.stopped, action=[0.5, 0.5], ttl_ms=1000.0)
        finally:
            counters = again.halt()
        assert counters["commands_applied"] >= 1


def test_cli_prints_ready_and_exit_lines_and_exits_cleanly_on_sigterm() -> None:
    code = "import typer; from runtime.cli.controller import controller_sim; typer.run(controller_sim)"
    args = [
        "--command-endpoint",
        ANY_PORT,
        "--state-endpoint",
        ANY_PORT,
        "--frame-endpoint",
        ANY_PORT,
        "--initial-q",
        "0.5,-0.5",
        "--frame-hz",
        "5",
    ]
    with reaped(subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)) as process:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready"
        assert all(ready[k].startswith("tcp://127.0.0.1:") for k in ("command", "state", "frame"))
        with RuntimeLink(ready["command"], ready["state"]) as runtime:
            state = wait_state(runtime, 10.0)
            assert state is not None
            np.testing.assert_allclose(state.q, [0.5, -0.5], atol=1e-6)
        exit_line, _ = exit_line_after_sigterm(process)
    assert exit_line["event"] == "exit" and exit_line["counters"]["states_sent"] > 0


def test_cli_refuses_a_malformed_initial_q() -> None:
    code = "import typer; from runtime.cli.controller import controller_sim; typer.run(controller_sim)"
    result = subprocess.run(
        [sys.executable, "-c", code, "--initial-q", "0.1"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert "--initial-q" in result.stderr
