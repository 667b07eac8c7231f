"""The latent-space planner: sample action sequences, roll them through the predictor, keep the best.

With a rollout function (the world model's rollout model, perception/rollout.py) an iteration's whole
rollout is one call; without one, one batched predictor call per model step.

Everything inside works in normalized action units: [-1, 1] per dimension maps linearly onto the model's
action bounds. Only `plan` results (and `warm_start`) come out in physical units.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from planning.costs import Goal, RolloutCost
from planning.optimizers import create_optimizer
from planning.settings import PlannerSettings

# (latents (N, Z), physical actions (N, A)) -> next latents (N, Z): one batched call per model step.
PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# (start latents (N, Z), physical action sequences (N, S, A)) -> every step's latent (N, S, Z): one call.
RolloutFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
Chosen = Literal["sampled", "warm_start", "hold_still"]


@dataclass
class PlanResult:
    action: np.ndarray  # (A,) first action, physical units
    sequence: np.ndarray  # (H x action_block, A) best sequence, one action per control period, physical units
    cost: float  # inf when no candidate had a finite cost (the plan is then hold-still)
    iterations: int  # iterations done (fewer than configured when the deadline cut them)
    ms: float
    best_cost_per_iteration: list[float]
    spread: float  # mean std of the last iteration's sampling distribution, unpinned dimensions, normalized units
    deadline_hit: bool  # the time budget stopped iterating early
    chosen: Chosen  # where the best sequence came from

    def diagnostics(self) -> dict[str, Any]:
        """JSON-able diagnostics for run summaries and recordings (non-finite costs become null)."""
        return {
            "cost": _finite_or_none(self.cost),
            "iterations": self.iterations,
            "ms": self.ms,
            "best_cost_per_iteration": [_finite_or_none(c) for c in self.best_cost_per_iteration],
            "spread": self.spread,
            "deadline_hit": self.deadline_hit,
            "chosen": self.chosen,
            "sequence": self.sequence.tolist(),
        }


def check_pins(pinned: dict[int, float], action_low: np.ndarray,
               action_high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`planner.pinned` against a model's action bounds: (dimensions, values), or ValueError naming the pin."""
    for dim, value in pinned.items():
        if dim >= len(action_low):
            raise ValueError(f"planner.pinned: action dimension {dim} does not exist "
                             f"(the model has {len(action_low)})")
        if not action_low[dim] <= value <= action_high[dim]:
            raise ValueError(f"planner.pinned.{dim}: {value} is outside the action bounds "
                             f"[{action_low[dim]}, {action_high[dim]}]")
    dims = np.array(sorted(pinned), dtype=np.intp)
    values = np.array([pinned[d] for d in sorted(pinned)], dtype=np.float32)
    return dims, values


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class Planner:
    """Plans towards a goal latent; settings can be swapped between plans (`update_settings`)."""

    def __init__(self, settings: PlannerSettings, predict: PredictFn, latent_dim: int, visual_dim: int,
                 action_low: np.ndarray, action_high: np.ndarray, control_period_s: float,
                 rollout: RolloutFn | None = None) -> None:
        self.predict = predict
        self.rollout = rollout  # None: step `predict`
        self.latent_dim = latent_dim
        self.visual_dim = visual_dim
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        if self.action_low.ndim != 1 or self.action_low.shape != self.action_high.shape \
                or np.any(self.action_high <= self.action_low):
            raise ValueError("action bounds: every high must exceed its low, with matching dimensions")
        if not 0 < visual_dim <= latent_dim:
            raise ValueError(f"visual_dim ({visual_dim}) must be in 1..latent_dim ({latent_dim})")
        if control_period_s <= 0:
            raise ValueError(f"control_period_s must be positive, got {control_period_s}")
        self.control_period_s = control_period_s
        self.action_dim = self.action_low.size
        self._center = (self.action_high + self.action_low) / 2
        self._half_range = (self.action_high - self.action_low) / 2
        # Zero physical action in normalized units, clipped in case zero lies outside asymmetric bounds.
        self._hold_still = np.clip(-self._center / self._half_range, -1.0, 1.0).astype(np.float32)
        self.goal: Goal | None = None
        self._previous: np.ndarray | None = None  # last best sequence, normalized (H, A); None: start cold
        # Goals and settings may change from other threads (goal messages, hot reload): never mid-plan.
        self._lock = threading.Lock()
        self.settings = settings
        self._configure(settings)

    # -- configuration ------------------------------------------------------------------------------------
    def update_settings(self, settings: PlannerSettings) -> None:
        """Swap in new settings (hot reload): the goal stays; the warm start too unless the horizon changed.

        Raises ValueError, leaving the current settings in place, when the settings do not fit this model.
        """
        with self._lock:
            horizon_changed = (settings.horizon, settings.action_block) != (self.settings.horizon,
                                                                             self.settings.action_block)
            self._configure(settings)
            if horizon_changed:
                self._previous = None

    def _configure(self, settings: PlannerSettings) -> None:
        pinned_dims, pinned_values = check_pins(settings.pinned, self.action_low, self.action_high)
        n, h, a = settings.samples, settings.horizon, self.action_dim
        optimizer = create_optimizer(settings, a, np.random.default_rng(settings.seed))
        cost = RolloutCost(settings.cost, self.visual_dim, self.latent_dim, n, h, a, self._hold_still)
        # Nothing above changed the planner, so settings that do not fit leave the old ones in place.
        self.settings, self.optimizer, self.cost = settings, optimizer, cost
        self._pinned_dims, self._pinned_values = pinned_dims, pinned_values
        self._pinned_normalized = (pinned_values - self._center[pinned_dims]) / self._half_range[pinned_dims]
        self._free_dims = np.setdiff1d(np.arange(a), pinned_dims)
        self._raw = np.zeros((n, h, a), dtype=np.float32)
        self._samples = np.zeros((n, h, a), dtype=np.float32)
        self._physical = np.zeros((h, n, a), dtype=np.float32)  # step-major: each step's actions are contiguous
        # The rollout's input: every model step's action, each planned action held action_block steps.
        self._sequences = np.zeros((n, h * settings.action_block, a), dtype=np.float32)
        self._latents = np.zeros((n, self.latent_dim), dtype=np.float32)
        self._step_latents = np.zeros((n, h, self.latent_dim), dtype=np.float32)  # stepping: each block's end
        self._costs = np.zeros(n, dtype=np.float64)

    # -- goal and warm start ------------------------------------------------------------------------------
    def set_goal(self, visual: np.ndarray | None = None, state: np.ndarray | None = None) -> None:
        """Replace the goal: a visual latent (visual_dim,) and/or a proprio-latent goal (latent_dim - visual_dim,)."""
        if visual is None and state is None:
            raise ValueError("set_goal needs a visual latent, a state goal, or both")
        goal = Goal(self._goal_part("visual", visual, self.visual_dim),
                    self._goal_part("state", state, self.latent_dim - self.visual_dim))
        with self._lock:
            self.goal = goal

    @staticmethod
    def _goal_part(name: str, value: np.ndarray | None, size: int) -> np.ndarray | None:
        if value is None:
            return None
        array = np.asarray(value, dtype=np.float32)
        if array.shape != (size,):
            raise ValueError(f"{name} goal: expected shape ({size},), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} goal: contains non-finite values")
        return array.copy()

    def reset_warm_start(self) -> None:
        """Forget the previous plan: the next one starts from the middle of the action bounds."""
        with self._lock:
            self._previous = None

    def warm_start(self, elapsed_s: float | None = None) -> np.ndarray:
        """The sequence (H, A, physical) the next plan starts from, given the time since the last plan."""
        return self._to_physical(self._shifted_previous(elapsed_s)[0])

    def _shifted_previous(self, elapsed_s: float | None) -> tuple[np.ndarray, int | None]:
        """The previous best shifted by the steps executed since, and that shift (None: no previous plan)."""
        warm = np.zeros((self.settings.horizon, self.action_dim), dtype=np.float32)
        if self._previous is None:
            return warm, None
        # The robot has executed one control period of the plan per period since then (a planned action lasts
        # action_block periods): drop the planned actions used up, hold the last.
        block_s = self.control_period_s * self.settings.action_block
        shift = 1 if elapsed_s is None else max(0, math.floor(elapsed_s / block_s + 0.5))
        kept = max(0, self.settings.horizon - shift)
        warm[:kept] = self._previous[shift : shift + kept]
        warm[kept:] = self._previous[-1]
        return warm, shift

    def _to_physical(self, normalized: np.ndarray) -> np.ndarray:
        physical = self._center + self._half_range * normalized
        physical[..., self._pinned_dims] = self._pinned_values  # exact, not a round trip through [-1, 1]
        return physical

    def _normalized_command(self, physical: np.ndarray) -> np.ndarray:
        command = np.asarray(physical, dtype=np.float32)
        if command.shape != (self.action_dim,) or not np.all(np.isfinite(command)):
            raise ValueError(f"previous_action: expected {self.action_dim} finite values, got {command!r}")
        return (command - self._center) / self._half_range

    # -- planning -----------------------------------------------------------------------------------------
    def plan(self, latent: np.ndarray, previous_action: np.ndarray | None = None,
             elapsed_s: float | None = None) -> PlanResult:
        """Best action sequence from `latent` (latent_dim,).

        `previous_action` (physical) is the last command sent, for the action-rate term; `elapsed_s` is the
        real time since the previous plan, which sets how far its sequence is shifted for the warm start.
        """
        started = time.perf_counter()
        latent = np.asarray(latent, dtype=np.float32)
        if latent.shape != (self.latent_dim,):
            raise ValueError(f"latent: expected shape ({self.latent_dim},), got {latent.shape}")
        with self._lock:
            if self.goal is None:
                raise RuntimeError("planner has no goal: call set_goal first")
            return self._plan(started, latent, self.goal, previous_action, elapsed_s)

    def _plan(self, started: float, latent: np.ndarray, goal: Goal, previous_action: np.ndarray | None,
              elapsed_s: float | None) -> PlanResult:
        settings = self.settings
        previous = None if previous_action is None else self._normalized_command(previous_action)
        warm, shift = self._shifted_previous(elapsed_s)
        self.optimizer.reset(warm, shift)
        best = np.broadcast_to(self._hold_still, warm.shape).copy()  # the fallback if nothing is finite
        best_cost = np.inf
        chosen: Chosen = "hold_still"
        history: list[float] = []
        deadline_hit = False
        for iteration in range(settings.iterations):
            self.optimizer.sample(self._raw)
            # Candidates that make a plan never worse than carrying on or stopping; later, the best so far.
            # Row 0 is the optimizer's centre, which starts as the warm start.
            if iteration == 0:
                self._raw[0] = warm
                self._raw[1] = self._hold_still
            else:
                self._raw[1] = best
            self._raw[..., self._pinned_dims] = self._pinned_normalized
            np.clip(self._raw, -1.0, 1.0, out=self._samples)
            costs = self._evaluate(latent, goal, previous)
            index = int(np.argmin(costs))
            if costs[index] < best_cost:
                best_cost = float(costs[index])
                best[:] = self._samples[index]
                chosen = self._source_of(iteration, index)
            history.append(best_cost)
            if iteration + 1 == settings.iterations:
                break  # the last iteration: a refit would never be sampled (the next plan resets the optimizer)
            if self._out_of_time(started, iteration):
                deadline_hit = True
                break
            self.optimizer.update(self._samples, costs)
        self.optimizer.finish(self._samples, costs)
        self._previous = best
        sequence = np.repeat(self._to_physical(best), settings.action_block, axis=0)
        spread = self.optimizer.spread()[:, self._free_dims]
        return PlanResult(
            action=sequence[0].copy(),
            sequence=sequence,
            cost=best_cost,
            iterations=len(history),
            ms=(time.perf_counter() - started) * 1000.0,
            best_cost_per_iteration=history,
            spread=float(spread.mean()) if spread.size else 0.0,
            deadline_hit=deadline_hit,
            chosen=chosen,
        )

    @staticmethod
    def _source_of(iteration: int, index: int) -> Chosen:
        if iteration == 0 and index == 0:
            return "warm_start"
        if iteration == 0 and index == 1:
            return "hold_still"
        return "sampled"

    def _out_of_time(self, started: float, iteration: int) -> bool:
        """After iteration `iteration`: would one more (at the mean pace so far) overrun the budget?"""
        budget_ms = self.settings.deadline_ms
        if budget_ms is None:
            return False
        spent_ms = (time.perf_counter() - started) * 1000.0
        return spent_ms * (iteration + 2) / (iteration + 1) > budget_ms

    def _evaluate(self, latent: np.ndarray, goal: Goal, previous: np.ndarray | None) -> np.ndarray:
        """Cost of every sample in the buffers from one start latent; non-finite costs become +inf."""
        np.multiply(self._samples.transpose(1, 0, 2), self._half_range, out=self._physical)
        self._physical += self._center
        costs = self._costs
        costs.fill(0.0)
        self.cost.add_actions(self._raw, self._samples, previous, costs)
        self._latents[:] = latent
        block = self.settings.action_block
        if self.rollout is not None:
            n, h, a = self._samples.shape
            self._sequences.reshape(n, h, block, a)[:] = self._physical.transpose(1, 0, 2)[:, :, None, :]
            latents = self.rollout(self._latents, self._sequences)
            self.cost.add_steps(latents[:, block - 1 :: block], goal, costs)  # latent costs at each block's end
        else:
            z = self._latents
            for step in range(self.settings.horizon):
                for _ in range(block):  # the action held; latent costs at the block's end
                    z = self.predict(z, self._physical[step])
                self._step_latents[:, step] = z
            self.cost.add_steps(self._step_latents, goal, costs)
        costs[~np.isfinite(costs)] = np.inf
        return costs
