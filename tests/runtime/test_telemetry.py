"""Telemetry: percentiles per stage, counters, and a series that grows past its initial capacity."""

from __future__ import annotations

import numpy as np

from runtime.telemetry import Telemetry, TimingSeries


def test_series_grows_and_summarizes() -> None:
    series = TimingSeries(capacity=4)
    for value in range(1, 101):
        series.add(float(value))
    assert series.count == 100
    summary = series.summary()
    assert summary["max"] == 100.0
    assert summary["p50"] == np.percentile(np.arange(1, 101), 50)
    assert summary["p99"] > summary["p95"] > summary["p50"]


def test_empty_series_summarizes_to_zeros() -> None:
    assert TimingSeries().summary() == {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}


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
