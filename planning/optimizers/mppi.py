"""Model-predictive path integral: a fixed-spread Gaussian whose mean moves to the softmin-weighted samples."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.settings import PlannerSettings


class ModelPredictivePathIntegral(Optimizer):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        super().__init__(settings, action_dim, rng)
        self.mppi = settings.mppi
        self.mean = np.zeros(self.shape, dtype=np.float32)
        self._spread = np.full(self.shape, self.mppi.noise_std, dtype=np.float32)
        self._exponents = np.zeros(settings.samples, dtype=np.float64)
        self._weights = np.zeros(settings.samples, dtype=np.float32)

    def reset(self, mean: np.ndarray) -> None:
        self.mean[:] = mean

    def sample(self, out: np.ndarray) -> None:
        self._gaussian_around(out, self.mean, self.mppi.noise_std)

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        finite = np.isfinite(costs)
        if not finite.any():
            return
        # Temperature in units of the cost spread: the same setting works whatever the scale of the costs.
        scale = self.mppi.temperature * max(float(np.std(costs, where=finite)), 1e-12)
        lowest = float(np.min(costs, where=finite, initial=np.inf))
        exponents = np.subtract(costs, lowest, out=self._exponents)
        exponents /= -scale
        np.exp(exponents, out=exponents)  # +inf costs weigh exp(-inf) = 0
        weights = self._weights
        weights[:] = exponents / exponents.sum()
        # The weighted mean of all samples as one matrix-vector product into the mean's own buffer.
        np.dot(weights, samples.reshape(len(weights), -1), out=self.mean.reshape(-1))

    def spread(self) -> np.ndarray:
        return self._spread
