"""CEM planner on analytic problems: linear latent dynamics with a goal the optimum is known for."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from planning.planner import Planner
from planning.settings import PlannerSettings

B = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], dtype=np.float32) * 0.05


def linear_step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return (latents + actions @ B.T).astype(np.float32)


def make_planner(**overrides: object) -> Planner:
    settings = PlannerSettings(**overrides)  # type: ignore[arg-type]
    return Planner(settings, linear_step, latent_dim=3, visual_dim=3,
                   action_low=np.array([-2.0, -2.0]), action_high=np.array([2.0, 2.0]))


def test_closed_loop_reaches_reachable_goal() -> None:
    planner = make_planner()
    goal = np.array([0.3, -0.2], dtype=np.float32)
    planner.set_goal(np.array([goal[0], goal[1], 0.5 * goal[0] - 0.5 * goal[1]], dtype=np.float32))
    z = np.zeros(3, dtype=np.float32)
    for _ in range(40):
        z = linear_step(z[None], planner.plan(z).action[None])[0]
    np.testing.assert_allclose(z[:2], goal, atol=0.01)


def test_first_action_points_at_the_goal_at_full_speed_when_far() -> None:
    planner = make_planner(samples=512, iterations=5)
    planner.set_goal(np.array([10.0, -10.0, 10.0], dtype=np.float32))
    result = planner.plan(np.zeros(3, dtype=np.float32))
    np.testing.assert_allclose(result.action, [2.0, -2.0], atol=0.15)
    assert result.iterations == 5
    assert result.sequence.shape == (5, 2)


def test_actions_stay_within_bounds() -> None:
    planner = make_planner()
    planner.set_goal(np.array([100.0, 100.0, 0.0], dtype=np.float32))
    result = planner.plan(np.zeros(3, dtype=np.float32))
    assert np.all(result.sequence <= 2.0) and np.all(result.sequence >= -2.0)


def test_best_cost_never_increases_across_iterations() -> None:
    planner = make_planner(iterations=8, samples=32, elites=4)
    planner.set_goal(np.array([0.2, 0.1, 0.05], dtype=np.float32))
    history = planner.plan(np.zeros(3, dtype=np.float32)).best_cost_per_iteration
    assert all(b <= a for a, b in itertools.pairwise(history))


def test_non_finite_predictions_never_win() -> None:
    def poisoned(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        out = linear_step(latents, actions)
        out[actions[:, 0] > 0] = np.nan  # every sequence that moves joint 0 forward blows up
        return out

    planner = Planner(PlannerSettings(), poisoned, 3, 3, np.array([-2.0, -2.0]), np.array([2.0, 2.0]))
    planner.set_goal(np.array([1.0, 0.0, 0.5], dtype=np.float32))
    result = planner.plan(np.zeros(3, dtype=np.float32))
    assert np.isfinite(result.cost)
    assert np.all(result.sequence[:, 0] <= 0.0)


def test_plan_without_goal_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no goal"):
        make_planner().plan(np.zeros(3, dtype=np.float32))


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="high must exceed"):
        Planner(PlannerSettings(), linear_step, 3, 3, np.array([1.0, 0.0]), np.array([0.0, 1.0]))
