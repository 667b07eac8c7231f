"""Extrinsic calibration: board images taken at known robot poses -> the camera's pose in the base frame."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from calibration.boards import BoardDetector, Detection, Rejection
from calibration.camera_file import CameraCalibration, Extrinsics
from calibration.handeye import HandEyeError, HandEyeResult, solve_eye_to_hand, transform
from calibration.images import ImageError, read_image
from calibration.lens import board_pose
from calibration.poses import RobotView


@dataclass
class ExtrinsicsResult:
    handeye: HandEyeResult
    names: list[str]  # the views used, in the order of the hand-eye errors
    rejected: list[tuple[str, Rejection]]


def calibrate_extrinsics(calibration: CameraCalibration, detector: BoardDetector, views: Sequence[RobotView],
                         progress: Callable[[int], None] | None = None) -> ExtrinsicsResult:
    """Find the board in each view's image, its pose with the calibration's intrinsics, and solve hand-eye."""
    spec = detector.spec
    if spec.kind == "checkerboard" and spec.cols % 2 == spec.rows % 2:
        # Such a pattern looks the same turned by 180 degrees (90 if square): its corners would be numbered
        # from either end depending on the view, and the board's pose would jump between views.
        raise HandEyeError(f"board {spec}: a checkerboard whose inner-corner counts are both even or both odd "
                           "has no unique orientation; use one with an odd and an even count (e.g. 9x6) or a "
                           "ChArUco board")
    board = spec.object_points()
    grippers, boards, names, rejected = [], [], [], []
    for done, view in enumerate(views, start=1):
        image = read_image(view.image)
        if (image.shape[1], image.shape[0]) != calibration.size:
            raise ImageError(f"{view.image}: {image.shape[1]}x{image.shape[0]} pixels, but the camera was calibrated "
                             f"at {calibration.size[0]}x{calibration.size[1]}")
        found = detector.detect(image)
        if isinstance(found, Detection):
            rvec, tvec = board_pose(calibration.model, calibration.camera_matrix, calibration.dist_coeffs,
                                    board[found.ids], found.corners)
            grippers.append(view.base_T_gripper)
            boards.append(transform(rvec, tvec))
            names.append(view.image.name)
        else:
            rejected.append((view.image.name, found))
        if progress is not None:
            progress(done)
    return ExtrinsicsResult(solve_eye_to_hand(grippers, boards), names, rejected)


def with_extrinsics(calibration: CameraCalibration, result: ExtrinsicsResult) -> CameraCalibration:
    """The calibration with the hand-eye result as its extrinsics."""
    handeye = result.handeye
    return dataclasses.replace(calibration, extrinsics=Extrinsics(
        handeye.base_T_camera, len(result.names), handeye.rotation_rms_deg, handeye.translation_rms_m))
