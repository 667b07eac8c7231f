"""The control loop end to end: real sim controller, real ZeroMQ, real ONNX Runtime, the shipped model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime.config import RunConfig, load_config
from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink
from runtime.loop import ControlLoop
from runtime.recording import iter_messages
from runtime.sim.controller import SimControllerSettings, run_sim_controller

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "models" / "demo" / "manifest.json"
GOAL = ROOT / "models" / "demo" / "goals" / "goal_000.png"
ANY = "tcp://127.0.0.1:*"


class SimControllerThread:
    """run_sim_controller in a background thread, restartable on the endpoints it first bound."""

    def __init__(self, endpoints: dict[str, str] | None = None, watchdog_ms: float = 300.0) -> None:
        endpoints = endpoints or {"command": ANY, "state": ANY, "frame": ANY}
        self.settings = SimControllerSettings(command_endpoint=endpoints["command"],
                                              state_endpoint=endpoints["state"],
                                              frame_endpoint=endpoints["frame"], watchdog_ms=watchdog_ms)
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


def loop_config(endpoints: dict[str, str], tmp_path: Path, *extra: str) -> RunConfig:
    return load_config(ROOT / "configs" / "demo.yaml", [
        f"model.manifest={MANIFEST}",
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
    assert {"loop_hz", "tick_ms", "stages", "counters", "model_sha256", "config"} <= written.keys()
    assert set(written["tick_ms"]) == {"p50", "p95", "p99", "max"}
    assert {"source", "state", "encode", "plan", "send"} <= written["stages"].keys()
    assert {"frames", "drops", "deadline_misses", "commands", "stops", "bad_messages"} <= written["counters"].keys()
    assert len(written["model_sha256"]) == 64
    assert written["config"]["planner"]["samples"] == 256
    assert load_config(Path(summary["run_dir"]) / "config.yaml") == loop.config

    topics = {topic for topic, *_ in iter_messages(Path(summary["run_dir"]) / "run.mcap")}
    assert {"/camera/image", "/robot/state", "/robot/command", "/planner/plan", "/model/latent"} <= topics
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


def test_states_that_do_not_fit_the_model_stop_the_robot_and_are_counted(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A controller with a different joint count: no plan from its states, stop sent, said once; then it fits."""
    import cv2

    from runtime.link.controller_side import ControllerLink

    image = cv2.imread(str(GOAL))
    with ControllerLink(2, command_endpoint=ANY, state_endpoint=ANY, frame_endpoint=ANY) as robot:
        endpoints = {"command": robot.command_endpoint, "state": robot.state_endpoint,
                     "frame": robot.frame_endpoint or ""}
        loop = ControlLoop(loop_config(endpoints, tmp_path))
        try:
            received: list[protocol.Command | protocol.Stop] = []

            def publish_and_tick(joints: int, ticks: int) -> None:
                """A controller's cycle: publish, let the loop tick, take what it sent (as a robot polls)."""
                for _ in range(ticks):
                    robot.publish_frame(image, time.time_ns())
                    robot.publish_state(np.zeros(joints), np.zeros(joints), np.zeros(3), False, -1)
                    time.sleep(0.01)
                    loop.tick()
                    message = robot.poll(timeout_ms=5)
                    if message is not None:
                        received.append(message)

            publish_and_tick(3, 40)  # the demo model's proprio input is [q, dq] of 2 joints
            counters = loop.telemetry.counters
            assert counters["wrong_state_dim"] > 10
            assert counters["commands"] == 0 and counters["plans"] == 0 and counters["stops"] > 10
            # Once wrong states arrive they are not counted as missing (the first ticks may be, before one arrives).
            missing = counters["missing_state"]
            publish_and_tick(3, 10)
            assert counters["missing_state"] == missing
            assert received and all(isinstance(message, protocol.Stop) for message in received)
            assert {message.reason for message in received} == {"controller state does not fit the model"}
            said = capsys.readouterr().err
            assert said.count("dropped: fields 'q' and 'dq' have 3 and 3 values") == 1, said
            assert "takes 2 each, 4 values" in said
            received.clear()
            publish_and_tick(2, 40)
            assert counters["commands"] > 0 and isinstance(received[-1], protocol.Command)
            publish_and_tick(3, 5)  # wrong again: said again, and stopped again
            assert capsys.readouterr().err.count("have 3 and 3 values") == 1
            assert isinstance(received[-1], protocol.Stop)
        finally:
            loop.close()


def test_controller_killed_mid_run_then_back(tmp_path: Path) -> None:
    """The runtime keeps running, counts missing state, sends stops, and resumes when the controller returns."""
    first = SimControllerThread()
    loop = ControlLoop(loop_config(first.endpoints, tmp_path, "link.state_timeout_ms=200",
                                   "source.frame_timeout_ms=200"))
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 30.0}, daemon=True)
    runner.start()
    counters = loop.telemetry.counters

    def wait(condition: Callable[[], bool], timeout_s: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    try:
        assert wait(lambda: counters["commands"] > 5)
        first.stop()
        stops_before = counters["stops"]
        assert wait(lambda: counters["stale_frames"] + counters["missing_state"] > 3)
        assert wait(lambda: counters["stops"] > stops_before + 3)
        commands_while_gone = counters["commands"]
        second = SimControllerThread(first.endpoints)
        try:
            assert wait(lambda: counters["commands"] > commands_while_gone + 5), "did not recover"
        finally:
            loop.stop_requested.set()
            runner.join(10)
            assert second.stop()["commands_applied"] > 0
    finally:
        loop.stop_requested.set()
        runner.join(10)
        loop.close()


def _run_cli(config: Path, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "runtime.cli", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ | {"MUJOCO_GL": "egl"})


def _write_config(tmp_path: Path, endpoints: dict[str, str]) -> Path:
    path = tmp_path / "run.yaml"
    config = loop_config(endpoints, tmp_path)
    from runtime.config import dump_config

    path.write_text(dump_config(config))
    return path


def test_sigterm_stops_cleanly_and_watchdog_holds_arm_when_runtime_dies(controller: SimControllerThread,
                                                                       tmp_path: Path) -> None:
    config = _write_config(tmp_path, controller.endpoints)
    observer = RuntimeLink(controller.endpoints["command"], controller.endpoints["state"])
    try:
        # SIGTERM: stop sent, summary written, exit 0.
        process = _run_cli(config, tmp_path)
        assert _wait_for(lambda: (s := observer.latest_state()) is not None and not s.stopped, 60), \
            "runtime never moved the arm"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1])["counters"]["commands"] > 0
        assert list((tmp_path / "runs").glob("*/summary.json"))

        # SIGKILL: no stop is sent; the controller's watchdog must hold the arm still.
        process = _run_cli(config, tmp_path)
        assert _wait_for(lambda: (s := observer.latest_state()) is not None and not s.stopped, 60)
        watchdog_before = controller.counters.get("watchdog_stops", 0)
        process.kill()
        process.wait(10)
        # The watchdog stops the arm and it comes to rest (braking takes a few physics steps).
        assert _wait_for(lambda: (s := observer.latest_state()) is not None and s.stopped
                         and bool(np.all(np.abs(s.dq) < 0.05)), 10)
    finally:
        observer.close()
    assert controller.stop()["watchdog_stops"] >= watchdog_before + 1


def _wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


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
