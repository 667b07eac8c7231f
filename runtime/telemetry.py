"""Per-stage timings and counters for the control loop, summarized as percentiles."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class TimingSeries:
    """A growing float64 series with amortized doubling, so recording a tick never allocates per call."""

    def __init__(self, capacity: int = 4096) -> None:
        self._values = np.zeros(capacity, dtype=np.float64)
        self.count = 0

    def add(self, value: float) -> None:
        if self.count == self._values.size:
            self._values = np.concatenate([self._values, np.zeros_like(self._values)])
        self._values[self.count] = value
        self.count += 1

    @property
    def values(self) -> np.ndarray:
        return self._values[: self.count]

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        p50, p95, p99 = np.percentile(self.values, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(self.values.max())}


class Telemetry:
    """Stage timings in milliseconds plus named counters."""

    COUNTERS = ("ticks", "frames", "drops", "deadline_misses", "commands", "stops", "bad_messages",
                "missing_state", "stale_frames", "clipped", "rate_limited")

    def __init__(self) -> None:
        self.stages: dict[str, TimingSeries] = {}
        self.tick_ms = TimingSeries()
        self.counters: Counter[str] = Counter({name: 0 for name in self.COUNTERS})
        self.started = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record_stage(name, (time.perf_counter() - start) * 1000.0)

    def record_stage(self, name: str, ms: float) -> None:
        series = self.stages.get(name)
        if series is None:
            series = self.stages[name] = TimingSeries()
        series.add(ms)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> dict[str, Any]:
        elapsed = self.elapsed_s()
        return {
            "loop_hz": self.counters["ticks"] / elapsed if elapsed > 0 else 0.0,
            "tick_ms": self.tick_ms.summary(),
            "stages": {name: series.summary() for name, series in self.stages.items()},
            "counters": dict(self.counters),
            "duration_s": elapsed,
        }

    def status_line(self) -> str:
        ticks = self.tick_ms.summary()
        return (f"{self.counters['ticks'] / max(self.elapsed_s(), 1e-9):5.1f} Hz | tick p50 {ticks['p50']:5.1f} ms "
                f"p99 {ticks['p99']:5.1f} ms | drops {self.counters['drops']} | misses "
                f"{self.counters['deadline_misses']} | stops {self.counters['stops']}")
