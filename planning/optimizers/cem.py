"""Cross-entropy method: refit a diagonal Gaussian to the elite samples, with a floor on its spread."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.settings import PlannerSettings


class CrossEntropyMethod(Optimizer):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        super().__init__(settings, action_dim, rng)
        self.mean = np.zeros((settings.horizon, action_dim), dtype=np.float32)
        self.std = np.full_like(self.mean, settings.init_std)

    def reset(self, mean: np.ndarray) -> None:
        self.mean[:] = mean
        self.std.fill(self.settings.init_std)

    def sample(self) -> np.ndarray:
        self._noise[:] = self.rng.standard_normal(self._noise.shape, dtype=np.float32)
        np.multiply(self._noise, self.std, out=self._samples)
        self._samples += self.mean
        # The current mean competes as a candidate, so an iteration never loses the best guess so far.
        self._samples[0] = self.mean
        np.clip(self._samples, -1.0, 1.0, out=self._samples)
        return self._samples

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        finite = np.flatnonzero(np.isfinite(costs))
        if finite.size == 0:
            return
        count = min(self.settings.elites, finite.size)
        elites = samples[finite[np.argpartition(costs[finite], count - 1)[:count]]]
        self.mean[:] = elites.mean(axis=0)
        np.maximum(elites.std(axis=0), self.settings.min_std, out=self.std)
