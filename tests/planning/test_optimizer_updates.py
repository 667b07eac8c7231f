"""Each optimizer's refit on hand-made samples and costs: the exact numbers its documented rule gives."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from planning.optimizers import Optimizer, create_optimizer
from planning.settings import PlannerSettings

INF = math.inf


def optimizer(name: str, **overrides: Any) -> Optimizer:
    settings = PlannerSettings(optimizer=name, samples=4, horizon=1, **overrides)
    made = create_optimizer(settings, 1, np.random.default_rng(0))
    made.reset(np.zeros((1, 1), dtype=np.float32))
    return made


def column(*values: float) -> np.ndarray:
    """Four one-step, one-dimensional samples."""
    return np.array(values, dtype=np.float32).reshape(4, 1, 1)


def test_mppi_weighs_finite_samples_by_softmin_and_ignores_infinite_ones() -> None:
    mppi = optimizer("mppi", mppi={"temperature": 0.5})
    mppi.update(column(0.2, 0.6, 9.0, -9.0), np.array([0.0, 1.0, INF, math.nan]))
    # Cost spread over the finite costs is 0.5, so the softmin scale is 0.5 * 0.5 = 0.25.
    weight = math.exp(-1.0 / 0.25)
    assert mppi.mean[0, 0] == pytest.approx((0.2 + weight * 0.6) / (1.0 + weight), rel=1e-5)


def test_mppi_equal_costs_average_the_samples_and_no_finite_cost_keeps_the_mean() -> None:
    mppi = optimizer("mppi")
    mppi.update(column(0.2, 0.2, 0.5, 9.0), np.array([1.0, 1.0, 1.0, INF]))
    assert mppi.mean[0, 0] == pytest.approx(0.3, rel=1e-5)
    mppi.update(column(5.0, 5.0, 5.0, 5.0), np.full(4, INF))
    assert mppi.mean[0, 0] == pytest.approx(0.3, rel=1e-5)


def test_predictive_sampling_keeps_the_best_finite_candidate_only() -> None:
    sampling = optimizer("predictive_sampling")
    sampling.update(column(0.1, 0.7, -0.4, 0.9), np.array([INF, 2.0, 1.0, INF]))
    assert sampling.nominal[0, 0] == pytest.approx(-0.4)  # type: ignore[attr-defined]
    sampling.update(column(0.3, 0.3, 0.3, 0.3), np.full(4, INF))
    assert sampling.nominal[0, 0] == pytest.approx(-0.4)  # type: ignore[attr-defined]


def test_cem_refits_to_finite_elites_with_momentum_on_mean_and_spread() -> None:
    cem = optimizer("cem", cem={"elites": 3, "momentum_mean": 0.5, "momentum_std": 0.25, "init_std": 0.5,
                                "min_std": 0.0})
    # Only two finite costs: the elites are those two (mean 2, std 1), never an infinite-cost sample.
    cem.update(column(1.0, 3.0, 100.0, -50.0), np.array([1.0, 2.0, INF, INF]))
    assert cem.mean[0, 0] == pytest.approx(0.5 * 0.0 + 0.5 * 2.0)  # type: ignore[attr-defined]
    assert cem.spread()[0, 0] == pytest.approx(0.25 * 0.5 + 0.75 * 1.0)


def test_cem_spread_never_falls_below_its_floor() -> None:
    cem = optimizer("cem", cem={"elites": 4, "min_std": 0.07})
    cem.update(column(0.4, 0.4, 0.4, 0.4), np.ones(4))
    assert cem.spread()[0, 0] == pytest.approx(0.07)
    assert cem.mean[0, 0] == pytest.approx(0.4)  # type: ignore[attr-defined]
