"""Telemetry: percentiles per stage in fixed memory, within their error bound of numpy's; counters."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from runtime.telemetry import RELATIVE_ERROR, LogHistogram, Telemetry

QUANTILES = [0, 1, 10, 50, 90, 95, 99, 99.9, 100]
_rng = np.random.default_rng(0)
DISTRIBUTIONS = {
    "lognormal": _rng.lognormal(np.log(15.0), 0.4, 50_000),  # a plan's milliseconds
    "uniform": _rng.uniform(0.01, 40.0, 50_000),
    "exponential": _rng.exponential(2.0, 50_000) + 0.002,
    "bimodal": np.concatenate([_rng.normal(5.0, 0.3, 45_000), _rng.normal(120.0, 10.0, 5_000)]),  # stalls
    "few integers": _rng.integers(1, 4, 300).astype(float),  # a plan's iterations
    "constant": np.full(1000, 33.3),
}


def filled(values: np.ndarray) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.add(float(value))
    return histogram


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_percentiles_are_within_the_relative_error_of_numpy(name: str) -> None:
    values = DISTRIBUTIONS[name]
    histogram = filled(values)
    expected = np.percentile(values, QUANTILES)
    found = histogram.percentiles(QUANTILES)
    assert np.all(np.abs(found - expected) <= RELATIVE_ERROR * expected + 1e-12), (found, expected)
    assert histogram.count == values.size
    assert histogram.max == values.max() and histogram.min == values.min()
    assert histogram.mean == pytest.approx(values.mean(), rel=1e-12)
    summary = histogram.summary()
    assert set(summary) == {"p50", "p95", "p99", "max"} and summary["max"] == values.max()
    assert summary["p99"] == pytest.approx(np.percentile(values, 99), rel=RELATIVE_ERROR)


def test_zeros_and_values_beyond_the_range_are_kept() -> None:
    histogram = filled(np.array([0.0, 0.0, 5.0, 1e9]))
    assert histogram.min == 0.0 and histogram.max == 1e9
    assert histogram.percentiles([0, 100]).tolist() == [0.0, 1e9]


def test_memory_does_not_grow_with_the_count() -> None:
    histogram = LogHistogram()
    values = _rng.lognormal(2.0, 1.0, 200_000).tolist()
    tracemalloc.start()
    try:
        for value in values[:1000]:
            histogram.add(value)
        after_few = tracemalloc.get_traced_memory()[0]
        for value in values[1000:]:
            histogram.add(value)
        after_many = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after_many - after_few < 1024, (after_few, after_many)


def test_a_window_since_a_copy_holds_only_the_later_values() -> None:
    early, late = _rng.lognormal(1.0, 0.3, 5000), _rng.lognormal(3.0, 0.3, 5000)
    histogram = filled(early)
    mark = histogram.copy()
    for value in late:
        histogram.add(float(value))
    window = histogram.since(mark)
    assert window.count == late.size and window.mean == pytest.approx(late.mean())
    expected = np.percentile(late, [50, 99])
    assert np.all(np.abs(window.percentiles([50, 99]) - expected) <= RELATIVE_ERROR * expected)
    assert window.min <= late.min() and window.max >= late.max()
    assert mark.count == early.size  # the copy is its own


def test_empty_histogram_summarizes_to_zeros() -> None:
    assert LogHistogram().summary() == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
    assert LogHistogram().mean == 0.0


def test_stages_and_counters_reach_the_summary() -> None:
    telemetry = Telemetry()
    with telemetry.stage("encode"):
        sum(range(1000))
    telemetry.record_stage("plan", 2.5)
    telemetry.counters["ticks"] += 3
    telemetry.counters["drops"] += 1
    summary = telemetry.summary()
    assert set(summary["stages"]) == {"encode", "plan"}
    assert summary["stages"]["plan"]["max"] == 2.5
    assert summary["stages"]["encode"]["p50"] > 0.0
    assert summary["counters"]["ticks"] == 3 and summary["counters"]["drops"] == 1
    assert {"frames", "deadline_misses", "commands", "stops", "bad_messages"} <= summary["counters"].keys()
    assert summary["loop_hz"] > 0
    assert "drops 1" in telemetry.status_line()


@pytest.mark.parametrize("name", DISTRIBUTIONS)
def test_counts_at_most_a_bound_match_numpy_except_within_the_bucket_below_it(name: str) -> None:
    values = DISTRIBUTIONS[name]
    histogram = filled(values)
    bounds = [0.25, 1.0, 2.5, 5.0, 10.0, 25.0, 100.0]
    below, count = histogram.counts_at_most(bounds)
    assert count == values.size
    for bound, found in zip(bounds, below, strict=True):
        # Exact for values clear of the bound; a value within 2 * RELATIVE_ERROR under it may count above it.
        assert np.sum(values <= bound * (1 - 2 * RELATIVE_ERROR)) <= found <= np.sum(values <= bound), bound
    assert np.all(np.diff(below) >= 0)
