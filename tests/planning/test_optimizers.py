"""Every optimizer on analytic problems: linear latent dynamics whose optimal action sequence is known."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest

from planning.optimizers import OPTIMIZERS
from planning.planner import Planner
from planning.settings import PlannerSettings

OPTIMIZER_NAMES = sorted(OPTIMIZERS)
B = np.array([[0.05, 0.01], [-0.02, 0.04]], dtype=np.float32)  # invertible: any goal nearby is reachable
TARGET = np.array([0.4, -0.7], dtype=np.float32)  # physical action that reaches the goal in one step
GOAL = TARGET @ B.T
PERIOD = 0.05


def linear_step(latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return (latents + actions @ B.T).astype(np.float32)


def make_planner(optimizer: str, low: tuple[float, float] = (-2.0, -2.0), high: tuple[float, float] = (2.0, 2.0),
                 **overrides: Any) -> Planner:
    settings = PlannerSettings(optimizer=optimizer, **overrides)
    return Planner(settings, linear_step, latent_dim=2, visual_dim=2, action_low=np.array(low),
                   action_high=np.array(high), control_period_s=PERIOD)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_one_step_l2_optimum(optimizer: str) -> None:
    planner = make_planner(optimizer, horizon=1, iterations=15, cost={"goal": {"distance": "l2"}})
    planner.set_goal(GOAL)
    result = planner.plan(np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(result.action, TARGET, atol=0.04)
    assert result.cost < 0.002


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_multi_step_l1_optimum_arrives_then_holds(optimizer: str) -> None:
    # Summed L1 over the horizon is lowest when the first step reaches the goal and the rest stay there.
    # Predictive sampling refines no finer than its fixed noise, so it gets a fine one here.
    planner = make_planner(optimizer, horizon=3, iterations=25, predictive_sampling={"noise_std": 0.05})
    planner.set_goal(GOAL)
    result = planner.plan(np.zeros(2, dtype=np.float32))
    np.testing.assert_allclose(result.sequence, np.stack([TARGET, np.zeros(2), np.zeros(2)]), atol=0.12)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_last_step_l1_reaches_the_goal_at_the_end(optimizer: str) -> None:
    planner = make_planner(optimizer, horizon=3, iterations=15, cost={"goal": {"steps": "last"}})
    far = 3 * GOAL  # needs about one target action per step
    planner.set_goal(far)
    result = planner.plan(np.zeros(2, dtype=np.float32))
    end = result.sequence.sum(axis=0) @ B.T
    np.testing.assert_allclose(end, far, atol=0.01)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_closed_loop_reaches_the_goal_and_stays(optimizer: str) -> None:
    planner = make_planner(optimizer)
    goal = np.array([0.3, -0.2], dtype=np.float32)
    planner.set_goal(goal)
    z = np.zeros(2, dtype=np.float32)
    for _ in range(40):
        z = linear_step(z[None], planner.plan(z).action[None])[0]
    np.testing.assert_allclose(z, goal, atol=0.01)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_best_cost_never_increases_across_iterations(optimizer: str) -> None:
    planner = make_planner(optimizer, iterations=8, samples=32, cem={"elites": 4})
    planner.set_goal(np.array([0.2, 0.1], dtype=np.float32))
    history = planner.plan(np.zeros(2, dtype=np.float32)).best_cost_per_iteration
    assert len(history) == 8
    assert all(b <= a for a, b in itertools.pairwise(history))


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_asymmetric_bounds_hold_for_every_step(optimizer: str) -> None:
    planner = make_planner(optimizer, low=(-0.5, 0.25), high=(1.5, 3.0), iterations=10)
    planner.set_goal(np.array([-10.0, 10.0], dtype=np.float32))  # pulls beyond the low/high corners
    result = planner.plan(np.zeros(2, dtype=np.float32))
    assert np.all(result.sequence >= [-0.5, 0.25]) and np.all(result.sequence <= [1.5, 3.0])
    np.testing.assert_allclose(result.action, [-0.5, 3.0], atol=0.3)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_pinned_dimension_holds_its_value_while_the_rest_is_optimized(optimizer: str) -> None:
    # Pinned away from its optimum (TARGET[1] = -0.7): the free dimension takes the best value given the pin,
    # the least-squares solution of B[:, 0] a0 = GOAL - B[:, 1] pin.
    pin = 0.3
    planner = make_planner(optimizer, horizon=1, iterations=15, pinned={1: pin}, cost={"goal": {"distance": "l2"}})
    planner.set_goal(GOAL)
    result = planner.plan(np.zeros(2, dtype=np.float32))
    assert np.all(result.sequence[:, 1] == np.float32(pin))
    best_free = float(B[:, 0] @ (GOAL - B[:, 1] * pin) / (B[:, 0] @ B[:, 0]))
    np.testing.assert_allclose(result.action[0], best_free, atol=0.05)


@pytest.mark.parametrize("optimizer", OPTIMIZER_NAMES)
def test_spread_is_reported_in_normalized_units(optimizer: str) -> None:
    planner = make_planner(optimizer, pinned={0: 0.0})
    planner.set_goal(GOAL)
    spread = planner.plan(np.zeros(2, dtype=np.float32)).spread
    expected = {"cem": None, "icem": None, "mppi": planner.settings.mppi.noise_std,
                "predictive_sampling": planner.settings.predictive_sampling.noise_std}[optimizer]
    if expected is None:  # (i)CEM refits its spread: somewhere between its floor and where it started
        section = planner.settings.icem if optimizer == "icem" else planner.settings.cem
        assert section.min_std <= spread <= section.init_std
    else:
        assert spread == pytest.approx(expected)
