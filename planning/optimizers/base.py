"""The optimizer interface: propose action sequences in normalized units, refit from their costs."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from planning.settings import PlannerSettings


class Optimizer(ABC):
    """Works on sequences of shape (samples, horizon, action_dim) with values in [-1, 1].

    Sample buffers are allocated once; `sample` returns a view the caller must not keep across calls.
    """

    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        self.settings = settings
        self.action_dim = action_dim
        self.rng = rng
        shape = (settings.samples, settings.horizon, action_dim)
        self._samples = np.zeros(shape, dtype=np.float32)
        self._noise = np.zeros(shape, dtype=np.float32)

    @abstractmethod
    def reset(self, mean: np.ndarray) -> None:
        """Start a plan around `mean` (horizon, action_dim), e.g. the shifted previous plan."""

    @abstractmethod
    def sample(self) -> np.ndarray:
        """Candidate sequences for this iteration, (samples, horizon, action_dim), clipped to [-1, 1]."""

    @abstractmethod
    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        """Refit the sampling distribution from the candidates' finite costs."""
