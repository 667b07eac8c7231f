"""The field's goal protocol (docs/tasks.md): a goal is the state k steps ahead on a recorded expert trajectory.

Episode i of a goal set starts from the task's seeded reset (seed, i), the task's expert runs k control periods
from there, and the state it reaches is the goal: every goal is reachable by construction, in k steps. An
episode whose start already counts as reaching its goal is skipped. An
evaluation episode starts from the same start state, sees the goal as the image rendered at the goal state,
and ends at success or after `budget` = 2k steps; never "re-plan until success".

Goal sets are JSON (states only, no images: the goal image is rendered from the goal state when needed), so
they ship in the repo under data/goals/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.sim.tasks import open_task

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TaskGoal:
    index: int
    start: np.ndarray  # qpos the episode starts from (at rest)
    goal: np.ndarray  # qpos k expert steps later
    goal_qvel: np.ndarray  # the velocities there, so the goal image and state are the expert's


@dataclass(frozen=True)
class GoalSet:
    task: str
    scene: str
    k: int
    budget: int  # control periods an episode may take
    seed: int
    goals: list[TaskGoal]

    def to_json(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "task": self.task, "scene": self.scene, "k": self.k,
                "budget": self.budget, "seed": self.seed,
                "goals": [{"index": g.index, "start": g.start.tolist(), "goal": g.goal.tolist(),
                           "goal_qvel": g.goal_qvel.tolist()} for g in self.goals]}


class GoalSetError(ValueError):
    pass


def episode_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index])


def make_goal_set(task_name: str, count: int, k: int, seed: int) -> GoalSet:
    """`count` goals, each the state after k expert steps from a seeded start.

    An episode whose start already satisfies its goal (the expert did not get to move what the task judges in
    k steps, e.g. the arm never reached the puck) is skipped: every goal needs the robot to do something.
    Goals keep their episode index, which seeds them, so each can be replayed on its own."""
    if count < 1 or k < 1:
        raise GoalSetError(f"goal set: count ({count}) and k ({k}) must be at least 1")
    task, scene = open_task(task_name)
    goals: list[TaskGoal] = []
    attempts = 20 * count
    try:
        for index in range(attempts):
            if len(goals) == count:
                break
            rng = episode_rng(seed, index)
            task.reset(scene, rng)
            start = scene.qpos()
            expert = task.expert(rng)
            for _ in range(k):
                scene.apply(expert(scene))
                scene.step_control()
            if not task.success(start, scene.qpos()):
                goals.append(TaskGoal(index, start, scene.qpos(), scene.data.qvel.copy()))
    finally:
        scene.close()
    if len(goals) < count:
        raise GoalSetError(f"goal set: only {len(goals)} of {attempts} {task_name} episodes of k = {k} steps end "
                           f"away from their start; the expert needs more steps")
    return GoalSet(task_name, type(task).scene, k, 2 * k, seed, goals)


def write_goal_set(goal_set: GoalSet, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(goal_set.to_json()))
    return path


def read_goal_set(path: Path) -> GoalSet:
    try:
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise GoalSetError(f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
        goals = [TaskGoal(int(g["index"]), np.asarray(g["start"], np.float64), np.asarray(g["goal"], np.float64),
                          np.asarray(g["goal_qvel"], np.float64)) for g in data["goals"]]
        return GoalSet(str(data["task"]), str(data["scene"]), int(data["k"]), int(data["budget"]), int(data["seed"]),
                       goals)
    except GoalSetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GoalSetError(f"{path}: not a readable goal set ({exc})") from exc


def shipped_goal_set(task_name: str, k: int) -> Path:
    """Where the repo's goal set for a task and k lives: data/goals/<task>-k<k>.json."""
    return Path("data") / "goals" / f"{task_name}-k{k}.json"
