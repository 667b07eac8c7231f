"""The planner with a rollout function (one call per iteration) plans exactly what it plans stepping the predictor."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from perception.manifest import load_manifest
from planning.planner import Planner, PlanResult
from planning.settings import PlannerSettings
from planning.world_model import WorldModel

DEMO = Path(__file__).resolve().parents[2] / "models" / "demo"


class CountingRollout:
    """A world model's rollout, noting the (batch, steps) of every call."""

    def __init__(self, model: WorldModel) -> None:
        self.model = model
        self.calls: list[tuple[int, int]] = []

    def __call__(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        self.calls.append(actions.shape[:2])
        return self.model.rollout(latents, actions)


def plans(model: WorldModel, settings: PlannerSettings, *, rollout: bool, count: int = 3) -> list[PlanResult]:
    """`count` consecutive plans (warm-started) towards a goal image from the demo's first goal frame."""
    import cv2

    frames = sorted((DEMO / "goals").glob("goal_*.png"))
    start, goal = (cv2.imread(str(path), cv2.IMREAD_COLOR) for path in frames[:2])
    planner = Planner(settings, model.predict, model.latent_dim, model.visual_dim, model.action_low,
                      model.action_high, model.manifest.control_period_s,
                      rollout=CountingRollout(model) if rollout else None)
    planner.set_goal(model.encode_goal_image(goal))
    latent = model.encode(start, np.zeros(model.manifest.proprio_dim, dtype=np.float32))
    return [planner.plan(latent) for _ in range(count)]


@pytest.mark.parametrize("optimizer", ["cem", "mppi", "icem"])
@pytest.mark.parametrize("action_block", [1, 3])
def test_plans_with_the_rollout_model_equal_plans_stepping_the_predictor(optimizer: str, action_block: int) -> None:
    model = WorldModel(load_manifest(DEMO))
    settings = PlannerSettings(samples=64, horizon=4, iterations=3, action_block=action_block, optimizer=optimizer,
                               seed=3)
    stepped, rolled = plans(model, settings, rollout=False), plans(model, settings, rollout=True)
    for a, b in zip(stepped, rolled, strict=True):
        np.testing.assert_allclose(b.sequence, a.sequence, atol=1e-6, rtol=0)
        assert b.best_cost_per_iteration == pytest.approx(a.best_cost_per_iteration, rel=1e-6)
        assert b.chosen == a.chosen


def test_one_rollout_call_per_iteration_over_every_model_step() -> None:
    model = WorldModel(load_manifest(DEMO))
    settings = PlannerSettings(samples=32, horizon=5, iterations=4, action_block=2)
    counting = CountingRollout(model)
    planner = Planner(settings, model.predict, model.latent_dim, model.visual_dim, model.action_low,
                      model.action_high, model.manifest.control_period_s, rollout=counting)
    planner.set_goal(np.zeros(model.visual_dim, dtype=np.float32))
    result = planner.plan(np.zeros(model.latent_dim, dtype=np.float32))
    assert counting.calls == [(32, 10)] * result.iterations == [(32, 10)] * 4


def test_a_model_without_a_rollout_model_plans_the_same(tmp_path: Path) -> None:
    shutil.copytree(DEMO, tmp_path / "model", ignore=shutil.ignore_patterns("rollout.onnx", "goals"))
    manifest_path = tmp_path / "model" / "manifest.json"
    manifest = load_manifest(DEMO).model_copy(update={"rollout": None})
    manifest.write(manifest_path.parent)
    older = WorldModel(load_manifest(manifest_path))
    assert older.rollout_engine is None
    settings = PlannerSettings(samples=64, horizon=3, iterations=2)
    for a, b in zip(plans(older, settings, rollout=True), plans(WorldModel(load_manifest(DEMO)), settings,
                                                                rollout=True), strict=True):
        np.testing.assert_allclose(a.sequence, b.sequence, atol=1e-6, rtol=0)
