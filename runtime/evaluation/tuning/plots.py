"""The study's plots as PNG, drawn with matplotlib (the `observe` extra; calibration/figures.py).

history.png: each trial's objective value and the best so far; importance.png: how much each searched key
explains the objective (Optuna's default importance evaluator); tradeoff.png: a quality metric against plan ms.
"""

from __future__ import annotations

from pathlib import Path

from calibration.figures import BAD, BAR, BASE, BEST, integer_ticks, new_figure, save_figure

_WIDTH, _HEIGHT = 760, 460


def plot_history(numbers: list[int], values: list[float | None], base: int | None, maximize: bool,
                 value_name: str, path: Path) -> Path:
    """Each complete trial's value (dots), failed trials (red crosses on the floor), and the best so far (steps)."""
    done = [(n, v) for n, v in zip(numbers, values, strict=True) if v is not None]
    figure = new_figure(_WIDTH, _HEIGHT)
    axes = figure.add_subplot()
    best: list[float] = []
    for _, value in done:
        best.append(value if not best else max(best[-1], value) if maximize else min(best[-1], value))
    if done:
        axes.step([n for n, _ in done], best, where="post", color=BEST, linewidth=2, label="best so far")
        axes.scatter([n for n, _ in done], [v for _, v in done], color=[BASE if n == base else BAR for n, _ in done],
                     zorder=3, label="trial (base config in orange)")
    failed = [n for n, v in zip(numbers, values, strict=True) if v is None]
    if failed:
        floor = min((v for _, v in done), default=0.0)
        axes.scatter(failed, [floor] * len(failed), marker="x", color=BAD, zorder=3, label="failed")
    axes.set_title(f"optimization history ({'higher' if maximize else 'lower'} is better)")
    axes.set_xlabel("trial")
    axes.set_ylabel(value_name)
    integer_ticks(axes.xaxis)
    axes.grid(alpha=0.4)
    axes.legend(loc="best")
    return save_figure(figure, path)


def plot_importances(importances: dict[str, float], note: str, path: Path) -> Path:
    """Horizontal bars, most important first; `note` says why there are none when the study is too small."""
    ranked = sorted(importances.items(), key=lambda item: -item[1])
    figure = new_figure(_WIDTH, 110 + 26 * max(len(ranked), 1))
    axes = figure.add_subplot()
    axes.set_title("parameter importances (Optuna's default evaluator, normalized to sum to 1)", fontsize=10)
    if not ranked:
        axes.text(0.5, 0.5, note, ha="center", va="center", color=BAD, transform=axes.transAxes, wrap=True)
        axes.set_axis_off()
        return save_figure(figure, path)
    names, shares = [name for name, _ in ranked], [share for _, share in ranked]
    bars = axes.barh(range(len(ranked)), shares, color=BAR)
    axes.bar_label(bars, [f"{share:.2f}" for share in shares], padding=3)
    axes.set_yticks(range(len(ranked)), names)
    axes.invert_yaxis()
    axes.set_xlim(0, max(1.0, max(shares) * 1.15))
    return save_figure(figure, path)


def plot_tradeoff(points: list[tuple[float, float, int]], best: int | None, base: int | None, x_label: str,
                  y_label: str, path: Path, y_limits: tuple[float, float] | None = None) -> Path:
    """One dot per complete trial (x, y, trial number); the best trial and the base config marked."""
    figure = new_figure(_WIDTH, _HEIGHT)
    axes = figure.add_subplot()
    for label, color, size, chosen in (("trial", BAR, 30, [p for p in points if p[2] not in (best, base)]),
                                       ("base config", BASE, 70, [p for p in points if p[2] == base and p[2] != best]),
                                       ("best", BEST, 70, [p for p in points if p[2] == best])):
        if chosen:
            axes.scatter([p[0] for p in chosen], [p[1] for p in chosen], s=size, color=color, label=label, zorder=3)
    for x, y, number in points:
        axes.annotate(str(number), (x, y), xytext=(5, 4), textcoords="offset points", fontsize=7)
    if y_limits is not None:
        low, high = y_limits
        pad = (high - low) * 0.05
        axes.set_ylim(low - pad, high + pad)
    axes.set_title(f"{y_label} vs {x_label}")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(alpha=0.4)
    if points:
        axes.legend(loc="best")
    return save_figure(figure, path)
