"""Calibration plots as PNG, drawn with OpenCV (no plotting library needed on the robot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from calibration.intrinsics import ViewError

_FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 40, 40)  # BGR, shared by every plot drawn with these helpers
_GRID = (215, 215, 215)
_BAR = (190, 120, 40)  # BGR
_BAD = (50, 50, 210)
_MARK = (40, 160, 40)


def draw_text(canvas: np.ndarray, text: str, at: tuple[int, int], scale: float = 0.45,
              color: tuple[int, int, int] = INK, thickness: int = 1) -> None:
    """Anti-aliased label with its baseline starting at `at` (x, y in pixels)."""
    cv2.putText(canvas, text, at, _FONT, scale, color, thickness, cv2.LINE_AA)


def write_png(path: Path, canvas: np.ndarray) -> Path:
    """Write a plot, creating its folder; OSError naming the file if OpenCV cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), canvas):
        raise OSError(f"{path}: cannot write the plot")
    return path


def plot_view_errors(views: Sequence[ViewError], rms_px: float, path: Path) -> Path:
    """Horizontal bars: each view's reprojection RMS, the overall RMS as a vertical line."""
    label_w, bar_w, row_h, top = 220, 520, 20, 50
    canvas = np.full((top + row_h * len(views) + 45, label_w + bar_w + 40, 3), 255, np.uint8)
    largest = max(max(v.rms_px for v in views), rms_px) * 1.1
    step = _nice_step(largest / 5)
    x0 = label_w
    for i in range(int(largest / step) + 1):
        x = x0 + round(i * step / largest * bar_w)
        cv2.line(canvas, (x, top - 5), (x, top + row_h * len(views)), _GRID, 1)
        draw_text(canvas, f"{i * step:.2g}", (x - 8, top + row_h * len(views) + 18), 0.4)
    for row, view in enumerate(views):
        y = top + row * row_h
        name = view.name if len(view.name) <= 28 else "..." + view.name[-25:]
        draw_text(canvas, name, (8, y + 14), 0.4)
        color = _BAD if view.rms_px > 3 * rms_px else _BAR
        cv2.rectangle(canvas, (x0, y + 3), (x0 + max(1, round(view.rms_px / largest * bar_w)), y + row_h - 3),
                      color, -1)
    x = x0 + round(rms_px / largest * bar_w)
    cv2.line(canvas, (x, top - 8), (x, top + row_h * len(views)), _MARK, 2)
    draw_text(canvas, f"reprojection error per view (px); overall RMS {rms_px:.3f} px", (8, 22), 0.5, thickness=1)
    draw_text(canvas, "px", (x0 + bar_w + 10, top + row_h * len(views) + 18), 0.4)
    return write_png(path, canvas)


def _nice_step(raw: float) -> float:
    magnitude = 10 ** np.floor(np.log10(raw))
    return float(min((m * magnitude for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw)))


def plot_coverage(corners: Sequence[np.ndarray], size: tuple[int, int], coverage: float, path: Path) -> Path:
    """A heatmap of where the detected corners fell (corners per cell of a 32 x 24 grid, smoothed), every
    view's board outline, and every corner as a dot."""
    width, height = size
    scale = min(1.0, 960 / width)
    out_w, out_h = round(width * scale), round(height * scale)
    points = np.concatenate([np.asarray(c, np.float64).reshape(-1, 2) for c in corners]) * scale
    cells = np.zeros((24, 32), np.float32)
    cols = np.clip((points[:, 0] / out_w * 32).astype(int), 0, 31)
    rows = np.clip((points[:, 1] / out_h * 24).astype(int), 0, 23)
    np.add.at(cells, (rows, cols), 1.0)
    density = cv2.GaussianBlur(cells, (0, 0), 0.8)
    level = (255 * density / max(float(density.max()), 1e-9)).astype(np.uint8)
    heat = cv2.applyColorMap(cv2.resize(level, (out_w, out_h), interpolation=cv2.INTER_LINEAR), cv2.COLORMAP_VIRIDIS)
    heat[cv2.resize(level, (out_w, out_h), interpolation=cv2.INTER_NEAREST) == 0] = (245, 245, 245)
    for view in corners:
        hull = cv2.convexHull(np.round(np.asarray(view).reshape(-1, 2) * scale).astype(np.int32))
        cv2.polylines(heat, [hull], True, (255, 255, 255), 1, cv2.LINE_AA)
    for x, y in points:
        cv2.circle(heat, (round(x), round(y)), 1, (0, 0, 0), -1)
    canvas = np.full((out_h + 34, out_w, 3), 255, np.uint8)
    canvas[34:] = heat
    draw_text(canvas, f"detected corners: {len(points)} in {len(corners)} views; image area covered {coverage:.0%}",
          (8, 22), 0.5)
    return write_png(path, canvas)


def plot_undistorted(original: np.ndarray, undistorted: np.ndarray, path: Path) -> Path:
    """The original frame and the undistorted one side by side, with a grid to judge straight lines by."""
    height, width = original.shape[:2]
    scale = min(1.0, 640 / width)
    size = (round(width * scale), round(height * scale))
    panels = []
    for image, title in ((original, "original"), (undistorted, "undistorted")):
        panel = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        panel = cv2.cvtColor(panel, cv2.COLOR_GRAY2BGR) if panel.ndim == 2 else panel.copy()
        for x in np.linspace(0, size[0] - 1, 9)[1:-1]:
            cv2.line(panel, (round(x), 0), (round(x), size[1] - 1), (0, 200, 255), 1)
        for y in np.linspace(0, size[1] - 1, 7)[1:-1]:
            cv2.line(panel, (0, round(y)), (size[0] - 1, round(y)), (0, 200, 255), 1)
        header = np.full((30, size[0], 3), 255, np.uint8)
        draw_text(header, title, (8, 20), 0.55)
        panels.append(np.vstack([header, panel]))
    gap = np.full((panels[0].shape[0], 10, 3), 255, np.uint8)
    return write_png(path, np.hstack([panels[0], gap, panels[1]]))
