"""Intrinsics recovered from rendered views of known cameras, within stated tolerances.

Tolerances: focal lengths within 0.5 %, principal point within 2 px, and the recovered distortion puts every
detected corner's ray within 0.3 px of where the true distortion puts it (both with the true camera matrix).
Distortion coefficients trade off against each other, so the distortion is compared by what it does; k1, p1
and p2 of the pinhole model are also compared directly.
"""

from __future__ import annotations

import numpy as np
import pytest
from rendered_views import Views

from calibration.boards import BoardDetector, Detection
from calibration.camera_file import CameraCalibration
from calibration.coverage import Coverage
from calibration.intrinsics import MIN_VIEWS, BoardView, CalibrationError, IntrinsicsResult, calibrate_intrinsics
from calibration.lens import LensModel, project_points
from calibration.synthetic import pixel_rays


def _calibrate(views: Views, model: LensModel) -> tuple[IntrinsicsResult, list[BoardView]]:
    detector = BoardDetector(views.spec)
    found = [(i, detector.detect(image)) for i, image in enumerate(views.images)]
    board_views = [BoardView(f"view_{i}", d) for i, d in found if isinstance(d, Detection)]
    assert len(board_views) >= len(views.images) - 2
    return calibrate_intrinsics(board_views, views.spec, views.truth.size, model), board_views


def _distortion_error_px(truth: CameraCalibration, found: CameraCalibration, pixels: np.ndarray) -> float:
    """Largest distance, at the true pixels, between the true lens distortion and the recovered one (both with
    the true camera matrix, so that focal length and principal point errors do not count twice)."""
    x, y = pixel_rays(truth, pixels[:, 0], pixels[:, 1])
    rays = np.column_stack([x, y, np.ones_like(x)])
    projected = project_points(found.model, truth.camera_matrix, found.dist_coeffs, rays, np.zeros(3), np.zeros(3))
    return float(np.linalg.norm(projected - pixels, axis=1).max())


def _assert_close(truth: CameraCalibration, found: CameraCalibration, views: list[BoardView]) -> None:
    k, k_true = found.camera_matrix, truth.camera_matrix
    assert k[0, 0] == pytest.approx(k_true[0, 0], rel=0.005)
    assert k[1, 1] == pytest.approx(k_true[1, 1], rel=0.005)
    assert abs(k[0, 2] - k_true[0, 2]) < 2.0 and abs(k[1, 2] - k_true[1, 2]) < 2.0
    corners = np.concatenate([v.detection.corners for v in views]).astype(np.float64)
    assert _distortion_error_px(truth, found, corners) < 0.3


def test_pinhole_checkerboard(pinhole_views: Views) -> None:
    result, views = _calibrate(pinhole_views, "pinhole")
    found = result.calibration
    _assert_close(pinhole_views.truth, found, views)
    assert found.dist_coeffs[0] == pytest.approx(pinhole_views.truth.dist_coeffs[0], abs=0.01)  # k1
    assert np.allclose(found.dist_coeffs[2:4], pinhole_views.truth.dist_coeffs[2:4], atol=5e-4)  # p1 p2
    assert found.rms_px is not None and found.rms_px < 0.15
    assert (found.model, found.views, found.board, found.size) == ("pinhole", len(views), str(pinhole_views.spec),
                                                                    (640, 480))


def test_fisheye_checkerboard(fisheye_views: Views) -> None:
    result, views = _calibrate(fisheye_views, "fisheye")
    assert len(result.calibration.dist_coeffs) == 4
    _assert_close(fisheye_views.truth, result.calibration, views)
    assert result.calibration.rms_px is not None and result.calibration.rms_px < 0.15


def test_pinhole_charuco(charuco_views: Views) -> None:
    result, views = _calibrate(charuco_views, "pinhole")
    _assert_close(charuco_views.truth, result.calibration, views)


def test_per_view_errors_and_coverage_describe_the_fit(pinhole_views: Views) -> None:
    result, views = _calibrate(pinhole_views, "pinhole")
    assert [v.name for v in result.views] == [v.name for v in views]
    assert result.corners == sum(len(v.detection.ids) for v in views) == sum(v.corners for v in result.views)
    errors = np.array([v.rms_px for v in result.views])
    # The overall RMS is over all corners: the views' RMS combined by corner count.
    combined = np.sqrt(np.sum(errors**2 * [v.corners for v in result.views]) / result.corners)
    assert result.calibration.rms_px == pytest.approx(combined)
    assert np.all(errors > 0) and np.all(errors < 0.3)
    coverage = Coverage((640, 480))
    for view in views:
        coverage.add(view.detection.corners)
    assert result.coverage == pytest.approx(coverage.fraction) and 0.2 < result.coverage < 1.0
    # The poses are the boards' (camera_T_board): the first view's matches the pose it was rendered at.
    first = int(views[0].name.removeprefix("view_"))
    assert np.allclose(result.views[0].tvec, pinhole_views.poses[first].tvec, atol=2e-3)


def test_too_few_views_are_refused(pinhole_views: Views) -> None:
    _, views = _calibrate(pinhole_views, "pinhole")
    with pytest.raises(CalibrationError, match=f"3 usable board views; at least {MIN_VIEWS} are needed"):
        calibrate_intrinsics(views[:3], pinhole_views.spec, (640, 480), "pinhole")


def test_coverage_counts_area_once_and_new_cells() -> None:
    coverage = Coverage((640, 480))
    square = np.array([[0, 0], [319, 0], [319, 239], [0, 239]], np.float64)  # the top-left quarter
    assert coverage.new_cells(square) == 12  # of the 8 x 6 grid
    coverage.add(square)
    assert coverage.fraction == pytest.approx(0.25, abs=0.01)
    assert coverage.new_cells(square) == 0
    coverage.add(square)
    assert coverage.fraction == pytest.approx(0.25, abs=0.01)
    half = np.array([[0, 0], [639, 0], [639, 239], [0, 239]], np.float64)  # the top half: 12 more cells
    assert coverage.new_cells(half) == 12
