"""Sampling optimizers over normalized action sequences, one file each behind `Optimizer`."""

from __future__ import annotations

import numpy as np

from planning.optimizers.base import Optimizer
from planning.optimizers.cem import CrossEntropyMethod
from planning.optimizers.icem import ImprovedCrossEntropyMethod
from planning.optimizers.mppi import ModelPredictivePathIntegral
from planning.optimizers.predictive_sampling import PredictiveSampling
from planning.settings import PlannerSettings

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "cem": CrossEntropyMethod,
    "icem": ImprovedCrossEntropyMethod,
    "mppi": ModelPredictivePathIntegral,
    "predictive_sampling": PredictiveSampling,
}


def create_optimizer(settings: PlannerSettings, action_dim: int, rng: np.random.Generator) -> Optimizer:
    try:
        kind = OPTIMIZERS[settings.optimizer]
    except KeyError:
        raise ValueError(f"planner.optimizer: unknown optimizer {settings.optimizer!r}; "
                         f"expected one of {', '.join(OPTIMIZERS)}") from None
    return kind(settings, action_dim, rng)


__all__ = ["OPTIMIZERS", "CrossEntropyMethod", "ImprovedCrossEntropyMethod", "ModelPredictivePathIntegral", "Optimizer",
           "PredictiveSampling", "create_optimizer"]
