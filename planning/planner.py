"""The latent-space planner: sample action sequences, roll them through the predictor, keep the best."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from planning.costs import GoalDistanceCost
from planning.optimizers import create_optimizer
from planning.settings import PlannerSettings

# (latents (N, Z), physical actions (N, A)) -> next latents (N, Z): one batched call per horizon step.
PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class PlanResult:
    action: np.ndarray  # (A,) first action, physical units
    sequence: np.ndarray  # (H, A) best sequence, physical units
    cost: float
    iterations: int
    ms: float
    best_cost_per_iteration: list[float] = field(default_factory=list)


class Planner:
    """Plans in normalized action units [-1, 1] that map linearly onto the model's action bounds."""

    def __init__(self, settings: PlannerSettings, predict: PredictFn, latent_dim: int, visual_dim: int,
                 action_low: np.ndarray, action_high: np.ndarray) -> None:
        self.settings = settings
        self.predict = predict
        self.action_low = np.asarray(action_low, dtype=np.float32)
        self.action_high = np.asarray(action_high, dtype=np.float32)
        if self.action_low.shape != self.action_high.shape or np.any(self.action_high <= self.action_low):
            raise ValueError("action bounds: every high must exceed its low, with matching dimensions")
        self.action_dim = self.action_low.size
        self._center = (self.action_high + self.action_low) / 2
        self._half_range = (self.action_high - self.action_low) / 2
        self.cost = GoalDistanceCost(settings.cost, visual_dim)
        self.optimizer = create_optimizer(settings, self.action_dim, np.random.default_rng(settings.seed))
        n, h = settings.samples, settings.horizon
        self._latents = np.zeros((n, latent_dim), dtype=np.float32)
        self._actions = np.zeros((n, h, self.action_dim), dtype=np.float32)
        self._costs = np.zeros(n, dtype=np.float64)
        self._warm = np.zeros((h, self.action_dim), dtype=np.float32)
        self.goal: np.ndarray | None = None

    def set_goal(self, visual_latent: np.ndarray) -> None:
        self.goal = np.asarray(visual_latent, dtype=np.float32)

    def reset_warm_start(self) -> None:
        self._warm.fill(0.0)

    def to_physical(self, normalized: np.ndarray) -> np.ndarray:
        return self._center + self._half_range * normalized

    def evaluate(self, latent: np.ndarray, normalized: np.ndarray) -> np.ndarray:
        """Cost of each normalized sequence (N, H, A) from one start latent; returns a view of (N,)."""
        if self.goal is None:
            raise RuntimeError("planner has no goal: call set_goal first")
        horizon = normalized.shape[1]
        np.multiply(normalized, self._half_range, out=self._actions)
        self._actions += self._center
        self._latents[:] = latent
        self._costs.fill(0.0)
        z = self._latents
        for step in range(horizon):
            z = self.predict(z, self._actions[:, step])
            self.cost.add_step(z, self.goal, step, horizon, self._costs)
        # Non-finite predictions never win the ranking.
        self._costs[~np.isfinite(self._costs)] = np.inf
        return self._costs

    def plan(self, latent: np.ndarray) -> PlanResult:
        started = time.perf_counter()
        self.optimizer.reset(self._warm)
        best_cost = np.inf
        best = self._warm.copy()
        history: list[float] = []
        for _ in range(self.settings.iterations):
            samples = self.optimizer.sample()
            costs = self.evaluate(latent, samples)
            index = int(np.argmin(costs))
            if costs[index] < best_cost:
                best_cost = float(costs[index])
                best[:] = samples[index]
            history.append(best_cost)
            self.optimizer.update(samples, costs)
        # Warm start: the best plan shifted by one control period, holding its last action.
        self._warm[:-1] = best[1:]
        self._warm[-1] = best[-1]
        sequence = self.to_physical(best)
        return PlanResult(
            action=sequence[0].copy(),
            sequence=sequence,
            cost=best_cost,
            iterations=len(history),
            ms=(time.perf_counter() - started) * 1000.0,
            best_cost_per_iteration=history,
        )
