"""Cost terms: each term's value on known inputs, and its pull on the plan."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from planning.costs import Goal, RolloutCost
from planning.optimizers import OPTIMIZERS
from planning.planner import Planner
from planning.settings import CostSettings, PlannerSettings

PERIOD = 0.05


def cost_of(settings: dict[str, Any], latents: np.ndarray, goal: Goal, visual_dim: int = 2,
            horizon: int = 1) -> np.ndarray:
    """Latent terms of (N, Z) latents at every step of a `horizon`-step rollout that stays put."""
    cost = RolloutCost(CostSettings(**settings), visual_dim, latents.shape[1], latents.shape[0], horizon, 1,
                       np.zeros(1, dtype=np.float32))
    out = np.zeros(latents.shape[0])
    for step in range(horizon):
        cost.add_step(latents.astype(np.float32), goal, step, out)
    return out


def action_cost_of(settings: dict[str, Any], raw: np.ndarray, previous: np.ndarray | None = None,
                   hold_still: float = 0.0) -> np.ndarray:
    samples = np.clip(raw, -1, 1).astype(np.float32)
    cost = RolloutCost(CostSettings(**settings), 1, 1, raw.shape[0], raw.shape[1], raw.shape[2],
                       np.full(raw.shape[2], hold_still, dtype=np.float32))
    out = np.zeros(raw.shape[0])
    cost.add_actions(raw.astype(np.float32), samples, previous, out)
    return out


# -- values -------------------------------------------------------------------------------------------------------

def test_goal_distances() -> None:
    latents = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]])
    goal = Goal(visual=np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(cost_of({"goal": {"distance": "l1"}}, latents, goal), [7.0, 1.0, 0.0])
    np.testing.assert_allclose(cost_of({"goal": {"distance": "l2", "weight": 2.0}}, latents, goal), [10.0, 2.0, 0.0])


def test_cosine_distance_ignores_magnitude() -> None:
    latents = np.array([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    for target in ([1.0, 0.0], [2.5, 0.0]):  # the goal's magnitude does not count either
        goal = Goal(visual=np.array(target, dtype=np.float32))
        np.testing.assert_allclose(cost_of({"goal": {"distance": "cosine"}}, latents, goal), [0.0, 0.0, 1.0, 2.0],
                                   atol=1e-6)
    weighted = cost_of({"goal": {"distance": "cosine", "weight": 3.0}}, latents, goal)
    np.testing.assert_allclose(weighted, [0.0, 0.0, 3.0, 6.0], atol=1e-5)


def test_steps_all_sums_and_last_scores_once() -> None:
    latents = np.array([[1.0, 1.0]])
    goal = Goal(visual=np.zeros(2, dtype=np.float32))
    assert cost_of({"goal": {"steps": "all"}}, latents, goal, horizon=3)[0] == pytest.approx(6.0)
    assert cost_of({"goal": {"steps": "last"}}, latents, goal, horizon=3)[0] == pytest.approx(2.0)


def test_state_goal_term_applies_only_when_a_state_goal_is_set() -> None:
    latents = np.array([[0.0, 0.0, 1.0, -1.0]])  # visual part on the goal, proprio part off it
    visual = np.zeros(2, dtype=np.float32)
    settings = {"state_goal": {"weight": 3.0}}
    assert cost_of(settings, latents, Goal(visual=visual))[0] == 0.0
    assert cost_of(settings, latents, Goal(visual=visual, state=np.zeros(2, dtype=np.float32)))[0] == pytest.approx(6.0)
    assert cost_of(settings, latents, Goal(state=np.array([1.0, -1.0], dtype=np.float32)))[0] == 0.0


def test_action_magnitude_is_measured_from_hold_still() -> None:
    raw = np.array([[[0.5], [0.5]], [[-0.5], [-0.5]]])
    np.testing.assert_allclose(action_cost_of({"action_magnitude": {"weight": 2.0}}, raw, hold_still=-0.5),
                               [4.0, 0.0])


def test_action_rate_starts_from_the_previous_command() -> None:
    raw = np.array([[[0.5], [0.5]], [[0.0], [0.5]]])
    settings = {"action_rate": {"weight": 1.0}}
    np.testing.assert_allclose(action_cost_of(settings, raw), [0.0, 0.25])
    np.testing.assert_allclose(action_cost_of(settings, raw, previous=np.array([0.5], dtype=np.float32)),
                               [0.0, 0.5])


def test_bounds_penalty_counts_the_excursion_before_clipping() -> None:
    raw = np.array([[[1.5], [-1.25]], [[0.9], [-1.0]]])
    np.testing.assert_allclose(action_cost_of({"bounds": {"weight": 2.0}}, raw), [1.5, 0.0])


def test_terms_are_off_by_default() -> None:
    raw = np.array([[[3.0], [-3.0]]])
    assert action_cost_of({}, raw, previous=np.array([1.0], dtype=np.float32))[0] == 0.0


# -- pull on the plan ---------------------------------------------------------------------------------------------

def planner_for(optimizer: str = "cem", latent_dim: int = 2, visual_dim: int = 2, **overrides: Any) -> Planner:
    matrix = np.eye(latent_dim, 2, dtype=np.float32) * 0.05
    if latent_dim == 4:
        matrix[2:] = [[0.0, 0.05], [0.05, 0.0]]  # the proprio part moves crosswise

    def step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        return (latents + actions @ matrix.T).astype(np.float32)

    settings = PlannerSettings(optimizer=optimizer, iterations=12, **overrides)
    return Planner(settings, step, latent_dim, visual_dim, np.array([-1.0, -1.0]), np.array([3.0, 1.0]), PERIOD)


def test_action_magnitude_pulls_the_plan_towards_zero() -> None:
    free, damped = planner_for(), planner_for(cost={"action_magnitude": {"weight": 1.0}})
    for planner in (free, damped):
        planner.set_goal(np.array([0.5, 0.5], dtype=np.float32))
    start = np.zeros(2, dtype=np.float32)
    assert np.abs(damped.plan(start).sequence).sum() < 0.5 * np.abs(free.plan(start).sequence).sum()


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_action_rate_alone_holds_the_previous_command(optimizer: str) -> None:
    planner = planner_for(optimizer, horizon=2, cost={"goal": {"weight": 0.0}, "action_rate": {"weight": 1.0}})
    planner.set_goal(np.zeros(2, dtype=np.float32))
    previous = np.array([1.6, 0.4])
    result = planner.plan(np.zeros(2, dtype=np.float32), previous_action=previous)
    np.testing.assert_allclose(result.sequence, [previous, previous], atol=0.15)


def test_state_goal_steers_the_proprio_part_of_the_latent() -> None:
    planner = planner_for(latent_dim=4, visual_dim=2, horizon=1, cost={"goal": {"distance": "l2"},
                                                                      "state_goal": {"distance": "l2"}})
    start = np.zeros(4, dtype=np.float32)
    planner.set_goal(state=np.array([0.05, 0.025], dtype=np.float32))  # reached by action (0.5, 1.0)
    np.testing.assert_allclose(planner.plan(start).action, [0.5, 1.0], atol=0.06)
    planner.set_goal(visual=np.array([0.05, 0.025], dtype=np.float32))  # the state goal is gone: (1.0, 0.5)
    np.testing.assert_allclose(planner.plan(start).action, [1.0, 0.5], atol=0.06)


@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
@pytest.mark.parametrize("steps", ["all", "last"])
def test_all_steps_at_once_score_as_step_by_step(distance: str, steps: str) -> None:
    rng = np.random.default_rng(5)
    n, h, visual_dim, latent_dim = 32, 5, 3, 8
    latents = rng.standard_normal((n, h, latent_dim)).astype(np.float32)
    goal = Goal(rng.standard_normal(visual_dim).astype(np.float32),
                rng.standard_normal(latent_dim - visual_dim).astype(np.float32))
    settings = CostSettings(goal={"distance": distance, "steps": steps, "weight": 1.5},
                            state_goal={"distance": "l2", "steps": "all", "weight": 0.5})
    cost = RolloutCost(settings, visual_dim, latent_dim, n, h, 1, np.zeros(1, dtype=np.float32))
    stepwise, batched = np.zeros(n), np.zeros(n)
    for step in range(h):
        cost.add_step(np.ascontiguousarray(latents[:, step]), goal, step, stepwise)
    cost.add_steps(latents, goal, batched)
    assert stepwise.min() > 0
    np.testing.assert_allclose(batched, stepwise, rtol=1e-5)
