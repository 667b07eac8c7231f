"""The last gate before a command leaves: bounds, rate limit, and stop on anything non-finite.

The controller keeps its own gate as well (runtime/link/safety_filter.py), which refuses rather than clips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.link.safety_filter import limit_rate


@dataclass
class SafetyVerdict:
    action: np.ndarray | None  # None: send a stop instead
    clipped: bool
    rate_limited: bool
    reason: str = ""


class SafetyFilter:
    def __init__(self, low: np.ndarray, high: np.ndarray, max_rate: float, period_s: float) -> None:
        self.low = np.asarray(low, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.max_step = max_rate * period_s
        self.previous = np.zeros_like(self.low)

    def reset(self) -> None:
        """After a stop the robot is still: rate-limit the next command from rest."""
        self.previous.fill(0.0)

    def __call__(self, action: np.ndarray) -> SafetyVerdict:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.low.shape:
            self.reset()
            return SafetyVerdict(None, False, False, f"action shape {action.shape} != bounds {self.low.shape}")
        if not np.all(np.isfinite(action)):
            self.reset()
            return SafetyVerdict(None, False, False, "non-finite action")
        bounded = np.clip(action, self.low, self.high)
        limited = limit_rate(bounded, self.previous, self.max_step)
        self.previous = limited
        return SafetyVerdict(
            limited,
            clipped=bool(np.any(bounded != action)),
            rate_limited=bool(np.any(limited != bounded)),
        )
