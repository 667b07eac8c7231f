"""Undistortion of camera frames: maps computed once from a calibration, one remap per frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calibration.camera_file import CameraCalibration, read_calibration
from calibration.lens import undistort_maps


class FrameSizeError(ValueError):
    """A frame whose size is not the one the camera was calibrated at."""


class Undistorter:
    """Callable frame -> undistorted frame, as seen by a distortion-free camera with the calibration's
    projection matrix (no black borders).

    The result is written into a buffer that the next call overwrites (copy it to keep it). A frame of another
    size than the calibration's raises FrameSizeError naming the calibration file and both sizes: a
    calibration holds for one resolution only.
    """

    def __init__(self, calibration: CameraCalibration, origin: str = "calibration") -> None:
        self.calibration = calibration
        self.origin = origin
        self.size = calibration.size
        self._map1, self._map2 = undistort_maps(calibration.model, calibration.camera_matrix,
                                                calibration.dist_coeffs, calibration.projection_matrix[:, :3],
                                                self.size)
        self._out = np.empty((self.size[1], self.size[0], 3), dtype=np.uint8)  # frames are BGR uint8

    @classmethod
    def from_file(cls, path: str | Path) -> Undistorter:
        """From either calibration file format; CalibrationFileError names the file and key if unusable."""
        return cls(read_calibration(path), str(path))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        if (width, height) != self.size:
            raise FrameSizeError(
                f"{self.origin}: the camera was calibrated at {self.size[0]}x{self.size[1]} pixels but this image is "
                f"{width}x{height}: frames (and goal images) must come from the calibrated camera at its calibrated "
                f"resolution; calibrate at {width}x{height} or set the camera to {self.size[0]}x{self.size[1]}")
        if self._out.shape != frame.shape or self._out.dtype != frame.dtype:  # grey or other-depth images
            self._out = np.empty_like(frame)
        cv2.remap(frame, self._map1, self._map2, cv2.INTER_LINEAR, dst=self._out, borderMode=cv2.BORDER_CONSTANT)
        return self._out
