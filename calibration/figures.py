"""matplotlib figures saved as PNG, for every plot the project writes (calibration, tuning, training, latency).

matplotlib is the `observe` extra, so it is imported only when a plot is drawn. Figures are made without pyplot
(no global state, no GUI backend: the Agg canvas), so plots can be drawn from any thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

DPI = 100
# Colours every plot shares (matplotlib's default cycle: blue, orange, green, red).
BAR, BASE, BEST, BAD = "tab:blue", "tab:orange", "tab:green", "tab:red"


class PlottingUnavailable(ImportError):
    """matplotlib is not installed."""


def new_figure(width_px: int, height_px: int) -> Figure:
    """An empty figure of this size in pixels; PlottingUnavailable naming the extra without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlottingUnavailable("plots need matplotlib: install the observe extra "
                                  "(pip install -e '.[observe]')") from exc
    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")


def save_figure(figure: Figure, path: Path) -> Path:
    """Write the figure as PNG, creating its folder; OSError naming the file if it cannot."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png", dpi=DPI)
    except OSError as exc:
        raise OSError(f"{path}: cannot write the plot ({exc.strerror or exc})") from exc
    return path


def integer_ticks(axis: Axis) -> None:
    """Ticks at whole numbers only (trials, epochs)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))
