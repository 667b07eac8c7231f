"""Cross-entropy method: refit a diagonal Gaussian to the elite samples, with momentum and a spread floor."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.settings import CemSettings, PlannerSettings


class CrossEntropyMethod(Optimizer):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator,
                 section: CemSettings | None = None) -> None:
        super().__init__(settings, action_dim, rng)
        self.cem = section if section is not None else settings.cem  # iCEM refits the same way from its own
        self.mean = np.zeros(self.shape, dtype=np.float32)
        self.std = np.full(self.shape, self.cem.init_std, dtype=np.float32)

    def reset(self, mean: np.ndarray, shift: int | None) -> None:
        self.mean[:] = mean
        self.std.fill(self.cem.init_std)

    def sample(self, out: np.ndarray) -> None:
        self._gaussian_around(out, self.mean, self.std)

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        finite = np.flatnonzero(np.isfinite(costs))
        if finite.size == 0:
            return
        count = min(self.cem.elites, finite.size)
        elites = samples[finite[np.argpartition(costs[finite], count - 1)[:count]]]
        keep_mean, keep_std = self.cem.momentum_mean, self.cem.momentum_std
        self.mean[:] = keep_mean * self.mean + (1.0 - keep_mean) * elites.mean(axis=0)
        self.std[:] = keep_std * self.std + (1.0 - keep_std) * elites.std(axis=0)
        # Without a floor the spread collapses onto one sequence and later iterations stop exploring.
        np.maximum(self.std, self.cem.min_std, out=self.std)

    def spread(self) -> np.ndarray:
        return self.std
