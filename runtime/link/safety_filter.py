"""The controller's own safety, between `ControllerLink.poll` and the actuators (docs/protocol.md, "Controller-side
safety").

The runtime filters its commands before they leave (runtime/safety.py); a controller does not take that on trust.
`ControllerSafety.update` takes what `poll` returned each control cycle and says what the actuators do:

- a command whose action is outside the action limits (a model manifest's `action_low`/`action_high`, or the
  robot's own) by more than float32 rounding, or is not finite, is **refused and the robot holds still at once**:
  a sender that disagrees about the limits may disagree about the units or the robot too, and clipping would
  carry out a saturated version of a command whose meaning is in doubt;
- an accepted command is **rate limited**: the applied action moves from the one in force (zero while holding
  still) by at most `max_rate` × Δt per dimension, Δt the time since the action in force was set, at most
  `MAX_RATE_INTERVAL_S`; a limited command is applied as far as it may go, and the next ones carry on from there;
- a stop (and a command `poll` turned into a stop, such as one with a non-finite action) holds still at once,
  never rate limited: holding still is always allowed;
- no accepted command for `watchdog_ms` while moving: hold still, logged and counted once per silence.

    link = ControllerLink(action_dim=2)
    safety = ControllerSafety(ActionLimits.from_manifest("models/demo/manifest.json"), max_rate=160, watchdog_ms=300)
    while running:
        actuation = safety.update(link.poll(timeout_ms=5))
        if actuation is not None: hold_still() if actuation.action is None else apply(actuation.action)
        link.publish_state(q, dq, ee, not safety.moving, safety.last_command_seq)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.manifest import load_manifest
from runtime.link import protocol
from runtime.link.controller_side import Watchdog
from runtime.link.drops import Drops

log = logging.getLogger(__name__)

# A bound may be exceeded by this much of max(1, |bound|): a runtime that clipped to the float32 value of a bound
# sends a float64 a few 1e-9 beyond it. Within it the action is clipped to the bound; beyond, refused.
BOUND_TOLERANCE = 1e-6
# The rate limit's Δt is at most this: from rest, or after a pause, the first step is max_rate × this at most.
MAX_RATE_INTERVAL_S = 0.1


def limit_rate(action: np.ndarray, previous: np.ndarray, max_step: float) -> np.ndarray:
    """`action` moved from `previous` by at most `max_step` per dimension."""
    return np.clip(action, previous - max_step, previous + max_step)


class ActionLimits:
    """Per-dimension action bounds, checked: same shape, finite, every high above its low (errors name `where`)."""

    def __init__(self, low: np.ndarray, high: np.ndarray, where: str = "action limits") -> None:
        self.low = np.asarray(low, dtype=np.float64).ravel()
        self.high = np.asarray(high, dtype=np.float64).ravel()
        if self.low.shape != self.high.shape:
            raise ValueError(f"{where}: low has shape {self.low.shape}, high {self.high.shape}")
        if not (np.all(np.isfinite(self.low)) and np.all(np.isfinite(self.high))):
            raise ValueError(f"{where}: low and high must be finite")
        if np.any(self.high <= self.low):
            bad = np.flatnonzero(self.high <= self.low).tolist()
            raise ValueError(f"{where}: high must exceed low at indices {bad}")
        self._slack = BOUND_TOLERANCE * np.maximum(1.0, np.maximum(np.abs(self.low), np.abs(self.high)))

    @classmethod
    def from_manifest(cls, path: str | Path) -> ActionLimits:
        """The action_low/action_high of a model manifest (or its directory); ManifestError names the file."""
        manifest = load_manifest(path, verify=False)
        return cls(np.array(manifest.action_low), np.array(manifest.action_high), f"{path}: action_low/action_high")

    def problem(self, action: np.ndarray) -> str | None:
        """Why `action` may not be applied (wrong size, non-finite, beyond a bound by more than the tolerance)."""
        if action.shape != self.low.shape:
            return f"has {action.size} values, the limits {self.low.size}"
        outside = ~((action >= self.low - self._slack) & (action <= self.high + self._slack))  # NaN is outside
        if np.any(outside):
            where = np.flatnonzero(outside).tolist()
            return f"{action[where].tolist()} at indices {where} outside [{self.low[where].tolist()}, " \
                   f"{self.high[where].tolist()}]"
        return None

    def clip(self, action: np.ndarray) -> np.ndarray:
        return np.clip(action, self.low, self.high)


@dataclass(frozen=True)
class Actuation:
    """What the actuators do from this cycle on."""

    action: np.ndarray | None  # None: hold still
    reason: str  # "command", "stop: <its reason>", "watchdog: ...", or why a command was refused


class ControllerSafety:
    """Bounds (refused), rate limit, stops and watchdog for one robot; counts each in `counters`."""

    def __init__(self, limits: ActionLimits, max_rate: float, watchdog_ms: float) -> None:
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive (action units per second), got {max_rate}")
        self.limits = limits
        self.max_rate = max_rate
        self.watchdog = Watchdog(watchdog_ms)
        self.counters: dict[str, int] = {"commands_applied": 0, "stops_applied": 0, "watchdog_stops": 0,
                                         "out_of_bounds": 0, "rate_limited": 0}
        self._refuse = Drops(self.counters, "safety filter")
        self.moving = False  # a command is in force (so silence is a watchdog stop)
        self.last_command_seq = -1  # of the last command applied
        self._applied = np.zeros_like(limits.low)  # the action in force; zero while holding still
        self._applied_at: float | None = None  # when it was set (monotonic s)

    def update(self, message: protocol.Command | protocol.Stop | None, now: float | None = None) -> Actuation | None:
        """What the actuators do after this cycle's `poll` (at monotonic time `now`); None: keep what is in force."""
        now = time.monotonic() if now is None else now
        if isinstance(message, protocol.Command):
            return self._command(message, now)
        if isinstance(message, protocol.Stop):
            self.counters["stops_applied"] += 1
            return self._hold(f"stop: {message.reason}", now)
        if self.moving and self.watchdog.expired(now):
            self.counters["watchdog_stops"] += 1
            timeout_ms = self.watchdog.timeout_s * 1000
            log.warning("no valid command for %.0f ms: holding the robot still", timeout_ms)
            return self._hold(f"watchdog: no valid command for {timeout_ms:.0f} ms", now)
        return None

    def _command(self, command: protocol.Command, now: float) -> Actuation:
        problem = self.limits.problem(command.action)
        if problem is not None:
            reason = f"command {command.seq} refused: action {problem}"
            self._refuse("out_of_bounds", f"{reason}; holding still")
            return self._hold(reason, now)
        target = self.limits.clip(command.action)
        elapsed = MAX_RATE_INTERVAL_S if self._applied_at is None else min(now - self._applied_at, MAX_RATE_INTERVAL_S)
        applied = limit_rate(target, self._applied, self.max_rate * max(elapsed, 0.0))
        self.counters["rate_limited"] += bool(np.any(applied != target))
        self.counters["commands_applied"] += 1
        self._applied, self._applied_at = applied, now
        self.moving, self.last_command_seq = True, command.seq
        self.watchdog.feed(now)
        return Actuation(applied.copy(), "command")

    def _hold(self, reason: str, now: float) -> Actuation:
        self._applied = np.zeros_like(self._applied)
        self._applied_at = now
        self.moving = False
        return Actuation(None, reason)
