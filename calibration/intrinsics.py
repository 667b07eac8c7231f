"""Intrinsic calibration from board views: pinhole (k1 k2 p1 p2 k3) or fisheye (k1-k4), with per-view errors."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.boards import BoardSpec, Detection
from calibration.camera_file import CameraCalibration
from calibration.coverage import Coverage
from calibration.lens import LensModel, project_points

# Fewer views than this cannot separate focal length, principal point and distortion at all.
MIN_VIEWS = 4
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-9)


class CalibrationError(ValueError):
    """Calibration that cannot be done with what was given (too few views, solver failure)."""


@dataclass
class BoardView:
    """One accepted image: its name (file name or frame number) and the board found in it."""

    name: str
    detection: Detection


@dataclass
class ViewError:
    name: str
    rms_px: float  # reprojection RMS of this view's corners
    corners: int
    rvec: np.ndarray  # board pose in the camera frame (camera_T_board)
    tvec: np.ndarray


@dataclass
class IntrinsicsResult:
    calibration: CameraCalibration
    views: list[ViewError]
    coverage: float  # share of the image area inside at least one view's board outline
    corners: int  # all corners used


def _fisheye_flag(name: str) -> int:
    # OpenCV 4 keeps the fisheye flags in cv2.fisheye with their own values; OpenCV 5 merged them into cv2.
    return int(getattr(cv2.fisheye, name, None) or getattr(cv2, name))


def calibrate_intrinsics(views: Sequence[BoardView], spec: BoardSpec, size: tuple[int, int], model: LensModel,
                         camera_name: str = "camera") -> IntrinsicsResult:
    """Solve K and distortion from board views of one camera at `size` (width, height)."""
    if len(views) < MIN_VIEWS:
        raise CalibrationError(f"{len(views)} usable board views; at least {MIN_VIEWS} are needed "
                               "(15-30 from varied angles and positions are better)")
    board = spec.object_points()
    objects = [board[v.detection.ids].astype(np.float64) for v in views]
    images = [v.detection.corners.astype(np.float64) for v in views]
    try:
        if model == "fisheye":
            flags = _fisheye_flag("CALIB_RECOMPUTE_EXTRINSIC") | _fisheye_flag("CALIB_FIX_SKEW")
            _, camera_matrix, dist, rvecs, tvecs = cv2.fisheye.calibrate(
                [o.reshape(1, -1, 3) for o in objects], [i.reshape(1, -1, 2) for i in images], size,
                np.eye(3), np.zeros(4), flags=flags, criteria=_CRITERIA)
        else:
            _, camera_matrix, dist, rvecs, tvecs = cv2.calibrateCamera(
                [o.astype(np.float32) for o in objects], [i.astype(np.float32) for i in images], size,
                None, None, criteria=_CRITERIA)
    except cv2.error as exc:
        raise CalibrationError(f"the {model} calibration did not converge ({str(exc).strip().splitlines()[-1]}); "
                               "use more views, with the board tilted and near the image edges") from exc
    dist = np.asarray(dist, dtype=np.float64).ravel()
    errors, squared, count = [], 0.0, 0
    for view, obj, img, rvec, tvec in zip(views, objects, images, rvecs, tvecs, strict=True):
        residuals = img - project_points(model, camera_matrix, dist, obj, rvec, tvec)
        sq = float(np.sum(residuals**2))
        squared += sq
        count += len(img)
        errors.append(ViewError(view.name, float(np.sqrt(sq / len(img))), len(img), np.asarray(rvec).ravel(),
                                np.asarray(tvec).ravel()))
    coverage = Coverage(size)
    for image in images:
        coverage.add(image)
    calibration = CameraCalibration.create(
        model, size, camera_matrix, dist, camera_name=camera_name, rms_px=float(np.sqrt(squared / count)),
        views=len(views), board=str(spec),
        calibrated_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return IntrinsicsResult(calibration, errors, coverage.fraction, count)
