"""training_curves.png beside a trained model: the training losses and the validation error per epoch."""

from __future__ import annotations

import math
from pathlib import Path

from calibration.figures import integer_ticks, new_figure, save_figure

LOSSES = ("total", "prediction", "alignment", "variance", "covariance")  # planning/training.py's loss terms


def plot_training_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Left: each training loss term's mean per epoch (log scale); right: the held-out visual-state error."""
    epochs = [record["epoch"] for record in history]
    figure = new_figure(1100, 420)
    losses, validation = figure.subplots(1, 2)
    for name in LOSSES:
        # A hinge at 0 has no place on a log scale: those epochs are left out of its line.
        values = [record[name] if record.get(name, 0.0) > 0 else math.nan for record in history]
        if any(math.isfinite(value) for value in values):
            losses.plot(epochs, values, marker="o", label=name)
    losses.set_yscale("log")
    losses.set_title("training losses (mean per epoch)")
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.legend(loc="best")
    validation.plot(epochs, [record["val_state_error"] for record in history], marker="o", color="tab:red")
    validation.set_title("validation: visual state error (held-out)")
    validation.set_xlabel("epoch")
    validation.set_ylabel("state error (the visual state's units)")
    for axes in (losses, validation):
        axes.grid(alpha=0.4)
        integer_ticks(axes.xaxis)
    return save_figure(figure, path)
