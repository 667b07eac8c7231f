"""Calibration plots as PNG, drawn with matplotlib (the `observe` extra; calibration/figures.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from calibration.figures import BAD, BAR, BEST, new_figure, save_figure
from calibration.intrinsics import ViewError


def plot_view_errors(views: Sequence[ViewError], rms_px: float, path: Path) -> Path:
    """Horizontal bars: each view's reprojection RMS (red over 3x the overall RMS), the overall RMS as a line."""
    figure = new_figure(780, 110 + 20 * len(views))
    axes = figure.add_subplot()
    names = [view.name if len(view.name) <= 28 else "..." + view.name[-25:] for view in views]
    rows = np.arange(len(views))
    axes.barh(rows, [view.rms_px for view in views], color=[BAD if v.rms_px > 3 * rms_px else BAR for v in views])
    axes.axvline(rms_px, color=BEST, linewidth=2, label=f"overall RMS {rms_px:.3f} px")
    axes.set_yticks(rows, names, fontsize=8)
    axes.invert_yaxis()  # the first view on top
    axes.set_xlabel("reprojection error (px)")
    axes.set_title("reprojection error per view")
    axes.grid(axis="x", alpha=0.4)
    axes.legend(loc="lower right")
    return save_figure(figure, path)


def plot_coverage(corners: Sequence[np.ndarray], size: tuple[int, int], coverage: float, path: Path) -> Path:
    """A heatmap of where the detected corners fell (corners per cell of a 32 x 24 grid, smoothed), every
    view's board outline, and every corner as a dot, in image pixels."""
    width, height = size
    points = np.concatenate([np.asarray(c, np.float64).reshape(-1, 2) for c in corners])
    cells = np.zeros((24, 32), np.float32)
    cols = np.clip((points[:, 0] / width * 32).astype(int), 0, 31)
    rows = np.clip((points[:, 1] / height * 24).astype(int), 0, 23)
    np.add.at(cells, (rows, cols), 1.0)
    smoothed = cv2.GaussianBlur(cells, (0, 0), 0.8)
    density = np.ma.masked_less(smoothed, 0.01 * max(float(smoothed.max()), 1e-9))  # empty cells stay grey
    scale = min(1.0, 960 / width)
    figure = new_figure(round(width * scale) + 140, round(height * scale) + 90)
    axes = figure.add_subplot()
    image = axes.imshow(density, extent=(0, width, height, 0), cmap="viridis", interpolation="bilinear")
    for view in corners:
        hull = cv2.convexHull(np.asarray(view, np.float32).reshape(-1, 2)).reshape(-1, 2)
        closed = np.vstack([hull, hull[:1]])
        axes.plot(closed[:, 0], closed[:, 1], color="white", linewidth=0.8)
    axes.scatter(points[:, 0], points[:, 1], s=1, color="black")
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.set_aspect("equal")
    axes.set_facecolor("whitesmoke")
    axes.set_title(f"detected corners: {len(points)} in {len(corners)} views; image area covered {coverage:.0%}")
    figure.colorbar(image, ax=axes, label="corners per cell (smoothed)", shrink=0.8)
    return save_figure(figure, path)


def plot_undistorted(original: np.ndarray, undistorted: np.ndarray, path: Path) -> Path:
    """The original frame and the undistorted one side by side, with a grid to judge straight lines by."""
    height, width = original.shape[:2]
    scale = min(1.0, 640 / width)
    figure = new_figure(2 * round(width * scale) + 40, round(height * scale) + 60)
    for column, (image, title) in enumerate(((original, "original"), (undistorted, "undistorted"))):
        axes = figure.add_subplot(1, 2, column + 1)
        axes.imshow(cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if image.ndim == 2 else cv2.COLOR_BGR2RGB))
        for x in np.linspace(0, width - 1, 9)[1:-1]:
            axes.axvline(x, color="orange", linewidth=0.8)
        for y in np.linspace(0, height - 1, 7)[1:-1]:
            axes.axhline(y, color="orange", linewidth=0.8)
        axes.set_title(title)
        axes.set_axis_off()
    return save_figure(figure, path)
