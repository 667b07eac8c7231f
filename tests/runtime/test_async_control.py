"""Asynchronous planning: a plan's actions in time, and the two threads against the sim controller process (real
ZeroMQ, real ONNX Runtime, the shipped model). Counts, order and bounds with wide margins, never timing."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from foxglove_checks import check_recording_channels
from waiting import wait_for

from planning.planner import PlanResult
from runtime.async_control import TimedPlan
from runtime.config import dump_config
from runtime.evaluation.demo import SimControllerProcess, config_against
from runtime.goals import send_goal
from runtime.link import protocol
from runtime.loop import ControlLoop
from runtime.recording import iter_messages
from runtime.sources import FrameSource, SourceFrame
from runtime.sources.base import SourceError

ROOT = Path(__file__).resolve().parents[2]
GOAL = ROOT / "models" / "demo" / "goals" / "goal_000.png"
STEP_S = 0.05


def _plan(actions: list[list[float]]) -> TimedPlan:
    array = np.asarray(actions, dtype=np.float64)
    array.flags.writeable = False
    state = protocol.State(seq=0, stamp=0, q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(3), stopped=False,
                           last_command_seq=-1)
    result = PlanResult(action=array[0], sequence=array, cost=0.0, iterations=1, ms=1.0, best_cost_per_iteration=[0.0],
                        spread=0.0, deadline_hit=False, chosen="sampled")
    return TimedPlan(plan_id=0, actions=array, step_s=STEP_S, captured_at=100.0, stamp_capture=7,
                     frame=SourceFrame(0, 7, np.zeros((2, 2, 3), np.uint8)), state=state,
                     latent=np.zeros(4, np.float32), result=result)


def test_hold_sends_each_step_for_its_whole_step_and_the_last_past_the_end() -> None:
    plan = _plan([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    for age_s, expected in [(-0.01, [0.0, 1.0]), (0.0, [0.0, 1.0]), (0.049, [0.0, 1.0]), (0.051, [2.0, 3.0]),
                            (0.149, [4.0, 5.0]), (0.5, [4.0, 5.0])]:
        assert plan.action_at(100.0 + age_s, "hold").tolist() == expected, age_s


def test_linear_blends_from_one_steps_action_to_the_next() -> None:
    plan = _plan([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    assert plan.action_at(100.0, "linear") == pytest.approx([0.0, 1.0])
    assert plan.action_at(100.0 + 0.25 * STEP_S, "linear") == pytest.approx([0.5, 1.5])
    assert plan.action_at(100.0 + 1.5 * STEP_S, "linear") == pytest.approx([3.0, 4.0])
    assert plan.action_at(100.0 + 2.5 * STEP_S, "linear") == pytest.approx([4.0, 5.0])  # the last step is held
    with pytest.raises(ValueError):
        plan.actions[0, 0] = 1.0  # the handoff is never changed after it is made


@pytest.fixture(scope="module")
def controller() -> Iterator[SimControllerProcess]:
    process = SimControllerProcess()
    yield process
    process.stop()


def async_loop(controller: SimControllerProcess, *extra: str, source: FrameSource | None = None,
               goal_endpoint: str | None = None) -> ControlLoop:
    """The demo config on `controller`'s sockets, planning asynchronously towards the first goal."""
    overrides = ["loop.status_line=false", "loop.planning=async", "link.command_hz=100", *extra]
    config = config_against(controller, ROOT / "configs" / "demo.yaml", overrides)
    config.link.goal_endpoint = goal_endpoint  # config_against turns it off
    loop = ControlLoop(config, source=source)
    loop.set_goal_image(cv2.imread(str(GOAL)))
    return loop


def _run(loop: ControlLoop, duration_s: float) -> list[protocol.State]:
    """Run the loop; the controller's states it saw (each says whether the controller held the arm still)."""
    states: list[protocol.State] = []

    def note(state: protocol.State | None) -> bool:
        if state is not None and (not states or states[-1] is not state):
            states.append(state)
        return False

    loop.run(duration_s=duration_s, until=note)
    return states


def test_commands_go_out_at_the_command_rate_from_the_newest_plan(controller: SimControllerProcess,
                                                                  tmp_path: Path) -> None:
    loop = async_loop(controller, f"runs_dir={tmp_path}", "record=true")
    states = _run(loop, 3.0)
    assert not any(thread.name == "edgeloop-planner" for thread in threading.enumerate())  # joined by run
    summary = loop.close()
    counters, measured = summary["counters"], summary["async"]
    assert any(not state.stopped for state in states)  # the controller applied the commands
    # 100 Hz for 3 s is 300 messages: never more (no bursts after a late one), and most of them on a loaded box.
    assert 100 <= counters["ticks"] <= 3 * 100 + 2
    assert counters["commands"] + counters["stops"] == counters["ticks"] + 1  # one message a tick, and the exit stop
    assert counters["commands"] >= 50
    # Plans at most loop.rate_hz (30) a second, each used for several commands.
    assert 5 <= counters["plans"] <= 3 * 30 + 2
    assert measured["commands_per_plan"]["mean"] > 1.0
    assert counters["commands"] / counters["plans"] > 1.0
    assert 0 < measured["plan_age_ms"]["max"] <= loop.config.loop.max_plan_age_ms
    assert measured["send_interval_ms"]["p50"] > 0 and measured["jitter_ms"]["max"] >= 0
    assert counters["stale_plans"] < counters["commands"]  # a late plan is rare when the planner keeps up

    recorded = list(iter_messages(Path(summary["run_dir"]) / "run.mcap", ["/robot/command", "/planner/plan"]))
    commands = [payload for topic, _, _, payload in recorded if topic == "/robot/command"]
    plans = [payload for topic, _, _, payload in recorded if topic == "/planner/plan"]
    assert len(commands) == counters["commands"]
    seqs = [command["seq"] for command in commands]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, each once
    # Each plan commands came from is recorded once, with the first command from it, in the order they were made.
    plan_ids = [plan["plan_id"] for plan in plans]
    assert plan_ids == sorted(set(plan_ids)) and 0 < len(plan_ids) <= counters["plans"]
    assert all(plan["planning"] == "async" for plan in plans)
    check_recording_channels(Path(summary["run_dir"]) / "run.mcap")  # every message fits its channel's schema


def test_plans_older_than_the_limit_are_never_sent(controller: SimControllerProcess, tmp_path: Path) -> None:
    """A plan takes longer than 1 ms from capture to handoff: with loop.max_plan_age_ms 1 every plan is stale."""
    loop = async_loop(controller, f"runs_dir={tmp_path}", "loop.max_plan_age_ms=1", "planner.iterations=5")
    states = _run(loop, 2.0)
    summary = loop.close()
    counters = summary["counters"]
    assert counters["plans"] >= 3  # the planner planned ...
    assert counters["commands"] == 0  # ... and nothing it planned went out
    assert counters["stale_plans"] >= 10
    assert counters["stops"] == counters["ticks"] + 1
    assert summary["async"]["plan_age_ms"]["max"] == 0.0  # no command, no age at send
    assert len(states) > 10 and all(state.stopped for state in states)  # the controller held the arm throughout


def test_a_plan_longer_lived_than_the_plan_itself_is_refused_with_the_key_named(controller: SimControllerProcess,
                                                                                 tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"loop.max_plan_age_ms: 400 ms is longer than a plan lasts \(250 ms"):
        async_loop(controller, f"runs_dir={tmp_path}", "loop.max_plan_age_ms=400")
    with pytest.raises(ValueError, match=r"loop\.control_cpu: CPU 4096 is not one this process may run on"):
        async_loop(controller, f"runs_dir={tmp_path}", "loop.control_cpu=4096")


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling")
def test_a_real_time_command_thread_gets_its_scheduling_back_after_the_run(controller: SimControllerProcess,
                                                                           tmp_path: Path) -> None:
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.sched_getaffinity(0))
    try:
        loop = async_loop(controller, f"runs_dir={tmp_path}", "loop.control_priority=5", "loop.control_cpu=0")
    except ValueError as exc:  # no CAP_SYS_NICE here: refused at start, naming the key
        assert "loop.control_priority: SCHED_FIFO priority 5 is not permitted" in str(exc)
        return
    _run(loop, 1.0)
    summary = loop.close()
    assert summary["counters"]["commands"] > 0
    assert summary["async"]["control_priority"] == 5 and summary["async"]["control_cpu"] == 0
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority, os.sched_getaffinity(0)) == before


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs two CPUs to split")
def test_a_pinned_command_thread_leaves_the_other_cpus_to_the_planner(controller: SimControllerProcess,
                                                                      tmp_path: Path) -> None:
    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    loop = async_loop(controller, f"runs_dir={tmp_path}", f"loop.control_cpu={cpu}")
    _run(loop, 1.0)
    summary = loop.close()
    assert summary["counters"]["commands"] > 0
    assert loop.async_control is not None and loop.async_control.planner_cpus == allowed - {cpu}
    assert os.sched_getaffinity(0) == allowed


class CameraThatFails(FrameSource):
    """The goal view for a few reads, then the error a video that stops decoding raises."""

    def __init__(self, reads: int) -> None:
        super().__init__("test:camera-that-fails")
        self.left = reads
        self.image = cv2.imread(str(GOAL))

    def read_latest(self, timeout_s: float) -> SourceFrame | None:
        if self.left == 0:
            raise SourceError(f"{self.uri}: stopped decoding")
        self.left -= 1
        self.frames += 1
        return SourceFrame(self.frames, protocol.now_ns(), self.image)


def test_an_error_in_the_planner_thread_stops_the_robot_and_is_raised_by_the_run(controller: SimControllerProcess,
                                                                                   tmp_path: Path) -> None:
    loop = async_loop(controller, f"runs_dir={tmp_path}", "record=true", source=CameraThatFails(reads=15))
    try:
        with pytest.raises(SourceError, match="stopped decoding"):
            _run(loop, 30.0)
        counters = loop.telemetry.counters
        assert counters["commands"] > 0 and counters["ticks"] < 30 * 100  # it moved the arm, then ended early
        assert not any(thread.name == "edgeloop-planner" for thread in threading.enumerate())
    finally:
        summary = loop.close()
    recorded = [(topic, payload) for topic, _, _, payload in iter_messages(Path(summary["run_dir"]) / "run.mcap")]
    # The run's own stop went out first, saying why, and nothing after it but the exit's.
    failed = [i for i, (topic, payload) in enumerate(recorded) if topic == "/robot/stop"
              and payload["reason"] == "the planner thread failed: test:camera-that-fails: stopped decoding"]
    assert len(failed) == 1
    assert [(topic, payload["reason"]) for topic, payload in recorded[failed[0] + 1:]] == \
        [("/robot/stop", "runtime exiting")]


def test_goal_messages_are_taken_by_the_planner_thread_while_commands_go_on(controller: SimControllerProcess,
                                                                           tmp_path: Path) -> None:
    loop = async_loop(controller, f"runs_dir={tmp_path}", "record=true", goal_endpoint="tcp://127.0.0.1:*")
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 60.0})
    runner.start()
    counters = loop.telemetry.counters
    try:
        assert wait_for(lambda: counters["commands"] > 10, 30)
        assert loop.goal_endpoint is not None
        other = cv2.imread(str(GOAL.with_name("goal_001.png")))
        send_goal(loop.goal_endpoint, protocol.Goal(seq=0, stamp_send=protocol.now_ns(), image=other, state=None))
        assert wait_for(lambda: counters["goals"] == 1, 10)
        assert loop.planner.goal is not None and loop.planner.goal.visual is not None
        assert np.allclose(loop.planner.goal.visual, loop.world_model.encode_goal_image(other), atol=1e-6)
        commands = counters["commands"]
        assert wait_for(lambda: counters["commands"] > commands + 10, 10), "the command thread stopped commanding"
    finally:
        loop.stop_requested.set()
        runner.join(10)
        summary = loop.close()
    assert not runner.is_alive()
    topics = [topic for topic, *_ in iter_messages(Path(summary["run_dir"]) / "run.mcap")]
    assert topics.count("/planner/goal") == 1 and topics.count("/robot/command") == summary["counters"]["commands"]


def test_a_reload_to_plans_shorter_than_the_age_limit_is_refused(controller: SimControllerProcess, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """horizon 2 x 50 ms is a 100 ms plan, shorter than loop.max_plan_age_ms 150: the planner keeps its settings."""
    overrides = ["loop.status_line=false", "loop.planning=async", f"runs_dir={tmp_path}"]
    config_file = tmp_path / "run.yaml"
    in_force = config_against(controller, ROOT / "configs" / "demo.yaml", overrides)
    config_file.write_text(dump_config(in_force))
    loop = ControlLoop(in_force, config_file=config_file)
    loop.set_goal_image(cv2.imread(str(GOAL)))
    counters = loop.telemetry.counters
    try:
        config_file.write_text(dump_config(in_force.model_copy(update={
            "planner": in_force.planner.model_copy(update={"horizon": 2})})))
        loop.run(duration_s=20.0, until=lambda _state: counters["reload_errors"] > 0)
        assert (counters["reload_errors"], counters["reloads"]) == (1, 0)
        assert loop.planner.settings.horizon == 5 and counters["commands"] > 0
        assert "loop.max_plan_age_ms: 150 ms is longer than a plan lasts (100 ms" in capsys.readouterr().err
    finally:
        loop.close()
