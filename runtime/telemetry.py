"""Per-stage timings and counters for the control loop, summarized as percentiles in fixed memory.

Every timing goes into a `LogHistogram`: log-spaced buckets of a fixed count, so a run of a day at 30 Hz takes
the same memory as a run of a second, and its percentiles are within `RELATIVE_ERROR` of numpy's.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

# Bucket i > 0 holds values in (LOW * GAMMA**(i-1), LOW * GAMMA**i]; bucket 0 holds values <= LOW (zeros too) and
# the last one values beyond HIGH. Reporting a bucket by 2 * upper / (GAMMA + 1) is off by at most RELATIVE_ERROR
# of any value in it.
RELATIVE_ERROR = 0.01
GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
LOW, HIGH = 1e-3, 1e7  # in milliseconds: 1 us to about 2.8 hours
_BUCKETS = math.ceil(math.log(HIGH / LOW) / math.log(GAMMA)) + 1
_UPPER = LOW * GAMMA ** np.arange(_BUCKETS, dtype=np.float64)  # each bucket's upper bound
_REPRESENTATIVE = 2 * _UPPER / (GAMMA + 1)
_INV_LOG_GAMMA = 1 / math.log(GAMMA)


class LogHistogram:
    """Non-negative values (milliseconds, iterations) in a fixed-size log-spaced histogram: exact count, mean,
    minimum and maximum; percentiles within RELATIVE_ERROR of `np.percentile` (linear) for values in [LOW, HIGH].
    Adding is O(1) and never allocates."""

    def __init__(self) -> None:
        self._counts = np.zeros(_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        index = math.ceil(math.log(value / LOW) * _INV_LOG_GAMMA) if value > LOW else 0
        self._counts[min(index, _BUCKETS - 1)] += 1
        self.count += 1
        self.total += value
        self.min = min(self.min, value)
        self.max = max(self.max, value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentiles(self, q: list[float]) -> np.ndarray:
        """Like `np.percentile(values, q)`: between the two order statistics around each rank, linearly."""
        if self.count == 0:
            return np.zeros(len(q))
        rank = np.asarray(q, dtype=np.float64) / 100 * (self.count - 1)
        below = np.floor(rank)
        low, high = self._order_statistics(below), self._order_statistics(np.minimum(below + 1, self.count - 1))
        return np.clip(low + (rank - below) * (high - low), self.min, self.max)

    def _order_statistics(self, index: np.ndarray) -> np.ndarray:
        """The index-th smallest values (0-based) as their buckets report them; the first and last exactly."""
        found = _REPRESENTATIVE[np.searchsorted(np.cumsum(self._counts), index, side="right")]
        return np.where(index == 0, self.min, np.where(index == self.count - 1, self.max, found))

    def counts_at_most(self, bounds: list[float]) -> tuple[np.ndarray, int]:
        """How many values are at most each bound, and how many there are (from one snapshot of the buckets, so
        a reader in another thread gets counts that agree). Counted by whole buckets: values up to
        2 * RELATIVE_ERROR below a bound may count as above it."""
        cumulative = np.cumsum(self._counts)
        whole = np.searchsorted(_UPPER, np.asarray(bounds, dtype=np.float64), side="right")  # buckets below each
        return np.where(whole > 0, cumulative[np.maximum(whole - 1, 0)], 0), int(cumulative[-1])

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0}
        p50, p95, p99 = self.percentiles([50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(self.max)}

    def copy(self) -> LogHistogram:
        other = LogHistogram()
        other._counts[:] = self._counts
        other.count, other.total, other.min, other.max = self.count, self.total, self.min, self.max
        return other

    def since(self, earlier: LogHistogram) -> LogHistogram:
        """The values added after `earlier` (a copy of this histogram taken then); its minimum and maximum are
        known to the bucket."""
        window = LogHistogram()
        window._counts[:] = self._counts - earlier._counts
        window.count, window.total = self.count - earlier.count, self.total - earlier.total
        filled = np.flatnonzero(window._counts)
        if filled.size:
            lowest = _UPPER[filled[0] - 1] if filled[0] > 0 else self.min
            window.min = max(self.min, float(lowest))
            window.max = min(self.max, float(_UPPER[filled[-1]]))
        return window


class Telemetry:
    """Stage timings in milliseconds plus named counters."""

    COUNTERS = ("ticks", "frames", "drops", "deadline_misses", "commands", "stops", "bad_messages",
                "missing_state", "stale_frames", "clipped", "rate_limited")

    def __init__(self) -> None:
        self.stages: dict[str, LogHistogram] = {}
        self.tick_ms = LogHistogram()
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
        histogram = self.stages.get(name)
        if histogram is None:
            histogram = self.stages[name] = LogHistogram()
        histogram.add(ms)

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started

    def summary(self) -> dict[str, Any]:
        elapsed = self.elapsed_s()
        return {
            "loop_hz": self.counters["ticks"] / elapsed if elapsed > 0 else 0.0,
            "tick_ms": self.tick_ms.summary(),
            "stages": {name: histogram.summary() for name, histogram in self.stages.items()},
            "counters": dict(self.counters),
            "duration_s": elapsed,
        }

    def status_line(self) -> str:
        ticks = self.tick_ms.summary()
        return (f"{self.counters['ticks'] / max(self.elapsed_s(), 1e-9):5.1f} Hz | tick p50 {ticks['p50']:5.1f} ms "
                f"p99 {ticks['p99']:5.1f} ms | drops {self.counters['drops']} | misses "
                f"{self.counters['deadline_misses']} | stops {self.counters['stops']}")
