"""The two camera models, pinhole (radial k1 k2 k3 + tangential p1 p2) and fisheye (equidistant k1-k4), behind
one set of functions so callers never branch on the model."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

LensModel = Literal["pinhole", "fisheye"]


def project_points(model: LensModel, camera_matrix: np.ndarray, dist_coeffs: np.ndarray, object_points: np.ndarray,
                   rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """Pixel positions (n, 2) of board-frame points (n, 3) seen from the pose (rvec, tvec)."""
    points = np.asarray(object_points, dtype=np.float64).reshape(-1, 1, 3)
    rvec, tvec = np.asarray(rvec, np.float64).reshape(3, 1), np.asarray(tvec, np.float64).reshape(3, 1)
    if model == "fisheye":
        pixels, _ = cv2.fisheye.projectPoints(points, rvec, tvec, camera_matrix, dist_coeffs)
    else:
        pixels, _ = cv2.projectPoints(points, rvec, tvec, camera_matrix, dist_coeffs)
    return np.asarray(pixels).reshape(-1, 2)


def board_pose(model: LensModel, camera_matrix: np.ndarray, dist_coeffs: np.ndarray, object_points: np.ndarray,
               pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The board's pose in the camera frame (rvec, tvec: camera_T_board) from its corners' pixels."""
    objects = np.asarray(object_points, dtype=np.float64).reshape(-1, 1, 3)
    points = np.asarray(pixels, dtype=np.float64).reshape(-1, 1, 2)
    if model == "fisheye":
        # solvePnP knows only the pinhole model: solve on the undistorted normalized coordinates instead.
        points = np.asarray(cv2.fisheye.undistortPoints(points, camera_matrix, dist_coeffs), dtype=np.float64)
        camera_matrix, dist_coeffs = np.eye(3), np.zeros(4)
    ok, rvec, tvec = cv2.solvePnP(objects, points, camera_matrix, dist_coeffs, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no board pose")
    return rvec.reshape(3), tvec.reshape(3)


def rectified_camera_matrix(model: LensModel, camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
                            size: tuple[int, int]) -> np.ndarray:
    """The camera matrix of the undistorted image (size: width, height): scaled so that every output pixel
    sees the scene (no black borders), as ROS's camera_calibration chooses its projection matrix."""
    if model == "fisheye":
        matrix = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(
            camera_matrix, dist_coeffs, size, np.eye(3), balance=0.0)
    else:
        matrix, _roi = cv2.getOptimalNewCameraMatrix(camera_matrix, dist_coeffs, size, 0.0, size)
    return np.asarray(matrix, dtype=np.float64)


def undistort_maps(model: LensModel, camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
                   rectified_matrix: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """remap() maps from the undistorted image (camera matrix `rectified_matrix`) into the camera's image,
    in the fixed-point form remap is fastest with."""
    if model == "fisheye":
        map1, map2 = cv2.fisheye.initUndistortRectifyMap(camera_matrix, dist_coeffs, np.eye(3), rectified_matrix,
                                                         size, cv2.CV_16SC2)
    else:
        map1, map2 = cv2.initUndistortRectifyMap(camera_matrix, dist_coeffs, np.eye(3), rectified_matrix, size,
                                                 cv2.CV_16SC2)
    return map1, map2
