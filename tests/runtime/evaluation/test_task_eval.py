"""edgeloop eval on a task: episodes end at success or at the budget, results pair up, misfits are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("mujoco")

from runtime.cli.app import app
from runtime.config import load_config
from runtime.evaluation.task_eval import TaskModelMismatch, evaluate_task
from runtime.sim.goal_sets import make_goal_set, write_goal_set

ROOT = Path(__file__).resolve().parents[3]
FAST = ["planner.samples=32", "planner.iterations=1", "planner.cem.elites=4"]


def test_reach_episodes_end_at_success_or_at_the_budget_and_every_planner_plays_the_same_goals() -> None:
    config = load_config(ROOT / "configs" / "tasks" / "reach.yaml", FAST)
    goal_set = make_goal_set("reach", count=4, k=10, seed=3)
    result = evaluate_task(config, goal_set, ["cem", "mppi"])
    assert (result["task"], result["k"], result["budget"], result["goals"]) == ("reach", 10, 20, 4)
    for entry in result["planners"].values():
        for episode in entry["episodes_detail"]:
            if episode["success"]:
                assert episode["distance"] <= 0.05 and episode["ticks"] <= 20
            else:
                assert episode["ticks"] == 20
        assert entry["outcomes"] == [e["success"] for e in entry["episodes_detail"]]
        low, high = entry["success_interval_95"]
        assert low <= entry["success_rate"] <= high
        assert entry["plans"] == sum(e["ticks"] for e in entry["episodes_detail"])  # one plan per tick
    paired = result["paired"]["comparisons"]["mppi"]
    cem, mppi = result["planners"]["cem"]["outcomes"], result["planners"]["mppi"]["outcomes"]
    assert paired["only_a"] == sum(a and not b for a, b in zip(cem, mppi, strict=True))
    assert paired["difference"] == pytest.approx((sum(mppi) - sum(cem)) / 4)


def test_a_model_that_does_not_fit_the_tasks_scene_is_refused_naming_both() -> None:
    config = load_config(ROOT / "configs" / "tasks" / "reach.yaml", FAST)
    with pytest.raises(TaskModelMismatch, match=r"does not fit scene 'two-room': the model steps 0.05 s, the scene "
                                                 r"0.1 s"):
        evaluate_task(config, make_goal_set("two-room", count=1, k=2, seed=0), ["cem"])


def test_eval_command_writes_results_and_compare_pairs_two_runs(tmp_path: Path) -> None:
    goal_set = write_goal_set(make_goal_set("reach", count=3, k=8, seed=5), tmp_path / "reach.json")
    runner = CliRunner()
    outputs = []
    for name, extra in (("a", []), ("b", ["--set", "planner.samples=16"])):
        out = tmp_path / f"{name}.json"
        result = runner.invoke(app, ["eval", "--task", "reach", "--goal-set", str(goal_set), "--out", str(out),
                                     *[arg for item in FAST for arg in ("--set", item)], *extra])
        assert result.exit_code == 0, result.output
        assert "success" in result.output and "[" in result.output  # the interval is printed
        outputs.append(out)
    compared = runner.invoke(app, ["eval", "compare", str(outputs[0]), str(outputs[1])])
    assert compared.exit_code == 0, compared.output
    assert "on 3 goals" in compared.output and "McNemar p" in compared.output
    other = json.loads(outputs[1].read_text()) | {"goals": 2}
    outputs[1].write_text(json.dumps(other))
    refused = runner.invoke(app, ["eval", "compare", str(outputs[0]), str(outputs[1])])
    assert refused.exit_code == 2 and "not on the same goals: goals 3 vs 2" in refused.output
    wrong_task = runner.invoke(app, ["eval", "--task", "push-t", "--goal-set", str(goal_set), "--config",
                                     str(ROOT / "configs" / "tasks" / "reach.yaml")])
    assert wrong_task.exit_code == 2 and "a goal set of task 'reach', not 'push-t'" in wrong_task.output


def test_with_execute_steps_a_plan_covers_that_many_ticks_as_in_the_runtime_loop() -> None:
    config = load_config(ROOT / "configs" / "tasks" / "reach.yaml", [*FAST, "planner.execute_steps=3"])
    result = evaluate_task(config, make_goal_set("reach", count=3, k=10, seed=3), ["cem"])
    entry = result["planners"]["cem"]
    plans = sum(-(-episode["ticks"] // 3) for episode in entry["episodes_detail"])  # ceil: one plan per chunk
    assert entry["plans"] == plans < sum(episode["ticks"] for episode in entry["episodes_detail"])
