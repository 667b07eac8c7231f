"""The optimizer interface: propose normalized action sequences, refit the proposal from their costs."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from planning.settings import PlannerSettings


class Optimizer(ABC):
    """A sampling distribution over sequences of shape (horizon, action_dim) in normalized units.

    The planner owns the sample buffer (samples, horizon, action_dim): it asks for proposals, puts its own
    candidates in rows 0 and 1 (the warm start given to `reset`, hold-still, later the best so far), pins and
    clips them to [-1, 1], rolls them out and hands back the costs, +inf where a cost was not finite.
    """

    def __init__(self, settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> None:
        self.settings = settings
        self.rng = rng
        self.shape = (settings.horizon, action_dim)

    @abstractmethod
    def reset(self, mean: np.ndarray, shift: int | None) -> None:
        """Start a plan around `mean` (horizon, action_dim): the previous plan shifted by `shift` steps (the
        actions executed since), or hold-still with `shift` None when there is no previous plan to carry on."""

    @abstractmethod
    def sample(self, out: np.ndarray) -> None:
        """Write this iteration's proposals into `out` (samples, horizon, action_dim), unclipped."""

    @abstractmethod
    def update(self, samples: np.ndarray, costs: np.ndarray) -> None:
        """Refit from the evaluated (clipped) samples and their costs; +inf costs carry no information."""

    def finish(self, samples: np.ndarray, costs: np.ndarray) -> None:
        """The plan's last evaluated samples and costs, which no refit follows; for optimizers that carry
        samples into the next plan (iCEM's elites). Nothing by default."""
        return

    @abstractmethod
    def spread(self) -> np.ndarray:
        """Standard deviation of the current proposal, (horizon, action_dim), normalized units."""

    def _gaussian_around(self, out: np.ndarray, center: np.ndarray, std: np.ndarray | float) -> None:
        """Diagonal Gaussian samples around `center`; row 0 is `center` itself, so it always competes."""
        self.rng.standard_normal(dtype=np.float32, out=out)
        out *= std
        out += center
        out[0] = center
