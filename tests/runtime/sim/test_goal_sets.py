"""The goal protocol: goals are states the expert reached k steps from seeded starts, reproducibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from runtime.sim.goal_sets import (
    GoalSetError,
    episode_rng,
    make_goal_set,
    read_goal_set,
    shipped_goal_set,
    write_goal_set,
)
from runtime.sim.tasks import TASKS, open_task

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_goals_are_the_experts_state_k_steps_from_the_seeded_start(name: str, tmp_path: Path) -> None:
    goal_set = make_goal_set(name, count=3, k=25, seed=9)
    assert goal_set.budget == 50 and len(goal_set.goals) == 3
    task, scene = open_task(name)
    for goal in goal_set.goals:  # replayed by hand: the same start, the same expert, the same goal
        rng = episode_rng(9, goal.index)
        task.reset(scene, rng)
        np.testing.assert_array_equal(scene.qpos(), goal.start)
        expert = task.expert(rng)
        for _ in range(25):
            scene.apply(expert(scene))
            scene.step_control()
        np.testing.assert_allclose(scene.qpos(), goal.goal, atol=1e-12)
        assert not task.success(goal.start, goal.goal)  # the robot has something to do
    scene.close()
    again = read_goal_set(write_goal_set(goal_set, tmp_path / "set.json"))
    assert again.task == name and again.k == 25 and again.seed == 9
    np.testing.assert_array_equal(again.goals[2].goal, goal_set.goals[2].goal)


def test_the_shipped_goal_sets_are_the_documented_ones() -> None:
    for name in TASKS:
        for k in (25, 75):
            goal_set = read_goal_set(ROOT / shipped_goal_set(name, k))
            assert (goal_set.task, goal_set.k, goal_set.budget, goal_set.seed) == (name, k, 2 * k, 1)
            assert len(goal_set.goals) == 200
    # Regenerated as documented they are the same states (no contact in reach: nothing chaotic to amplify
    # rounding differences between machines).
    fresh = make_goal_set("reach", count=2, k=25, seed=1)
    shipped = read_goal_set(ROOT / shipped_goal_set("reach", 25))
    np.testing.assert_allclose(fresh.goals[1].goal, shipped.goals[1].goal, atol=1e-6)


def test_unreadable_goal_sets_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "goals.json"
    path.write_text(json.dumps({"format_version": 7}))
    with pytest.raises(GoalSetError, match=f"{path}: format_version 7, expected 1"):
        read_goal_set(path)
    path.write_text("{not json")
    with pytest.raises(GoalSetError, match=f"{path}: not a readable goal set"):
        read_goal_set(path)
    with pytest.raises(GoalSetError, match=r"count \(0\) and k \(5\) must be at least 1"):
        make_goal_set("reach", count=0, k=5, seed=0)
    # One step is too few for the arm to reach the puck: no arm-push episode ends away from its start.
    with pytest.raises(GoalSetError, match=r"only 0 of 20 arm-push episodes of k = 1 steps end away from their start"):
        make_goal_set("arm-push", count=1, k=1, seed=0)
