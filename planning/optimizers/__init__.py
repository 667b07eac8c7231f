"""Sampling optimizers over normalized action sequences, one file each behind `Optimizer`."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.optimizers.cem import CrossEntropyMethod
from planning.settings import PlannerSettings


def create_optimizer(settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> Optimizer:
    if settings.optimizer == "cem":
        return CrossEntropyMethod(settings, action_dim, rng)
    raise ValueError(f"planner.optimizer: unknown optimizer {settings.optimizer!r}")


__all__ = ["CrossEntropyMethod", "Optimizer", "create_optimizer"]
