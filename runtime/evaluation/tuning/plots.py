"""The study's plots as PNG, drawn with OpenCV (matplotlib is not a runtime dependency).

history.png: each trial's objective value and the best so far; importance.png: how much each searched key
explains the objective (Optuna's default importance evaluator); tradeoff.png: a quality metric against plan ms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from calibration.plots import INK, draw_text, write_png

_GRID = (220, 220, 220)
_DOT = (190, 120, 40)  # BGR
_BEST = (40, 160, 40)
_FAIL = (50, 50, 210)
_BASE = (0, 140, 255)
_WIDTH, _HEIGHT = 760, 460
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 30, 50, 80


def _ticks(low: float, high: float, integer: bool = False, count: int = 5) -> list[tuple[float, str]]:
    """Round tick values in [low, high] and labels with as many decimals as the step needs."""
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = min((m * magnitude for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    step = max(step, 1.0) if integer else step
    decimals = max(0, -math.floor(math.log10(step)))
    values = [t for t in np.arange(math.ceil(low / step) * step, high + step / 2, step) if low <= t <= high]
    return [(float(t), f"{t:.{decimals}f}") for t in values]


class _Axes:
    """Data coordinates -> pixels on a white canvas with a grid, tick labels, axis titles and a title."""

    def __init__(self, title: str, x_label: str, y_label: str, xs: Sequence[float], ys: Sequence[float],
                 integer_x: bool = False, y_limits: tuple[float, float] | None = None) -> None:
        self.canvas = np.full((_HEIGHT, _WIDTH, 3), 255, np.uint8)
        self.x_range = self._padded(xs)
        self.y_range = self._padded(list(y_limits) if y_limits else ys)
        for x, label in _ticks(*self.x_range, integer=integer_x):
            px = self.px(x, self.y_range[0])[0]
            cv2.line(self.canvas, (px, _TOP), (px, _HEIGHT - _BOTTOM), _GRID, 1)
            draw_text(self.canvas, label, (px - 12, _HEIGHT - _BOTTOM + 18))
        for y, label in _ticks(*self.y_range):
            py = self.px(self.x_range[0], y)[1]
            cv2.line(self.canvas, (_LEFT, py), (_WIDTH - _RIGHT, py), _GRID, 1)
            draw_text(self.canvas, label, (8, py + 4))
        cv2.rectangle(self.canvas, (_LEFT, _TOP), (_WIDTH - _RIGHT, _HEIGHT - _BOTTOM), INK, 1)
        draw_text(self.canvas, title, (_LEFT, 22), 0.55)
        draw_text(self.canvas, x_label, (_LEFT + (_WIDTH - _LEFT - _RIGHT) // 2 - 40, _HEIGHT - _BOTTOM + 42), 0.45)
        draw_text(self.canvas, y_label, (8, _TOP - 10), 0.45)

    @staticmethod
    def _padded(values: Sequence[float]) -> tuple[float, float]:
        finite = [v for v in values if math.isfinite(v)] or [0.0]
        low, high = min(finite), max(finite)
        pad = (high - low) * 0.08 or max(abs(low) * 0.1, 1.0)
        return low - pad, high + pad

    def px(self, x: float, y: float) -> tuple[int, int]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        width, height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
        return round(_LEFT + (x - x0) / (x1 - x0) * width), round(_HEIGHT - _BOTTOM - (y - y0) / (y1 - y0) * height)

    def legend(self, entries: list[tuple[str, tuple[int, int, int]]]) -> None:
        """One row under the x axis, clear of the data."""
        x, y = _LEFT, _HEIGHT - 10
        for label, color in entries:
            cv2.circle(self.canvas, (x, y - 4), 4, color, -1, cv2.LINE_AA)
            draw_text(self.canvas, label, (x + 10, y), 0.4)
            x += 30 + 8 * len(label)


def plot_history(numbers: list[int], values: list[float | None], base: int | None, maximize: bool,
                 value_name: str, path: Path) -> Path:
    """Each complete trial's value (dots), failed trials (red marks on the floor), and the best so far (line)."""
    done = [(n, v) for n, v in zip(numbers, values, strict=True) if v is not None]
    axes = _Axes(f"optimization history ({'higher' if maximize else 'lower'} is better)", "trial", value_name,
                 numbers or [0], [v for _, v in done] or [0.0], integer_x=True)
    best: list[tuple[int, int]] = []
    current: float | None = None
    for number, value in done:
        current = value if current is None or (value > current if maximize else value < current) else current
        best.append(axes.px(number, current))
    if len(best) > 1:
        steps = [best[0]]
        for point in best[1:]:
            steps += [(point[0], steps[-1][1]), point]
        cv2.polylines(axes.canvas, [np.asarray(steps, np.int32)], False, _BEST, 2, cv2.LINE_AA)
    for number, value in done:
        cv2.circle(axes.canvas, axes.px(number, value), 5, _BASE if number == base else _DOT, -1, cv2.LINE_AA)
    for number, maybe in zip(numbers, values, strict=True):
        if maybe is None:
            x = axes.px(number, axes.y_range[0])[0]
            cv2.drawMarker(axes.canvas, (x, _HEIGHT - _BOTTOM - 8), _FAIL, cv2.MARKER_TILTED_CROSS, 10, 2)
    axes.legend([("trial", _DOT), ("base config", _BASE), ("best so far", _BEST), ("failed", _FAIL)])
    return write_png(path, axes.canvas)


def plot_importances(importances: dict[str, float], note: str, path: Path) -> Path:
    """Horizontal bars, most important first; `note` says why there are none when the study is too small."""
    label_w, bar_w, row_h, top = 300, 400, 24, 50
    canvas = np.full((top + row_h * max(len(importances), 1) + 30, label_w + bar_w + 70, 3), 255, np.uint8)
    draw_text(canvas, "parameter importances (Optuna's default evaluator, normalized to sum to 1)", (8, 28), 0.5)
    if not importances:
        draw_text(canvas, note, (8, top + 16), 0.45, _FAIL)
    for row, (name, share) in enumerate(sorted(importances.items(), key=lambda item: -item[1])):
        y = top + row * row_h
        draw_text(canvas, name, (8, y + 16), 0.42)
        cv2.rectangle(canvas, (label_w, y + 4), (label_w + max(1, round(share * bar_w)), y + row_h - 4), _DOT, -1)
        draw_text(canvas, f"{share:.2f}", (label_w + round(share * bar_w) + 6, y + 16), 0.4)
    return write_png(path, canvas)


def plot_tradeoff(points: list[tuple[float, float, int]], best: int | None, base: int | None, x_label: str,
                  y_label: str, path: Path, y_limits: tuple[float, float] | None = None) -> Path:
    """One dot per complete trial (x, y, trial number); the best trial and the base config marked."""
    axes = _Axes(f"{y_label} vs {x_label}", x_label, y_label, [p[0] for p in points] or [0.0],
                 [p[1] for p in points] or [0.0], y_limits=y_limits)
    for x, y, number in points:
        color = _BEST if number == best else _BASE if number == base else _DOT
        cv2.circle(axes.canvas, axes.px(x, y), 7 if number in (best, base) else 5, color, -1, cv2.LINE_AA)
        draw_text(axes.canvas, str(number), (axes.px(x, y)[0] + 7, axes.px(x, y)[1] - 5), 0.35)
    axes.legend([("trial", _DOT), ("base config", _BASE), ("best", _BEST)])
    return write_png(path, axes.canvas)
