"""Safety filter: clip to bounds, limit the rate of change, stop on non-finite actions."""

from __future__ import annotations

import numpy as np

from runtime.safety import SafetyFilter


def make_filter() -> SafetyFilter:
    return SafetyFilter(np.array([-2.0, -1.0]), np.array([2.0, 1.0]), max_rate=20.0, period_s=0.05)


def test_clips_to_bounds_and_limits_rate() -> None:
    safety = make_filter()
    verdict = safety(np.array([5.0, -5.0]))
    assert verdict.clipped and verdict.rate_limited
    np.testing.assert_allclose(verdict.action, [1.0, -1.0])  # 20 units/s * 0.05 s from rest
    verdict = safety(np.array([5.0, -5.0]))
    np.testing.assert_allclose(verdict.action, [2.0, -1.0])


def test_within_limits_passes_unchanged() -> None:
    verdict = make_filter()(np.array([0.5, -0.25]))
    assert not verdict.clipped and not verdict.rate_limited
    np.testing.assert_allclose(verdict.action, [0.5, -0.25])


def test_non_finite_or_misshaped_becomes_stop_and_resets_rate() -> None:
    safety = make_filter()
    safety(np.array([0.9, 0.9]))
    stop = safety(np.array([np.nan, 0.0]))
    assert stop.action is None and "non-finite" in stop.reason
    np.testing.assert_allclose(safety.previous, [0.0, 0.0])
    assert safety(np.array([1.0, 2.0, 3.0])).action is None
