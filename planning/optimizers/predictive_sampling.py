"""Predictive sampling (MuJoCo MPC): perturb the nominal plan with fixed noise and keep the best candidate."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.settings import PlannerSettings


class PredictiveSampling(Optimizer):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        super().__init__(settings, action_dim, rng)
        self.noise_std = settings.predictive_sampling.noise_std
        self.nominal = np.zeros(self.shape, dtype=np.float32)
        self._spread = np.full(self.shape, self.noise_std, dtype=np.float32)

    def reset(self, mean: np.ndarray, shift: int | None) -> None:
        self.nominal[:] = mean

    def sample(self, out: np.ndarray) -> None:
        self._gaussian_around(out, self.nominal, self.noise_std)

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        best = int(np.argmin(costs))
        if np.isfinite(costs[best]):
            self.nominal[:] = samples[best]

    def spread(self) -> np.ndarray:
        return self._spread
