"""The control loop end to end: real sim controller, real ZeroMQ, real ONNX Runtime, the shipped model."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq
from foxglove_checks import check_recording_channels, decode_image, live_view_client
from model_faults import demo_with
from waiting import drive_until, wait_for

from runtime.config import RunConfig, load_config
from runtime.link import protocol
from runtime.link.controller_side import ControllerLink
from runtime.link.runtime_side import RuntimeLink
from runtime.loop import ControlLoop
from runtime.recording import iter_messages
from runtime.sim.controller import SimControllerSettings, run_sim_controller

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "models" / "demo" / "manifest.json"
GOAL = ROOT / "models" / "demo" / "goals" / "goal_000.png"
ANY = "tcp://127.0.0.1:*"


class SimControllerThread:
    """run_sim_controller in a background thread on ephemeral ports."""

    def __init__(self) -> None:
        self.settings = SimControllerSettings(command_endpoint=ANY, state_endpoint=ANY, frame_endpoint=ANY)
        self.stop_event = threading.Event()
        ready = threading.Event()
        self.endpoints: dict[str, str] = {}
        self.counters: dict[str, int] = {}

        def on_ready(bound: dict[str, str]) -> None:
            self.endpoints = bound
            ready.set()

        def target() -> None:
            self.counters = run_sim_controller(self.settings, self.stop_event, on_ready)

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()
        assert ready.wait(30), "sim controller did not bind"

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        self.thread.join(10)
        return self.counters


@pytest.fixture
def controller() -> Iterator[SimControllerThread]:
    sim = SimControllerThread()
    yield sim
    sim.stop()


def loop_config(endpoints: dict[str, str], tmp_path: Path, *extra: str, manifest: Path = MANIFEST) -> RunConfig:
    return load_config(ROOT / "configs" / "demo.yaml", [
        f"model.manifest={manifest}",
        f"goal.image={GOAL}",
        f"link.command_endpoint={endpoints['command']}",
        f"link.state_endpoint={endpoints['state']}",
        f"source.uri={endpoints['frame'].replace('tcp://', 'zmq://')}",
        f"runs_dir={tmp_path / 'runs'}",
        "loop.status_line=false",
        f"link.goal_endpoint={ANY}",  # tests run side by side: never the fixed default port
        *extra,
    ])


def test_closed_loop_sends_commands_and_writes_summary(controller: SimControllerThread, tmp_path: Path) -> None:
    loop = ControlLoop(loop_config(controller.endpoints, tmp_path, "record=true"))
    loop.run(duration_s=2.0)
    summary = loop.close()
    counters = summary["counters"]
    assert counters["commands"] > 10
    assert counters["ticks"] >= counters["commands"]
    assert controller.stop()["commands_applied"] > 0

    written = json.loads((Path(summary["run_dir"]) / "summary.json").read_text())
    assert {"loop_hz", "tick_ms", "stages", "counters", "model_id", "model_files", "config"} <= written.keys()
    assert set(written["tick_ms"]) == {"p50", "p95", "p99", "max"}
    assert {"source", "state", "encode", "plan", "send"} <= written["stages"].keys()
    assert {"frames", "drops", "deadline_misses", "commands", "stops", "bad_messages"} <= written["counters"].keys()
    assert len(written["model_id"]) == 64
    assert set(written["model_files"]) == {"encoder", "predictor", "rollout", "reference"}
    assert written["config"]["planner"]["samples"] == 256
    assert load_config(Path(summary["run_dir"]) / "config.yaml") == loop.config

    recorded = list(iter_messages(Path(summary["run_dir"]) / "run.mcap"))
    topics = {topic for topic, *_ in recorded}
    assert {"/camera/image", "/robot/state", "/robot/command", "/planner/plan", "/model/latent"} <= topics
    # Written by the recording's own thread, every message queued by the loop is in the file once it is closed.
    assert written["recording"] == {"file": str(Path(summary["run_dir"]) / "run.mcap"), "messages": len(recorded),
                                    "dropped": 0}
    assert {"plans", "plan_ms_p50", "plan_ms_p99", "iterations_mean", "deadline_hits", "spread_mean"} \
        <= written["planner"].keys()
    assert written["planner"]["plans"] == counters["commands"]  # execute_steps 1: one plan per command
    assert {"reloads", "reload_errors", "goals", "bad_goals"} <= counters.keys()


def test_action_chunks_plan_once_per_chunk_and_diagnostics_are_recorded(controller: SimControllerThread,
                                                                        tmp_path: Path) -> None:
    """execute_steps=3 sends a command every tick but plans on every third; a tiny budget cuts iterations."""
    loop = ControlLoop(loop_config(controller.endpoints, tmp_path, "record=true", "planner.execute_steps=3",
                                   "planner.iterations=3", "planner.deadline_ms=0.001"))
    loop.run(duration_s=2.0)
    summary = loop.close()
    counters, planner = summary["counters"], summary["planner"]
    assert counters["commands"] > 10
    assert planner["plans"] * 3 >= counters["commands"]  # no chunk is longer than 3
    assert planner["plans"] <= counters["commands"] // 3 + 2  # about a third: chunks run to their end
    # A budget smaller than any iteration: every plan stops after its first iteration.
    assert planner["deadline_hits"] == planner["plans"]
    assert planner["iterations_mean"] == 1.0

    recorded = list(iter_messages(Path(summary["run_dir"]) / "run.mcap", ["/planner/plan", "/robot/command"]))
    plans = [payload for topic, _, _, payload in recorded if topic == "/planner/plan"]
    assert len(plans) == planner["plans"]
    assert len(recorded) - len(plans) == counters["commands"]
    for plan in plans:
        assert plan["iterations"] == 1 and plan["deadline_hit"] is True
        assert len(plan["best_cost_per_iteration"]) == 1
        assert plan["execute_steps"] == 3 and len(plan["sequence"]) == loop.config.planner.horizon
        assert isinstance(plan["spread"], float)


class HandDriven:
    """A controller the test drives by hand: each tick it publishes a frame and the state the test gives (a message
    or raw bytes), lets the loop tick once and takes what the loop sent, as a robot polls."""

    def __init__(self, robot: ControllerLink, states: zmq.Socket[bytes], loop: ControlLoop) -> None:
        self.robot, self.states, self.loop = robot, states, loop
        self.image = cv2.imread(str(GOAL))
        self.received: list[protocol.Command | protocol.Stop] = []
        self.counters = loop.telemetry.counters

    @staticmethod
    def state(q: Sequence[float], dq: Sequence[float] | None = None, stamp: int | None = None) -> protocol.State:
        return protocol.State(seq=0, stamp=protocol.now_ns() if stamp is None else stamp, q=np.asarray(q, float),
                              dq=np.zeros(len(q)) if dq is None else np.asarray(dq, float), ee=np.zeros(3),
                              stopped=False, last_command_seq=-1)

    def tick_until(self, condition: Callable[[], bool], state: Callable[[], protocol.State | bytes],
                   limit: int = 500) -> None:
        """Tick until `condition` holds (the first ticks may pass before the sockets connect)."""
        for _ in range(limit):
            if condition():
                return
            self.tick(1, state)
        raise AssertionError(f"not after {limit} ticks; counters {dict(self.counters)}")

    def tick(self, ticks: int, state: Callable[[], protocol.State | bytes]) -> None:
        for _ in range(ticks):
            self.robot.publish_frame(self.image, protocol.now_ns())
            message = state()
            self.states.send(message if isinstance(message, bytes) else protocol.encode(message))
            time.sleep(0.01)
            self.loop.tick()
            sent = self.robot.poll(timeout_ms=5)
            if sent is not None:
                self.received.append(sent)

    def reasons(self) -> set[str]:
        """The stop reasons sent, but those of ticks before the sockets connected."""
        return {message.reason for message in self.received
                if isinstance(message, protocol.Stop)} - {"no fresh frame", "no controller state"}


@contextmanager
def hand_driven(tmp_path: Path, *extra: str, manifest: Path = MANIFEST) -> Iterator[HandDriven]:
    with ControllerLink(2, command_endpoint=ANY, state_endpoint=ANY, frame_endpoint=ANY) as robot, \
            zmq.Context() as context:
        states = context.socket(zmq.PUB)
        states.setsockopt(zmq.LINGER, 0)
        states.bind(ANY)
        endpoints = {"command": robot.command_endpoint, "state": states.getsockopt_string(zmq.LAST_ENDPOINT),
                     "frame": robot.frame_endpoint or ""}
        loop = ControlLoop(loop_config(endpoints, tmp_path, *extra, manifest=manifest))
        try:
            yield HandDriven(robot, states, loop)
        finally:
            loop.close()
            states.close()


def test_states_that_do_not_fit_the_model_stop_the_robot_and_are_counted(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A controller with a different joint count: no plan from its states, stop sent, said once; then it fits."""
    with hand_driven(tmp_path) as robot:
        three, two = (lambda: robot.state([0.0] * 3)), (lambda: robot.state([0.0] * 2))
        counters = robot.counters
        robot.tick_until(lambda: counters["wrong_state_dim"] > 10, three)  # the model takes [q, dq] of 2 joints
        assert counters["commands"] == 0 and counters["plans"] == 0 and counters["stops"] > 10
        # Once wrong states arrive they are not counted as missing (the first ticks may be, before one arrives).
        missing = counters["missing_state"]
        robot.tick(10, three)
        assert counters["missing_state"] == missing
        assert robot.received and all(isinstance(message, protocol.Stop) for message in robot.received)
        assert robot.reasons() == {"controller state does not fit the model"}
        said = capsys.readouterr().err
        assert said.count("dropped: fields 'q' and 'dq' have 3 and 3 values") == 1, said
        assert "takes 2 each, 4 values" in said
        robot.received.clear()
        robot.tick_until(lambda: counters["commands"] > 5, two)
        assert isinstance(robot.received[-1], protocol.Command)
        robot.tick(5, three)  # wrong again: said again, and stopped again
        assert capsys.readouterr().err.count("have 3 and 3 values") == 1
        assert isinstance(robot.received[-1], protocol.Stop)


NON_FINITE_PLANS = "model output not finite: no sampled plan has a finite cost (the predictor's latents)"


def test_a_nan_predictor_stops_the_robot_with_its_own_reason_said_once(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Every rollout NaN: never a stream of hold-still commands (which would feed the controller's watchdog)."""
    with hand_driven(tmp_path, manifest=demo_with(tmp_path / "nan-predictor", predictor=True)) as robot:
        counters = robot.counters
        robot.tick_until(lambda: counters["plans"] > 10, lambda: robot.state([0.3, -0.2]))
        assert counters["commands"] == 0
        assert counters["non_finite_model"] == counters["plans"]
        assert robot.received and robot.reasons() == {NON_FINITE_PLANS}
        assert capsys.readouterr().err.count(NON_FINITE_PLANS) == 1
        summary = robot.loop.summary()
    assert summary["counters"]["non_finite_model"] == counters["non_finite_model"]


def test_a_nan_latent_stops_without_planning_and_the_robot_resumes_once_it_is_finite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with hand_driven(tmp_path, manifest=demo_with(tmp_path / "nan-encoder", encoder=True)) as robot:
        counters = robot.counters
        moving, rest = (lambda: robot.state([0.3, -0.2])), (lambda: robot.state([0.0, 0.0]))
        robot.tick_until(lambda: counters["non_finite_model"] > 10, moving)  # NaN for any state but rest
        assert counters["plans"] == 0 and counters["commands"] == 0
        assert robot.reasons() == {"model output not finite: the encoder's latent"}
        robot.tick_until(lambda: counters["commands"] > 5, rest)
        assert isinstance(robot.received[-1], protocol.Command)
        robot.tick(5, moving)
        assert isinstance(robot.received[-1], protocol.Stop)
        assert capsys.readouterr().err.count("the encoder's latent") == 2  # once each time it starts


def test_a_state_beyond_float32_stops_the_robot(tmp_path: Path) -> None:
    """1e39 is a finite float64, so it passes the protocol, but the model's float32 input would be inf."""
    with hand_driven(tmp_path) as robot:
        robot.tick_until(lambda: robot.counters["non_finite_model"] > 10, lambda: robot.state([1e39, 0.0]))
        assert robot.counters["commands"] == 0
        assert robot.reasons() == {"model input not finite: the controller state is beyond float32 range"}


def test_malformed_states_stop_the_robot_saying_what_is_wrong_and_the_first_is_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Not "no controller state", which sends an operator looking for a missing controller, not a broken one."""
    with hand_driven(tmp_path, "link.state_timeout_ms=100") as robot:
        counters = robot.counters
        robot.tick_until(lambda: counters["bad_messages"] > 10 and counters["missing_state"] > 10,
                         lambda: b"\x93garbage")
        assert counters["commands"] == 0
        malformed = [reason for reason in robot.reasons() if reason.startswith("state messages malformed: ")]
        assert malformed and " since " in malformed[-1], robot.reasons()
        said = [record.getMessage() for record in caplog.records if "bad_messages" in record.getMessage()]
        assert len(said) == 1 and "not a msgpack message" in said[0], said


def test_states_are_judged_by_their_stamp_and_older_ones_are_dropped(tmp_path: Path) -> None:
    with hand_driven(tmp_path, "link.state_timeout_ms=200") as robot:
        counters = robot.counters
        robot.tick_until(lambda: counters["stale_state"] > 10,
                         lambda: robot.state([0.3, -0.2], stamp=protocol.now_ns() - 2 * 10**9))  # arrive now, 2 s old
        assert counters["commands"] == 0
        assert all(reason.startswith("controller state stamped 2") and reason.endswith("(a delayed link, or clocks "
                   "out of sync)") for reason in robot.reasons()), robot.reasons()
        robot.tick_until(lambda: counters["commands"] > 0, lambda: robot.state([0.3, -0.2]))
        robot.tick(5, lambda: robot.state([0.3, -0.2], stamp=protocol.now_ns() - 10**10))  # before the newest
        assert counters["old_states"] >= 4


# -- faults with real processes: `edgeloop controller sim` and `edgeloop run` as children, killed -------------------

class ControllerProcess:
    """`edgeloop controller sim` as a child process, on given endpoints (a port of * is picked by the OS); its ready
    and exit lines are read from stdout as it runs, its stderr kept."""

    def __init__(self, endpoints: dict[str, str] | None = None, watchdog_ms: float = 300.0) -> None:
        endpoints = endpoints or {"command": ANY, "state": ANY, "frame": ANY}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "controller", "sim", "--command-endpoint", endpoints["command"],
             "--state-endpoint", endpoints["state"], "--frame-endpoint", endpoints["frame"],
             "--watchdog-ms", str(watchdog_ms)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"MUJOCO_GL": "egl"})
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        stdout, stderr = self.process.stdout, self.process.stderr
        threading.Thread(target=lambda: [self.events.put(json.loads(line)) for line in stdout if line.startswith("{")],
                         daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(stderr), daemon=True).start()
        ready = self._event("ready")
        self.endpoints = {name: ready[name] for name in ("command", "state", "frame")}

    def _event(self, name: str) -> dict[str, Any]:
        try:
            event = self.events.get(timeout=60)
        except queue.Empty:
            raise AssertionError(f"controller printed no {name!r} line: {''.join(self.stderr)[-2000:]}") from None
        assert event["event"] == name, event
        return event

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no clean-up, no last message
        self.process.wait(10)

    def terminate(self) -> dict[str, int]:
        """SIGTERM; the counters it prints at exit."""
        if self.process.poll() is not None:
            return {}
        self.process.terminate()
        self.process.wait(30)
        return dict(self._event("exit")["counters"])


def _next_state(observer: RuntimeLink, condition: Callable[[protocol.State], bool],
                timeout_s: float = 30.0) -> protocol.State:
    """The first state the controller publishes that meets `condition`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = observer.latest_state()
        if state is not None and condition(state):
            return state
        time.sleep(0.002)
    raise AssertionError("no such state from the controller")


def _listen(endpoint: str, seconds: float) -> list[tuple[int, protocol.Command | protocol.Stop]]:
    """Bind a controller's command endpoint ourselves and take what the runtime sends to it for `seconds`, each
    message with the time it arrived."""
    with zmq.Context() as context, context.socket(zmq.SUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.bind(endpoint)
        received: list[tuple[int, protocol.Command | protocol.Stop]] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if socket.poll(int(left * 1000) + 1):
                message = protocol.decode(socket.recv())
                assert isinstance(message, protocol.Command | protocol.Stop), message
                received.append((protocol.now_ns(), message))
        return received


def test_sim_controller_killed_9_mid_run_then_restarted_on_its_ports(tmp_path: Path) -> None:
    """The runtime counts the outage once; from then on it sends stops only; it resumes with the restarted
    controller, and every command after the outage comes from the new controller's state and frames."""
    first = ControllerProcess()
    endpoints = first.endpoints
    loop = ControlLoop(loop_config(endpoints, tmp_path, "link.state_timeout_ms=200", "source.frame_timeout_ms=200",
                                   "record=true"))
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 120.0}, daemon=True)
    runner.start()
    counters = loop.telemetry.counters
    second: ControllerProcess | None = None
    try:
        assert wait_for(lambda: counters["commands"] > 10, 60), dict(counters)
        first.kill()
        assert wait_for(lambda: counters["state_outages"] == 1, 10), dict(counters)
        noticed_ns, commands_before = protocol.now_ns(), counters["commands"]
        sent_while_gone = _listen(endpoints["command"], 1.5)
        assert counters["commands"] == commands_before  # from the outage on, only stops
        assert any(isinstance(message, protocol.Stop) for _, message in sent_while_gone)
        # ZeroMQ keeps what the runtime sent in the state timeout after the kill (planned from the last state, within
        # that timeout) for the next peer on the port; nothing sent after the runtime noticed is a command.
        assert all(message.stamp_send < noticed_ns for _, message in sent_while_gone
                   if isinstance(message, protocol.Command)), sent_while_gone
        restarted_ns = protocol.now_ns()
        second = ControllerProcess(endpoints)
        ready = time.monotonic()
        with RuntimeLink(endpoints["command"], endpoints["state"]) as observer:
            # The new controller reports the first command it applied: the runtime is back.
            _next_state(observer, lambda state: state.last_command_seq >= 0 and not state.stopped)
        recovered_s = time.monotonic() - ready
        assert wait_for(lambda: counters["commands"] > commands_before + 10, 30)
    finally:
        loop.stop_requested.set()
        runner.join(10)
        summary = loop.close()
        applied = second.terminate() if second is not None else {}
        first.terminate()
    assert summary["counters"]["state_outages"] == 1
    assert summary["link"]["outage_s_longest"] == summary["link"]["outage_s_total"] > 0.2
    assert applied["commands"] > 0 and applied["expired"] == 0 and applied["sessions"] == 1
    queued = [(at - message.stamp_send) / 1e6 for at, message in sent_while_gone
              if isinstance(message, protocol.Command)]
    print(f"figures: controller kill -9: outages {summary['counters']['state_outages']}, state gone "
          f"{summary['link']['outage_s_longest']:.2f} s, first command applied {recovered_s:.3f} s after the restarted "
          f"controller was ready; on the port while it was gone: {len(sent_while_gone) - len(queued)} stops and "
          f"{len(queued)} queued commands, ages on arrival {[round(age) for age in queued]} ms")

    # From the recording: each command with the state and frame it was planned from (one MCAP sequence a tick).
    ticks: dict[int, dict[str, Any]] = {}
    for topic, sequence, stamp, payload in iter_messages(Path(summary["run_dir"]) / "run.mcap",
                                                         ["/robot/command", "/robot/state", "/camera/image"]):
        ticks.setdefault(sequence, {})[topic] = stamp if topic == "/camera/image" else payload
    commands = [tick for _, tick in sorted(ticks.items()) if "/robot/command" in tick]
    assert len(commands) == summary["counters"]["commands"]
    for tick in commands[commands_before:]:  # after the outage: only the new controller's states and frames
        assert tick["/robot/state"]["stamp_ns"] > restarted_ns and tick["/camera/image"] > restarted_ns


def test_commands_sent_after_the_controller_died_never_reach_the_next_one_on_its_port() -> None:
    """What the loop sends in the state timeout after a kill -9 (planned from the dead controller's last state)
    must not be applied by a controller restarted within the commands' time-to-live."""
    controller = ControllerProcess()
    with RuntimeLink(controller.endpoints["command"], controller.endpoints["state"]) as link:
        drive_until(link, lambda state: state.last_command_seq >= 0, [0.0, 0.0])  # connected both ways
        controller.kill()
        for _ in range(6):  # 200 ms at 30 Hz
            link.send_command(np.zeros(2), protocol.now_ns(), ttl_ms=200.0)
            time.sleep(1 / 30)
        arrived = _listen(controller.endpoints["command"], 1.0)
    assert not [message for _, message in arrived if isinstance(message, protocol.Command)]


def _run_cli(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"MUJOCO_GL": "egl"})


def _write_config(tmp_path: Path, endpoints: dict[str, str], *extra: str) -> Path:
    from runtime.config import dump_config

    path = tmp_path / "run.yaml"
    path.write_text(dump_config(loop_config(endpoints, tmp_path, *extra)))
    return path


@pytest.mark.parametrize("planning", ["sync", "async"])
def test_sigterm_while_recording_sends_stop_and_completes_the_mcap(tmp_path: Path, planning: str) -> None:
    """A controller whose watchdog would take a minute: only the runtime's stop can hold the arm after SIGTERM; with
    asynchronous planning both threads end first (the planner's last plan is never sent after the stop)."""
    controller = ControllerProcess(watchdog_ms=60_000)
    process = _run_cli(_write_config(tmp_path, controller.endpoints, "record=true", f"loop.planning={planning}"))
    try:
        with RuntimeLink(controller.endpoints["command"], controller.endpoints["state"]) as observer:
            # The runtime has moved the arm for a second or so (its seq counts commands and stops).
            _next_state(observer, lambda state: state.last_command_seq >= 40 and not state.stopped, 60)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
            _next_state(observer, lambda state: state.stopped)
    finally:
        process.kill()
        counters = controller.terminate()
    assert process.returncode == 0, err
    assert counters["watchdog_stops"] == 0 and counters["stops"] >= 1
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(out.strip().splitlines()[-1])["counters"] == summary["counters"]
    recorded = list(iter_messages(run_dir / "run.mcap"))  # reads to the end: the file is complete
    topics = [topic for topic, *_ in recorded]
    assert summary["counters"]["commands"] >= 10  # seq 40 counts the stops before the first frame too
    assert topics.count("/robot/command") == summary["counters"]["commands"]
    assert topics.count("/robot/stop") == summary["counters"]["stops"]
    last_topic, _, _, last = recorded[-1]
    assert last_topic == "/robot/stop" and last["reason"] == "runtime exiting"
    print(f"figures: SIGTERM while recording ({planning}): {topics.count('/robot/command')} commands and "
          f"{topics.count('/robot/stop')} stops recorded, as summary.json counts them; last: {last['reason']}")


def test_sigterm_while_the_model_loads_waits_for_the_loop_and_then_stops_it_cleanly(tmp_path: Path) -> None:
    """SIGTERM once ONNX Runtime is being loaded (start-up, before any socket or recording exists): the run still
    ends the clean way, with exit 0, a stop, a complete recording and a summary."""
    controller = ControllerProcess(watchdog_ms=60_000)
    process = _run_cli(_write_config(tmp_path, controller.endpoints, "record=true"))
    maps = Path(f"/proc/{process.pid}/maps")
    try:
        assert wait_for(lambda: process.poll() is None and "onnxruntime" in maps.read_text(), 60)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        counters = controller.terminate()
    assert process.returncode == 0, err
    # Stopped before it ever planned. (Its stop may not arrive: a PUB socket a few ms old has no subscriber yet.)
    assert counters["commands"] == 0
    [run_dir] = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert json.loads(out.strip().splitlines()[-1])["counters"] == summary["counters"]
    recorded = list(iter_messages(run_dir / "run.mcap"))  # reads to the end: the file is complete
    assert recorded[-1][0] == "/robot/stop" and recorded[-1][3]["reason"] == "runtime exiting"


def test_runtime_killed_9_the_controller_holds_within_its_watchdog(tmp_path: Path) -> None:
    """SIGKILL sends no stop: the controller's watchdog holds the arm, and a restarted runtime drives it again."""
    watchdog_ms = 300.0
    controller = ControllerProcess(watchdog_ms=watchdog_ms)
    config = _write_config(tmp_path, controller.endpoints)
    process = _run_cli(config)
    try:
        with RuntimeLink(controller.endpoints["command"], controller.endpoints["state"]) as observer:
            _next_state(observer, lambda state: not state.stopped, 60)
            process.kill()
            process.wait(10)
            killed_ns = protocol.now_ns()
            held = _next_state(observer, lambda state: state.stopped)
            # Held by the watchdog: no later than its time after the last command (sent before the kill); the
            # margin is for the controller's 5 ms loop and 10 ms state periods and this observer, on a loaded box.
            assert (held.stamp - killed_ns) / 1e6 <= watchdog_ms + 200, (held.stamp - killed_ns) / 1e6
            print(f"figures: runtime kill -9: held {(held.stamp - killed_ns) / 1e6:.0f} ms after the kill "
                  f"(watchdog {watchdog_ms:g} ms)")
            _next_state(observer, lambda state: state.stopped and bool(np.all(np.abs(state.dq) < 0.05)), 10)
            process = _run_cli(config)  # a new session takes over the robot
            _next_state(observer, lambda state: not state.stopped, 60)
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)
    finally:
        process.kill()
        counters = controller.terminate()
    assert counters["watchdog_stops"] >= 1 and counters["sessions"] == 2


def test_bad_manifest_is_refused_by_the_cli(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"model:\n  manifest: {tmp_path / 'missing' / 'manifest.json'}\nloop:\n  status_line: false\n")
    result = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "manifest.json" in result.stderr


def test_replay_config_runs_open_loop_on_the_shipped_feed(controller: SimControllerThread, tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "replay.yaml", [
        f"model.manifest={MANIFEST}",
        f"goal.image={GOAL}",
        f"source.uri=mcap:{ROOT / 'data' / 'demo_feed.mcap'}",
        f"link.command_endpoint={controller.endpoints['command']}",
        f"link.state_endpoint={controller.endpoints['state']}",
        f"runs_dir={tmp_path / 'runs'}",
        "loop.status_line=false",
        f"link.goal_endpoint={ANY}",
    ])
    loop = ControlLoop(config)
    loop.run(duration_s=2.0)
    summary = loop.close()
    assert summary["counters"]["frames"] > 10
    assert summary["counters"]["commands"] > 10
    assert controller.stop()["commands_applied"] > 0


@pytest.mark.parametrize("planning", ["sync", "async"])
def test_a_recorded_run_has_typed_channels_and_its_live_view_shows_camera_plan_and_commands(
        controller: SimControllerThread, tmp_path: Path, planning: str) -> None:
    """A real run with `record` and `live_view` on: a Foxglove client receives the camera, plans and commands
    while it goes, and the recording reads back with Foxglove's schemas and typed JSON Schemas on every channel.
    Planning asynchronously, the planner thread shows the viewers and the recording thread writes the file."""
    pytest.importorskip("foxglove")  # the observe extra
    loop = ControlLoop(loop_config(controller.endpoints, tmp_path, "record=true", "live_view.enabled=true",
                                   "live_view.port=0", f"loop.planning={planning}"))
    assert loop.live_view is not None
    wanted = {"/camera/image", "/planner/plan", "/robot/command", "/planner/goal_image"}
    received: dict[str, bytes] = {}

    def view() -> None:
        with live_view_client(loop.live_view.port) as client:  # type: ignore[union-attr]
            client.subscribe(*sorted(wanted))
            while set(received) != wanted and (message := client.receive(10.0)) is not None:
                received.setdefault(message[0], message[2])
        loop.stop_requested.set()

    viewer = threading.Thread(target=view, daemon=True)
    viewer.start()
    loop.run(duration_s=30.0)  # until the viewer has one of each
    summary = loop.close()
    viewer.join(10)
    assert set(received) == wanted
    assert decode_image(received["/camera/image"]).shape[2] == 3
    assert len(json.loads(received["/planner/plan"])["sequence"]) == loop.config.planner.horizon
    assert summary["live_view"] == f"ws://127.0.0.1:{loop.live_view.port}"

    raw = check_recording_channels(Path(summary["run_dir"]) / "run.mcap")
    assert {"/camera/image", "/robot/state", "/robot/command", "/planner/plan", "/model/latent", "/planner/goal",
            "/planner/goal_image", "/robot/stop"} <= raw.keys()
    assert len(raw["/planner/goal"]) == 1  # the start goal


def test_a_start_up_that_fails_after_the_recording_opened_finishes_it_and_frees_the_goal_port(
        controller: SimControllerThread, tmp_path: Path) -> None:
    pytest.importorskip("foxglove")
    import socket

    from mcap.reader import make_reader

    from runtime.live_view import LiveViewError

    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        goal_port = free.getsockname()[1]
        free.close()
        config = loop_config(controller.endpoints, tmp_path, "record=true", "live_view.enabled=true",
                             f"live_view.port={busy.getsockname()[1]}",
                             f"link.goal_endpoint=tcp://127.0.0.1:{goal_port}")
        with pytest.raises(LiveViewError, match=r"live_view\.port"):
            ControlLoop(config)
    recording = next(tmp_path.rglob("run.mcap"))
    with recording.open("rb") as stream:
        assert make_reader(stream).get_summary() is not None  # finished: its summary and footer were written
    with socket.socket() as again:
        again.bind(("127.0.0.1", goal_port))  # the goal server's port was freed
