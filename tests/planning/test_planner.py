"""Planner mechanics: warm start, hold-still, pins, non-finite costs, deadline, hot settings, batched rollouts."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from planning.optimizers import ModelPredictivePathIntegral
from planning.planner import Planner
from planning.settings import PlannerSettings

B = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]], dtype=np.float32) * 0.05
PERIOD = 0.05
ZERO = np.zeros(3, dtype=np.float32)


def linear_step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return (latents + actions @ B.T).astype(np.float32)


def flat_step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Every action leads to the same latent: all costs tie, so the first candidate (the warm start) wins."""
    return latents.copy()


def make_planner(low: tuple[float, float] = (-2.0, -2.0), high: tuple[float, float] = (2.0, 2.0),
                 predict: Any = linear_step, **overrides: Any) -> Planner:
    return Planner(PlannerSettings(**overrides), predict, latent_dim=3, visual_dim=3, action_low=np.array(low),
                   action_high=np.array(high), control_period_s=PERIOD)


def goal_of(action_sum: list[float]) -> np.ndarray:
    return (np.asarray(action_sum, dtype=np.float32) @ B.T).astype(np.float32)


class SwitchablePredict:
    """linear_step until `flat` is set; counts calls and the batch size of each."""

    def __init__(self) -> None:
        self.flat = False
        self.batches: list[int] = []

    def __call__(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        self.batches.append(latents.shape[0])
        assert actions.flags["C_CONTIGUOUS"] and actions.dtype == np.float32
        return flat_step(latents, actions) if self.flat else linear_step(latents, actions)


def planned_once(**overrides: Any) -> tuple[Planner, SwitchablePredict, np.ndarray]:
    """A planner that has planned one varied sequence (a goal it reaches in about two steps)."""
    predict = SwitchablePredict()
    planner = make_planner(predict=predict, iterations=6, **overrides)
    planner.set_goal(goal_of([3.0, -1.0]))
    sequence = planner.plan(ZERO).sequence
    assert np.abs(np.diff(sequence, axis=0)).max() > 0.5  # varied enough that a shift shows
    return planner, predict, sequence


# -- warm start ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("elapsed_s", "shift"), [(None, 1), (0.01, 0), (0.05, 1), (0.11, 2), (0.124, 2), (0.3, 5),
                                                   (10.0, 5)])
def test_warm_start_shifts_by_elapsed_control_periods_and_holds_the_last_action(elapsed_s: float | None,
                                                                                  shift: int) -> None:
    planner, _, previous = planned_once()
    expected = np.concatenate([previous[shift:], np.repeat(previous[-1:], shift, axis=0)])
    np.testing.assert_allclose(planner.warm_start(elapsed_s), expected, atol=1e-6)


def test_plan_starts_from_the_shifted_previous_plan() -> None:
    planner, predict, previous = planned_once()
    predict.flat = True  # every candidate ties: the warm start, the first candidate, is kept
    result = planner.plan(ZERO, elapsed_s=2 * PERIOD)
    assert result.chosen == "warm_start"
    np.testing.assert_allclose(result.sequence, np.concatenate([previous[2:], previous[-1:], previous[-1:]]),
                               atol=1e-6)


def test_reset_warm_start_starts_from_the_middle_of_the_bounds() -> None:
    planner = make_planner(low=(-1.0, 0.0), high=(3.0, 1.0))
    planner.set_goal(goal_of([1.0, 1.0]))
    planner.plan(ZERO)
    planner.reset_warm_start()
    np.testing.assert_allclose(planner.warm_start(), np.tile([1.0, 0.5], (5, 1)))


# -- hold-still, pins, bounds, non-finite costs -------------------------------------------------------------------

def test_hold_still_wins_when_the_goal_is_where_the_robot_is() -> None:
    # Asymmetric bounds: the middle of the range (the cold warm start) is not zero, so only hold-still is exact.
    planner = make_planner(low=(-1.0, -3.0), high=(3.0, 1.0))
    latent = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    planner.set_goal(latent)
    result = planner.plan(latent)
    assert result.chosen == "hold_still"
    assert result.cost == 0.0
    assert np.all(result.sequence == 0.0)


def test_hold_still_outside_the_bounds_becomes_the_nearest_bound() -> None:
    planner = make_planner(low=(0.5, -1.0), high=(2.0, 1.0))
    planner.set_goal(ZERO)
    result = planner.plan(ZERO)
    assert result.chosen == "hold_still"
    np.testing.assert_allclose(result.action, [0.5, 0.0])


def test_pins_outside_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match=r"planner\.pinned\.1: 2\.5 is outside the action bounds"):
        make_planner(pinned={1: 2.5})
    with pytest.raises(ValueError, match="action dimension 2 does not exist"):
        make_planner(pinned={2: 0.0})


def test_non_finite_predictions_never_win() -> None:
    def poisoned(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        out = linear_step(latents, actions)
        out[actions[:, 0] > 0] = np.nan  # every sequence that moves joint 0 forward blows up
        return out

    planner = make_planner(predict=poisoned)
    planner.set_goal(goal_of([1.0, 0.0]))
    result = planner.plan(ZERO)
    assert np.isfinite(result.cost)
    assert np.all(result.sequence[:, 0] <= 0.0)


def test_when_nothing_is_finite_the_plan_is_hold_still_with_infinite_cost() -> None:
    planner = make_planner(predict=lambda z, a: np.full_like(z, np.inf), low=(-1.0, -1.0), high=(3.0, 1.0))
    planner.set_goal(ZERO)
    result = planner.plan(ZERO)
    assert result.cost == np.inf and result.chosen == "hold_still"
    assert np.all(result.sequence == 0.0)
    assert json.loads(json.dumps(result.diagnostics(), allow_nan=False))["cost"] is None


# -- deadline -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("deadline_ms", "iterations", "hit"), [(1e-6, 1, True), (None, 5, False), (1e9, 5, False)])
def test_deadline_cuts_iterations(deadline_ms: float | None, iterations: int, hit: bool) -> None:
    planner = make_planner(iterations=5, deadline_ms=deadline_ms)
    planner.set_goal(goal_of([1.0, 1.0]))
    result = planner.plan(ZERO)
    assert (result.iterations, len(result.best_cost_per_iteration), result.deadline_hit) == (iterations, iterations,
                                                                                              hit)


def test_deadline_stops_before_an_iteration_that_would_overrun_it() -> None:
    """Iterations of about 20 ms and a 30 ms budget: a second one would end near 40 ms, so it never starts."""
    import time

    def slow_step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        time.sleep(0.01)
        return linear_step(latents, actions)

    planner = make_planner(predict=slow_step, horizon=2, iterations=3, deadline_ms=30.0)
    planner.set_goal(goal_of([1.0, 1.0]))
    result = planner.plan(ZERO)
    # Without the look-ahead the first iteration (~20 ms, inside the budget) would be followed by a second.
    assert (result.iterations, result.deadline_hit) == (1, True)


def test_the_last_iteration_is_not_refitted_and_its_spread_is_reported() -> None:
    """A refit after the last iteration would never be sampled: one CEM iteration reports its starting spread."""
    spreads = []
    for iterations in (1, 2):
        planner = make_planner(iterations=iterations, cem={"init_std": 0.5, "min_std": 0.01})
        planner.set_goal(goal_of([1.0, 1.0]))
        spreads.append(planner.plan(ZERO).spread)
    assert spreads[0] == pytest.approx(0.5)
    assert spreads[1] < 0.5  # the second iteration sampled from the refit of the first


# -- rollout ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("distance", ["l1", "l2", "cosine"])
def test_a_predictor_returning_float64_plans_like_a_float32_one(distance: str) -> None:
    """Python-API predictors may return float64: the cost's float32 scratch buffers take them."""
    plans = []
    for dtype in (np.float32, np.float64):
        def predict(latents: np.ndarray, actions: np.ndarray, dtype: Any = dtype) -> np.ndarray:
            return linear_step(latents, actions).astype(dtype)

        planner = make_planner(predict=predict, cost={"goal": {"distance": distance}})
        planner.set_goal(goal_of([1.0, -0.5]))
        plans.append(planner.plan(ZERO + 0.01))
    assert np.isfinite(plans[1].cost)
    np.testing.assert_allclose(plans[1].sequence, plans[0].sequence, atol=1e-4)


def test_one_batched_predictor_call_per_horizon_step() -> None:
    _, predict, _ = planned_once(samples=64, horizon=4)
    assert predict.batches == [64] * (6 * 4)


# -- settings and goals -------------------------------------------------------------------------------------------

def test_update_settings_swaps_the_optimizer_and_keeps_goal_and_warm_start() -> None:
    planner, _, _ = planned_once()
    warm = planner.warm_start()
    planner.update_settings(PlannerSettings(optimizer="mppi", samples=128))
    assert isinstance(planner.optimizer, ModelPredictivePathIntegral)
    np.testing.assert_allclose(planner.warm_start(), warm)
    assert np.isfinite(planner.plan(ZERO).cost)  # the goal survived


def test_update_settings_with_a_new_horizon_resets_the_warm_start() -> None:
    planner, _, _ = planned_once()
    planner.update_settings(PlannerSettings(horizon=3))
    assert np.all(planner.warm_start() == 0.0) and planner.warm_start().shape == (3, 2)
    assert planner.plan(ZERO).sequence.shape == (3, 2)


def test_update_settings_that_do_not_fit_leave_the_old_ones() -> None:
    planner, _, _ = planned_once()
    old = planner.settings
    with pytest.raises(ValueError, match="outside the action bounds"):
        planner.update_settings(PlannerSettings(optimizer="mppi", pinned={0: 9.0}))
    assert planner.settings is old and planner.optimizer.settings is old


def test_inputs_are_checked_and_a_goal_is_needed() -> None:
    planner = make_planner()
    with pytest.raises(RuntimeError, match="no goal"):
        planner.plan(ZERO)
    with pytest.raises(ValueError, match=r"visual goal: expected shape \(3,\)"):
        planner.set_goal(np.zeros(2))
    with pytest.raises(ValueError, match="a visual latent, a state goal, or both"):
        planner.set_goal()
    planner.set_goal(ZERO)
    with pytest.raises(ValueError, match="previous_action: expected 2 finite values"):
        planner.plan(ZERO, previous_action=np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match=r"latent: expected shape \(3,\)"):
        planner.plan(np.zeros(4))


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="high must exceed"):
        make_planner(low=(1.0, 0.0), high=(0.0, 1.0))


def test_first_action_points_at_the_goal_at_full_speed_when_far() -> None:
    planner = make_planner(samples=512, iterations=5)
    planner.set_goal(np.array([10.0, -10.0, 10.0], dtype=np.float32))
    result = planner.plan(ZERO)
    np.testing.assert_allclose(result.action, [2.0, -2.0], atol=0.3)
    assert result.iterations == 5 and result.sequence.shape == (5, 2)


def test_diagnostics_are_json() -> None:
    planner, _, _ = planned_once()
    result = planner.plan(ZERO, previous_action=np.array([0.5, 0.5]), elapsed_s=PERIOD)
    diagnostics = json.loads(json.dumps(result.diagnostics(), allow_nan=False))
    assert diagnostics["iterations"] == 6 and len(diagnostics["best_cost_per_iteration"]) == 6
    assert diagnostics["deadline_hit"] is False and diagnostics["spread"] > 0
    assert np.asarray(diagnostics["sequence"]).shape == (5, 2)


def test_an_action_block_holds_each_planned_action_for_that_many_model_steps() -> None:
    """Goal 6 steps of full action away: horizon 2 reaches only a third of it; horizon 2 in blocks of 3, all."""
    predict = SwitchablePredict()
    goal = goal_of([12.0, 0.0])  # 6 model steps at the 2.0 bound
    short = make_planner(horizon=2, iterations=6, cost={"goal": {"steps": "last"}})
    short.set_goal(goal)
    blocked = make_planner(predict=predict, horizon=2, action_block=3, iterations=6, cost={"goal": {"steps": "last"}})
    blocked.set_goal(goal)
    reached_short = short.plan(ZERO)
    result = blocked.plan(ZERO)
    assert result.sequence.shape == (6, 2)  # one action per control period
    np.testing.assert_array_equal(result.sequence[:3], np.repeat(result.sequence[:1], 3, axis=0))
    assert len(predict.batches) == 6 * 2 * 3  # iterations x horizon x action_block model steps
    assert result.cost < 0.5 * reached_short.cost
    np.testing.assert_allclose(result.action, [2.0, 0.0], atol=0.25)


def test_with_action_blocks_the_warm_start_shifts_by_planned_actions_used_up() -> None:
    planner = make_planner(horizon=3, action_block=2, iterations=2)
    planner.set_goal(goal_of([3.0, -1.0]))
    previous = planner.plan(ZERO)
    planned = previous.sequence[::2]  # the planned actions
    np.testing.assert_allclose(planner.warm_start(elapsed_s=PERIOD * 0.9), planned, atol=1e-6)  # under half a block
    np.testing.assert_allclose(planner.warm_start(elapsed_s=PERIOD * 2), np.concatenate([planned[1:], planned[-1:]]),
                               atol=1e-6)


def test_execute_steps_may_span_blocks_but_not_the_whole_plan() -> None:
    assert PlannerSettings(horizon=2, action_block=3, execute_steps=6).execute_steps == 6
    with pytest.raises(ValueError, match=r"execute_steps \(7\) must not exceed horizon x action_block \(6\)"):
        PlannerSettings(horizon=2, action_block=3, execute_steps=7)
