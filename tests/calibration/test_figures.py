"""Plots through matplotlib: PNG files OpenCV reads back at the size asked for; a clear error without it."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.figures import PlottingUnavailable, new_figure, save_figure
from calibration.intrinsics import ViewError
from calibration.plots import plot_coverage, plot_undistorted, plot_view_errors


def test_a_figure_is_written_as_a_png_of_its_size_in_a_new_folder(tmp_path: Path) -> None:
    figure = new_figure(400, 300)
    figure.add_subplot().plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "made" / "line.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (300, 400, 3)
    assert image.min() < 128 < image.max()  # something drawn on white


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # what an install without it imports
    with pytest.raises(PlottingUnavailable, match=r"install the observe extra \(pip install -e '\.\[observe\]'\)"):
        new_figure(100, 100)


def test_an_unwritable_plot_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"file/x\.png: cannot write the plot"):
        save_figure(new_figure(100, 100), tmp_path / "file" / "x.png")


def test_calibration_plots_are_readable_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    views = [ViewError(f"view_{i:03d}.png", float(error), 54, np.zeros(3), np.zeros(3))
             for i, error in enumerate(rng.uniform(0.05, 0.4, 12))]
    errors = cv2.imread(str(plot_view_errors(views, 0.1, tmp_path / "errors.png")))
    assert errors is not None and errors.shape[0] > 12 * 20
    corners = [rng.uniform((100, 80), (500, 400), (54, 1, 2)).astype(np.float32) for _ in range(6)]
    coverage = cv2.imread(str(plot_coverage(corners, (640, 480), 0.5, tmp_path / "coverage.png")))
    assert coverage is not None and coverage.shape[0] > 480
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    side_by_side = cv2.imread(str(plot_undistorted(frame, frame, tmp_path / "undistorted.png")))
    assert side_by_side is not None and side_by_side.shape[1] >= 2 * 640 > side_by_side.shape[0]
