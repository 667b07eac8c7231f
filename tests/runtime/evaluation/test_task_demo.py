"""A task played through the real loop and link: the sim staged between goals, success judged on its state."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mujoco")

from runtime.evaluation.task_demo import run_task_demo
from runtime.sim.goal_sets import make_goal_set
from runtime.sim.tasks import open_task

ROOT = Path(__file__).resolve().parents[3]


def test_reach_goals_through_the_runtime_loop_and_the_command_protocol(tmp_path: Path) -> None:
    goal_set = make_goal_set("reach", count=2, k=20, seed=4)
    result = run_task_demo(goal_set, ROOT / "configs" / "tasks" / "reach.yaml",
                           ["planner.samples=64", "planner.iterations=2", f"runs_dir={tmp_path}",
                            "loop.status_line=false"], goal_count=2, verbose=False)
    assert [g["goal"] for g in result["goals"]] == [0, 1]
    task, scene = open_task("reach")
    scene.close()
    for outcome, goal in zip(result["goals"], goal_set.goals, strict=True):
        # Judged on the sim's own state: a reached goal ended within 0.05 rad, a missed one used its budget.
        assert outcome["distance"] <= 0.05 if outcome["success"] else outcome["seconds"] >= 2 * 20 * 0.05 * 0.9
        assert task.distance(goal.start, goal.goal) > 0.05  # the start was not already there
    assert result["counters"]["commands"] > 5 and result["counters"]["wrong_state_dim"] == 0
    assert result["success_rate"] == sum(g["success"] for g in result["goals"]) / 2
