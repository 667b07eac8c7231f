"""`edgeloop demo --task NAME`: a task's goals played closed loop through the real runtime and link.

The task's scene runs as a sim controller on loopback sockets in this process; the runtime's ControlLoop
drives it over the command protocol exactly as it drives a robot. Between goals the sim is put at the goal
set's start state and the loop gets the goal image rendered at the goal state; the task judges success on
the sim's physics state each tick, and a goal is missed after its budget (2k control periods, real time).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

from runtime.config import load_config
from runtime.evaluation.statistics import wilson_interval
from runtime.link import protocol
from runtime.loop import ControlLoop
from runtime.sim.controller import SimControllerSettings, SimHandle, run_sim_controller
from runtime.sim.goal_sets import GoalSet
from runtime.sim.scene import Scene
from runtime.sim.tasks import open_task

ANY_PORT = "tcp://127.0.0.1:*"


class _SimControllerThread:
    def __init__(self, scene: str, image_size: int) -> None:
        self.handle = SimHandle()
        self.stop_event = threading.Event()
        ready = threading.Event()
        self.endpoints: dict[str, str] = {}
        self.error: BaseException | None = None
        settings = SimControllerSettings(command_endpoint=ANY_PORT, state_endpoint=ANY_PORT,
                                         frame_endpoint=ANY_PORT, scene=scene, image_size=image_size)

        def on_ready(bound: dict[str, str]) -> None:
            self.endpoints.update(bound)
            ready.set()

        def serve() -> None:
            try:
                run_sim_controller(settings, self.stop_event, on_ready, self.handle)
            except BaseException as exc:  # handed to the caller, which waits on `ready`
                self.error = exc
                ready.set()

        self.thread = threading.Thread(target=serve, name="sim controller", daemon=True)
        self.thread.start()
        if not ready.wait(60) or self.error is not None:
            self.stop()
            raise RuntimeError(f"sim controller for scene {scene!r} did not start: {self.error}")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


def run_task_demo(goal_set: GoalSet, config_path: Path, overrides: list[str], goal_count: int,
                  verbose: bool = True) -> dict[str, Any]:
    """Play the first `goal_count` goals of the set; returns the JSON-able result."""
    if goal_count > len(goal_set.goals):
        raise ValueError(f"--goals {goal_count}: the goal set has {len(goal_set.goals)}")
    side = _image_side(load_config(config_path, overrides).model.manifest)
    task, judge = open_task(goal_set.task, image_size=(side, side))  # renders goal images, judges states
    period = judge.spec.control_period_s
    controller: _SimControllerThread | None = None
    outcomes = []
    try:
        controller = _SimControllerThread(goal_set.scene, side)
        endpoints = controller.endpoints
        config = load_config(config_path, [
            *overrides, f"link.command_endpoint={endpoints['command']}", f"link.state_endpoint={endpoints['state']}",
            f"source.uri={endpoints['frame'].replace('tcp://', 'zmq://')}", "goal.image=null",
            "link.goal_endpoint=null"])
        loop = ControlLoop(config)
        try:
            for goal in goal_set.goals[:goal_count]:
                outcomes.append(_play(loop, controller.handle, task, judge, goal, goal_set.budget * period))
                if verbose:
                    o = outcomes[-1]
                    print(f"goal {goal.index:3d} {'reached' if o['success'] else 'MISSED '}  distance "
                          f"{o['distance']:.4f}  in {o['seconds']:4.1f} s", file=sys.stderr)
        finally:
            summary = loop.close()
    finally:
        if controller is not None:
            controller.stop()
        judge.close()
    successes = sum(o["success"] for o in outcomes)
    return {"task": goal_set.task, "k": goal_set.k, "goals": outcomes, "success_rate": successes / len(outcomes),
            "success_interval_95": list(wilson_interval(successes, len(outcomes))), "loop_hz": summary["loop_hz"],
            "tick_ms": summary["tick_ms"], "plan_ms_p50": summary["planner"]["plan_ms_p50"],
            "counters": summary["counters"], "model_id": summary["model_id"], "run_dir": summary["run_dir"]}


def _image_side(manifest_path: Path) -> int:
    from perception.manifest import load_manifest

    image = load_manifest(manifest_path).image
    if image.width != image.height:
        raise ValueError(f"{manifest_path}: the sim renders square frames; the model takes {image.width}x"
                         f"{image.height}")
    return image.width


def _play(loop: ControlLoop, handle: SimHandle, task: Any, judge: Scene, goal: Any, budget_s: float) -> dict[str, Any]:
    judge.set_qpos(goal.goal, goal.goal_qvel)
    handle.run(lambda scene: scene.set_qpos(goal.start))
    loop.set_goal_image(judge.render())
    reached = False

    def judged(_state: protocol.State | None) -> bool:
        nonlocal reached
        reached = task.success(handle.qpos(), goal.goal)
        return reached

    started = time.monotonic()
    loop.run(duration_s=budget_s, until=judged)
    final = handle.qpos()
    return {"goal": goal.index, "success": reached, "distance": task.distance(final, goal.goal),
            "seconds": time.monotonic() - started, **task.metrics(final, goal.goal)}



