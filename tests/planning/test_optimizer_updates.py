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
    made.reset(np.zeros((1, 1), dtype=np.float32), None)
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


@pytest.mark.parametrize(("horizon", "beta"), [(5, 2.0), (6, 1.0), (8, 3.0)])
def test_icem_colouring_matrix_gives_the_fft_methods_noise(horizon: int, beta: float) -> None:
    from planning.optimizers.icem import colouring_matrix

    # The FFT method drawn directly (Timmer and König; as the colorednoise package): the same covariance.
    rng = np.random.default_rng(1)
    frequencies = np.fft.rfftfreq(horizon)
    frequencies[0] = frequencies[1]
    real, imaginary = rng.standard_normal((2, 100_000, frequencies.size))
    imaginary[:, 0] = 0.0
    if horizon % 2 == 0:
        imaginary[:, -1] = 0.0
    drawn = np.fft.irfft(frequencies ** (-beta / 2) * (real + 1j * imaginary), n=horizon)
    covariance = np.cov(drawn.T)
    colour = colouring_matrix(horizon, beta)
    np.testing.assert_allclose(colour @ colour.T, covariance / covariance[0, 0], atol=0.02)
    assert np.allclose(np.diag(colour @ colour.T), 1.0, atol=1e-5)  # unit variance at every step
    np.testing.assert_array_equal(colouring_matrix(horizon, 0.0), np.eye(horizon))  # beta 0: CEM's white noise


def test_icem_carries_its_best_finite_elites_into_the_next_iteration_and_shifted_into_the_next_plan() -> None:
    settings = PlannerSettings(optimizer="icem", samples=8, horizon=3, icem={"elites": 4, "keep_elites": 0.5})
    icem = create_optimizer(settings, 1, np.random.default_rng(0))
    icem.reset(np.zeros((3, 1), dtype=np.float32), None)
    samples = np.arange(8 * 3, dtype=np.float32).reshape(8, 3, 1) / 100
    costs = np.array([5.0, INF, 1.0, 4.0, math.nan, 2.0, 3.0, 6.0])
    icem.update(samples, costs)
    out = np.zeros_like(samples)
    icem.sample(out)
    np.testing.assert_array_equal(out[2:4], samples[[2, 5]])  # the 2 lowest finite costs, best first
    assert not np.any([np.array_equal(out[4], s) for s in samples])  # the rest is fresh noise

    icem.finish(samples, np.array([INF, 0.5, INF, INF, INF, INF, INF, 0.7]))  # the plan's last iteration
    icem.reset(np.zeros((3, 1), dtype=np.float32), 1)  # one step executed since
    icem.sample(out)
    for row, kept in ((2, 1), (3, 7)):
        np.testing.assert_array_equal(out[row, :, 0], [samples[kept, 1, 0], samples[kept, 2, 0], samples[kept, 2, 0]])

    icem.reset(np.zeros((3, 1), dtype=np.float32), None)  # a new goal or a stop: nothing carried over
    icem.sample(out)
    assert not np.any([np.array_equal(out[2], s) for s in samples])


def test_icem_refits_like_cem_from_its_own_section() -> None:
    icem = optimizer("icem", icem={"elites": 3, "momentum_mean": 0.5, "momentum_std": 0.25, "init_std": 0.5,
                                   "min_std": 0.0, "keep_elites": 0.0})
    icem.update(column(1.0, 3.0, 100.0, -50.0), np.array([1.0, 2.0, INF, INF]))
    assert icem.mean[0, 0] == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert icem.spread()[0, 0] == pytest.approx(0.25 * 0.5 + 0.75 * 1.0)


def test_icem_kept_elites_must_fit_beside_the_planners_candidates() -> None:
    with pytest.raises(ValueError, match=r"icem: 3 kept elites .* must fit in samples \(4\)"):
        PlannerSettings(optimizer="icem", samples=4, icem={"elites": 4, "keep_elites": 0.75})
