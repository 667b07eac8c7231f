"""Hand-eye calibration of a fixed camera (eye-to-hand): the camera's pose in the robot base frame.

The camera stands still and watches a board that the robot holds (the board rigidly fixed to the gripper or
flange, anywhere on it). For each view i the robot reports base_T_gripper_i and the camera sees
camera_T_board_i; two unknowns hold for every view:

    base_T_camera @ camera_T_board_i == base_T_gripper_i @ gripper_T_board

Notation: a_T_b maps points in frame b to frame a (the pose of b in a). Between two views i and j this
gives A X = X B with A = G_j G_i^-1, B = C_j C_i^-1 and X = base_T_camera, solved in closed form as in
Park & Martin (1994), the method cv2.calibrateHandEye calls CALIB_HAND_EYE_PARK: the rotation from all
pairs' rotation axes (an orthogonal Procrustes fit), then the translation by linear least squares. OpenCV
5's Python bindings no longer expose calibrateHandEye, so it is solved here with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# The robot's motions must rotate about at least two clearly different axes, or the rotation about the
# common axis (and part of the translation) is undetermined.
_MIN_AXIS_SPREAD = 1e-3
MIN_VIEWS = 3


class HandEyeError(ValueError):
    """Poses that cannot determine the camera's pose; the text says what is missing."""


@dataclass
class HandEyeResult:
    base_T_camera: np.ndarray  # (4, 4)
    gripper_T_board: np.ndarray  # (4, 4): where the board sits on the gripper, solved along the way
    rotation_errors_deg: np.ndarray  # per view: disagreement between the camera's and the robot's board pose
    translation_errors_m: np.ndarray

    @property
    def rotation_rms_deg(self) -> float:
        return float(np.sqrt(np.mean(self.rotation_errors_deg**2)))

    @property
    def translation_rms_m(self) -> float:
        return float(np.sqrt(np.mean(self.translation_errors_m**2)))


def transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """A 4x4 rigid transform from a 3x3 rotation (or a rotation vector) and a translation."""
    out = np.eye(4)
    rotation = np.asarray(rotation, dtype=np.float64)
    out[:3, :3] = cv2.Rodrigues(rotation.reshape(3, 1))[0] if rotation.size == 3 else rotation
    out[:3, 3] = np.asarray(translation, dtype=np.float64).ravel()
    return out


def invert(t: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = t[:3, :3].T
    out[:3, 3] = -t[:3, :3].T @ t[:3, 3]
    return out


def rotation_angle_deg(rotation: np.ndarray) -> float:
    cos = (np.trace(rotation) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def _nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(matrix)
    return u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt


def _rotation_vector(rotation: np.ndarray) -> np.ndarray:
    return np.asarray(cv2.Rodrigues(np.ascontiguousarray(rotation))[0], dtype=np.float64).ravel()


def solve_eye_to_hand(base_T_gripper: Sequence[np.ndarray], camera_T_board: Sequence[np.ndarray]) -> HandEyeResult:
    """base_T_camera from n >= 3 paired poses (4x4 each) of the gripper and of the board it holds."""
    grippers = [np.asarray(g, dtype=np.float64) for g in base_T_gripper]
    boards = [np.asarray(c, dtype=np.float64) for c in camera_T_board]
    if len(grippers) != len(boards):
        raise HandEyeError(f"{len(grippers)} robot poses but {len(boards)} board poses")
    if len(grippers) < MIN_VIEWS:
        raise HandEyeError(f"{len(grippers)} usable views; at least {MIN_VIEWS} are needed (10-20 are better)")
    pairs = [(grippers[j] @ invert(grippers[i]), boards[j] @ invert(boards[i]))
             for i in range(len(grippers)) for j in range(i + 1, len(grippers))]
    # Rotation: R_A = R_X R_B R_X^T, so each pair's rotation vector alpha = R_X beta.
    alphas = np.array([_rotation_vector(a[:3, :3]) for a, _ in pairs])
    betas = np.array([_rotation_vector(b[:3, :3]) for _, b in pairs])
    u, singular, vt = np.linalg.svd(alphas.T @ betas)
    if singular[1] < _MIN_AXIS_SPREAD * max(singular[0], 1e-12):
        raise HandEyeError("the robot poses rotate the board about one axis only; include rotations about at "
                           "least two different axes (tilt the gripper as well as turning it)")
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    # Translation: (R_A - I) t_X = R_X t_B - t_A, stacked over all pairs.
    lhs = np.concatenate([a[:3, :3] - np.eye(3) for a, _ in pairs])
    rhs = np.concatenate([rotation @ b[:3, 3] - a[:3, 3] for a, b in pairs])
    translation, _residual, rank, _sv = np.linalg.lstsq(lhs, rhs, rcond=None)
    if rank < 3:
        raise HandEyeError("the robot poses do not determine the camera's position; rotate the gripper about "
                           "different axes between views")
    base_T_camera = transform(rotation, translation)
    # The board on the gripper: every view's estimate, averaged.
    estimates = [invert(g) @ base_T_camera @ c for g, c in zip(grippers, boards, strict=True)]
    gripper_T_board = transform(_nearest_rotation(np.mean([e[:3, :3] for e in estimates], axis=0)),
                                np.mean([e[:3, 3] for e in estimates], axis=0))
    errors = [invert(g @ gripper_T_board) @ base_T_camera @ c for g, c in zip(grippers, boards, strict=True)]
    return HandEyeResult(base_T_camera, gripper_T_board,
                         np.array([rotation_angle_deg(e[:3, :3]) for e in errors]),
                         np.array([float(np.linalg.norm(e[:3, 3])) for e in errors]))
