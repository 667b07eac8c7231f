"""`edgeloop bench model --plots DIR`: one PNG per backend with the histogram of each stage's call times."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from calibration.figures import BAR, BEST, new_figure, save_figure


def plot_stage_latency(samples_ms: dict[str, dict[str, np.ndarray]], out: Path) -> list[Path]:
    """`out/latency_<backend>.png` for each backend: a histogram per stage (ms, its median marked)."""
    written = []
    for backend, stages in samples_ms.items():
        figure = new_figure(320 * len(stages), 340)
        figure.suptitle(f"{backend}: time per call")
        for column, (stage, ms) in enumerate(stages.items()):
            axes = figure.add_subplot(1, len(stages), column + 1)
            axes.hist(ms, bins=40, color=BAR)
            median = float(np.median(ms))
            axes.axvline(median, color=BEST, linewidth=2, label=f"median {median:.3f} ms")
            axes.set_title(stage.removesuffix("_ms"))
            axes.set_xlabel("ms")
            axes.set_ylabel("calls")
            axes.legend(loc="upper right", fontsize=8)
        written.append(save_figure(figure, out / f"latency_{backend}.png"))
    return written
