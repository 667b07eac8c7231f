"""Model-predictive path integral: a fixed-spread Gaussian whose mean moves to the softmin-weighted samples."""

from __future__ import annotations

import math

import numpy as np

from planning.optimizers.base import Optimizer
from planning.settings import PlannerSettings


class ModelPredictivePathIntegral(Optimizer):
    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        super().__init__(settings, action_dim, rng)
        self.mppi = settings.mppi
        self.mean = np.zeros(self.shape, dtype=np.float32)
        self._spread = np.full(self.shape, self.mppi.noise_std, dtype=np.float32)
        self._finite = np.zeros(settings.samples, dtype=bool)
        self._exponents = np.zeros(settings.samples, dtype=np.float64)
        self._weights = np.zeros(settings.samples, dtype=np.float32)

    def reset(self, mean: np.ndarray, shift: int | None) -> None:
        self.mean[:] = mean

    def sample(self, out: np.ndarray) -> None:
        self._gaussian_around(out, self.mean, self.mppi.noise_std)

    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        finite = np.isfinite(costs, out=self._finite)
        count = np.count_nonzero(finite)
        if count == 0:
            return
        exponents = self._exponents
        # Temperature in units of the cost spread: the same setting works whatever the scale of the costs.
        mean = np.sum(costs, where=finite) / count
        np.subtract(costs, mean, out=exponents, where=finite)
        np.square(exponents, out=exponents, where=finite)
        scale = self.mppi.temperature * max(math.sqrt(np.sum(exponents, where=finite) / count), 1e-12)
        lowest = np.min(costs, where=finite, initial=np.inf)
        exponents.fill(-np.inf)  # samples without a finite cost weigh exp(-inf) = 0
        np.subtract(lowest, costs, out=exponents, where=finite)
        np.divide(exponents, scale, out=exponents, where=finite)
        np.exp(exponents, out=exponents)
        np.divide(exponents, exponents.sum(), out=self._weights, casting="same_kind")
        # The weighted mean of all samples as one matrix-vector product into the mean's own buffer.
        np.dot(self._weights, samples.reshape(len(self._weights), -1), out=self.mean.reshape(-1))

    def spread(self) -> np.ndarray:
        return self._spread
