"""The oracle world model: MuJoCo as the predictor, in the latent a model of the task was trained to have."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mujoco")

from perception.manifest import Manifest, load_manifest
from planning.visual_basis import visual_basis
from runtime.evaluation.oracle import OracleError, OracleModel
from runtime.sim.tasks import open_task

MEAN = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
STD = [0.1, 0.1, 0.05, 0.05, 0.7, 0.7]


def push_t_manifest(visual_target: dict[str, object]) -> Manifest:
    manifest = load_manifest("models/push-t/manifest.json")
    return manifest.model_copy(update={"training": {"metrics": {"visual_target": visual_target}}})


def test_one_prediction_is_one_control_period_of_the_scene_for_every_sample() -> None:
    task, scene = open_task("push-t")
    try:
        task.reset(scene, np.random.default_rng(4))
        oracle = OracleModel(task, scene, push_t_manifest({"mean": MEAN, "std": STD}))
        start = oracle.encode(scene.render(), None)
        actions = np.array([[0.2, -0.1], [-0.3, 0.3], [0.0, 0.0]], dtype=np.float32)
        predicted = oracle.predict(np.tile(start, (3, 1)), actions)
        saved = start[oracle.visual_dim:].astype(np.float64)
        for row, action in enumerate(actions):  # the scene itself, from the same state
            import mujoco

            mujoco.mj_setState(scene.model, scene.data, saved, mujoco.mjtState.mjSTATE_FULLPHYSICS)
            scene.apply(action)
            scene.step_control()
            np.testing.assert_allclose(predicted[row], oracle.encode(scene.render(), None), atol=2e-4)
        # The visual part is the trained latent of the true state: basis @ normalized (pusher, T, cos, sin).
        expected = ((task.visual_state(scene.qpos()) - np.array(MEAN)) / np.array(STD)) @ visual_basis(
            oracle.visual_dim, 6).T
        np.testing.assert_allclose(predicted[2, :oracle.visual_dim], expected, atol=1e-4)
        assert not np.allclose(predicted[0], predicted[1])
    finally:
        scene.close()


def test_a_model_without_visual_state_statistics_or_of_another_state_is_refused() -> None:
    task, scene = open_task("push-t")
    try:
        with pytest.raises(OracleError, match="visual_target has no state statistics"):
            OracleModel(task, scene, push_t_manifest({"basis": "half-turn"}))
        with pytest.raises(OracleError, match="trained on a visual state of 2 values; task 'push-t' has 6"):
            OracleModel(task, scene, push_t_manifest({"q_mean": [0, 0], "q_std": [1, 1]}))  # older manifests' names
    finally:
        scene.close()


def test_eval_with_the_oracle_plans_on_the_simulator_and_reaches_what_a_perfect_model_would() -> None:
    from pathlib import Path

    from runtime.config import load_config
    from runtime.evaluation.task_eval import evaluate_task
    from runtime.sim.goal_sets import make_goal_set

    root = Path(__file__).resolve().parents[3]
    config = load_config(root / "configs" / "tasks" / "reach.yaml",
                         ["planner.samples=32", "planner.iterations=2", "planner.cem.elites=4"])
    goal_set = make_goal_set("reach", count=3, k=10, seed=3)
    result = evaluate_task(config, goal_set, ["cem"], oracle=True)
    assert result["world_model"].startswith("oracle")
    assert result["planners"]["cem"]["successes"] == 3
    with pytest.raises(ValueError, match="--oracle plans with our optimizers only"):
        evaluate_task(config, goal_set, ["pytorch_mppi"], oracle=True)
