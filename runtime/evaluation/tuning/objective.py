"""From a trial's metrics to the value(s) Optuna optimizes.

Weighted: one value to minimize, sum of weight x metric with maximized metrics (success_rate) counted
negatively, so weights are always positive and read as exchange rates ("0.01 per plan ms" trades one
percentage point of success for one ms). Multi-objective: each metric as it is, in its own direction.
"""

from __future__ import annotations

import math

from runtime.evaluation.tuning.spec import TuneSpec


def objective_values(spec: TuneSpec, metrics: dict[str, float]) -> list[float]:
    """The values to tell Optuna; raises ValueError when a metric is missing or not finite."""
    directions = spec.evaluation.metrics
    missing = [name for name in spec.objective.names if not math.isfinite(metrics.get(name, math.nan))]
    if missing:
        raise ValueError(f"the trial reported no finite value for {missing}")
    if spec.objective.weights is not None:
        return [sum(weight * metrics[name] * (-1.0 if directions[name] == "maximize" else 1.0)
                    for name, weight in spec.objective.weights.items())]
    return [metrics[name] for name in spec.objective.names]
