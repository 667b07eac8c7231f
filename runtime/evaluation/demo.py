"""The main job: the sim controller and the runtime, driving the arm to held-out goal images in turn."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from runtime.config import RunConfig, load_config
from runtime.link import protocol
from runtime.loop import ControlLoop


class DemoError(RuntimeError):
    pass


@dataclass
class GoalOutcome:
    index: int
    image: str
    reached: bool
    distance: float
    seconds: float


def load_goals(goals_file: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(goals_file.read_text())
        goals = data["goals"]
        for i, goal in enumerate(goals):
            if not {"image", "ee"} <= goal.keys():
                raise DemoError(f"{goals_file}: goals[{i}] needs 'image' and 'ee'")
        return list(goals)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DemoError(f"{goals_file}: not a readable goal set ({exc})") from exc


class SimControllerProcess:
    """`edgeloop controller sim` in a child process on ephemeral loopback ports."""

    def __init__(self, watchdog_ms: float = 300.0, ready_timeout_s: float = 60.0) -> None:
        any_port = "tcp://127.0.0.1:*"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "controller", "sim", "--command-endpoint", any_port,
             "--state-endpoint", any_port, "--frame-endpoint", any_port, "--watchdog-ms", str(watchdog_ms)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.endpoints = self._wait_ready(ready_timeout_s)

    def _wait_ready(self, timeout_s: float) -> dict[str, str]:
        assert self.process.stdout is not None and self.process.stderr is not None
        result: dict[str, str] = {}
        ready = threading.Event()
        stdout: IO[str] = self.process.stdout
        stderr: IO[str] = self.process.stderr
        # Both pipes are read for the child's whole life: a pipe nobody reads fills (64 KiB) and then blocks the
        # controller mid-write. stderr's tail is kept for error messages.
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=200)

        def read_stdout() -> None:
            for line in stdout:
                if ready.is_set():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and event.get("event") == "ready":
                    result.update({k: event[k] for k in ("command", "state", "frame")})
                    ready.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        stderr_reader = threading.Thread(target=lambda: self._stderr_tail.extend(stderr), daemon=True)
        stderr_reader.start()
        if not ready.wait(timeout_s):
            self.stop()
            stderr_reader.join(5.0)  # the child has exited: what it wrote last is still being read
            raise DemoError(f"sim controller did not start: {self.stderr_tail()[-2000:]}")
        return result

    def stderr_tail(self) -> str:
        """The last lines the controller wrote to stderr."""
        return "".join(self._stderr_tail)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def config_against(controller: SimControllerProcess, config_path: Path, overrides: list[str]) -> RunConfig:
    """The run config with its link and camera on `controller`'s sockets; goals come from the caller."""
    return load_config(config_path, [
        *overrides,
        f"link.command_endpoint={controller.endpoints['command']}",
        f"link.state_endpoint={controller.endpoints['state']}",
        f"source.uri={controller.endpoints['frame'].replace('tcp://', 'zmq://')}",
        "goal.image=null",
        "link.goal_endpoint=null",
    ])


def run_facts(summary: dict[str, Any]) -> dict[str, Any]:
    """What a demo or soak report carries from the run's summary.json."""
    return {"loop_hz": summary["loop_hz"], "tick_ms": summary["tick_ms"],
            "plan_ms_p50": summary["planner"]["plan_ms_p50"], "counters": summary["counters"],
            "backend": summary["backend"], "model_id": summary["model_id"], "run_dir": summary["run_dir"]}


def run_demo(config_path: Path, goal_count: int, overrides: list[str], tolerance_m: float = 0.05,
             goal_timeout_s: float = 10.0, settle_s: float = 0.3, verbose: bool = True) -> dict[str, Any]:
    """Drive to the first `goal_count` held-out goals; returns the JSON-able result."""
    controller = SimControllerProcess()
    try:
        config = config_against(controller, config_path, overrides)
        goals_file = config.model.manifest.parent / "goals" / "goals.json"
        goals = load_goals(goals_file)[:goal_count]
        if len(goals) < goal_count:
            raise DemoError(f"{goals_file}: asked for {goal_count} goals, the set has {len(goals)}")
        loop = ControlLoop(config)
        outcomes: list[GoalOutcome] = []
        try:
            for index, goal in enumerate(goals):
                outcome = _drive_to_goal(loop, goals_file.parent, index, goal, tolerance_m, goal_timeout_s, settle_s)
                outcomes.append(outcome)
                if verbose:
                    mark = "reached" if outcome.reached else "MISSED "
                    print(f"goal {index:3d} {mark}  distance {outcome.distance * 100:5.1f} cm  "
                          f"in {outcome.seconds:4.1f} s", file=sys.stderr)
        finally:
            summary = loop.close()
    finally:
        controller.stop()
    reached = sum(o.reached for o in outcomes)
    return {
        "goals": [{"image": o.image, "reached": o.reached, "distance": o.distance, "seconds": o.seconds}
                  for o in outcomes],
        "success_rate": reached / len(outcomes) if outcomes else 0.0,
        "tolerance_m": tolerance_m,
        **run_facts(summary),
    }


def _drive_to_goal(loop: ControlLoop, goal_dir: Path, index: int, goal: dict[str, Any], tolerance_m: float,
                   timeout_s: float, settle_s: float) -> GoalOutcome:
    image = cv2.imread(str(goal_dir / goal["image"]), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError(f"{goal_dir / goal['image']}: goal image missing or unreadable")
    loop.set_goal_image(image)
    target = np.asarray(goal["ee"], dtype=np.float64)
    ticks_to_settle = max(1, round(settle_s * loop.tick_hz))
    within = 0

    def settled(state: protocol.State | None) -> bool:
        nonlocal within
        if state is None or state.ee.size != target.size:
            return False
        within = within + 1 if np.linalg.norm(state.ee - target) < tolerance_m else 0
        return within >= ticks_to_settle

    started = loop.telemetry.elapsed_s()
    loop.run(duration_s=timeout_s, until=settled)
    state = loop.state
    distance = float(np.linalg.norm(state.ee - target)) if state is not None else float("inf")
    return GoalOutcome(index, str(goal["image"]), distance < tolerance_m, distance,
                       loop.telemetry.elapsed_s() - started)
