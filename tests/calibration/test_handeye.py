"""Hand-eye (eye-to-hand) calibration recovers a known camera pose; the poses file and its errors."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from calibration.boards import BoardDetector, BoardSpec
from calibration.camera_file import CameraCalibration
from calibration.extrinsics import calibrate_extrinsics, with_extrinsics
from calibration.handeye import HandEyeError, invert, rotation_angle_deg, solve_eye_to_hand, transform
from calibration.images import ImageError
from calibration.poses import PosesFileError, RobotView, read_poses, write_poses
from calibration.synthetic import HandEyeScene, Renderer, example_camera, handeye_scene

BOARD = "charuco:7x5:0.04:0.03:DICT_5X5_100"


@pytest.fixture(scope="module")
def scene() -> tuple[CameraCalibration, BoardSpec, HandEyeScene]:
    camera, spec = example_camera("pinhole", (640, 480)), BoardSpec.parse(BOARD)
    return camera, spec, handeye_scene(camera, spec, 12, np.random.default_rng(7))


def _errors(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(rotation error in degrees, translation error in metres) between two 4x4 poses."""
    return rotation_angle_deg(found[:3, :3].T @ truth[:3, :3]), float(np.linalg.norm(found[:3, 3] - truth[:3, 3]))


def _board_poses(scene: HandEyeScene) -> list[np.ndarray]:
    return [transform(p.rvec, p.tvec) for p in scene.camera_T_board]


def test_exact_poses_give_the_camera_pose_exactly(scene: tuple[CameraCalibration, BoardSpec, HandEyeScene]) -> None:
    _, _, truth = scene
    result = solve_eye_to_hand(truth.base_T_gripper, _board_poses(truth))
    rotation_deg, translation_m = _errors(result.base_T_camera, truth.base_T_camera)
    assert rotation_deg < 0.5 and translation_m < 0.002  # the bounds; in fact exact to rounding:
    assert rotation_deg < 1e-4 and translation_m < 1e-9
    assert np.allclose(result.gripper_T_board, truth.gripper_T_board, atol=1e-9)
    assert result.translation_rms_m < 1e-9 and result.rotation_rms_deg < 1e-4


def test_noisy_board_poses_still_give_the_camera_pose_closely(
        scene: tuple[CameraCalibration, BoardSpec, HandEyeScene]) -> None:
    _, _, truth = scene
    rng = np.random.default_rng(0)
    noisy = [transform(cv2.Rodrigues(b[:3, :3])[0].ravel() + rng.normal(0, np.radians(0.1), 3),
                       b[:3, 3] + rng.normal(0, 0.0005, 3)) for b in _board_poses(truth)]
    result = solve_eye_to_hand(truth.base_T_gripper, noisy)
    rotation_deg, translation_m = _errors(result.base_T_camera, truth.base_T_camera)
    assert rotation_deg < 0.5 and translation_m < 0.005
    # The residuals report the disagreement the noise causes.
    assert 0.0002 < result.translation_rms_m < 0.005 and 0.02 < result.rotation_rms_deg < 0.5


def test_rotations_about_one_axis_only_are_refused(scene: tuple[CameraCalibration, BoardSpec, HandEyeScene]) -> None:
    _, _, truth = scene
    grippers = [transform(np.array([0.0, 0.0, a]), [0.4, 0.1 * a, 0.3]) for a in (0.0, 0.3, 0.6, 0.9)]
    boards = [invert(truth.base_T_camera) @ g @ truth.gripper_T_board for g in grippers]
    with pytest.raises(HandEyeError, match="about one axis only"):
        solve_eye_to_hand(grippers, boards)
    with pytest.raises(HandEyeError, match="at least 3 are needed"):
        solve_eye_to_hand(grippers[:2], boards[:2])


def test_from_images_and_a_poses_file_to_the_calibration_file(
        tmp_path: Path, scene: tuple[CameraCalibration, BoardSpec, HandEyeScene]) -> None:
    camera, spec, truth = scene
    renderer, rng = Renderer(camera, spec), np.random.default_rng(1)
    views = []
    for index, (pose, gripper) in enumerate(zip(truth.camera_T_board, truth.base_T_gripper, strict=True)):
        path = tmp_path / f"view_{index:02d}.png"
        cv2.imwrite(str(path), renderer.render(pose.rvec, pose.tvec, noise=1.0, rng=rng))
        views.append(RobotView(path, gripper))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((480, 640, 3), 90, np.uint8))
    views.append(RobotView(tmp_path / "blank.png", truth.base_T_gripper[0]))  # no board in it: skipped
    write_poses(views, tmp_path / "poses.yaml")
    result = calibrate_extrinsics(camera, BoardDetector(spec), read_poses(tmp_path / "poses.yaml"))
    assert len(result.names) == 12 and [name for name, _ in result.rejected] == ["blank.png"]
    rotation_deg, translation_m = _errors(result.handeye.base_T_camera, truth.base_T_camera)
    assert rotation_deg < 0.5 and translation_m < 0.002
    updated = with_extrinsics(camera, result)
    assert updated.extrinsics is not None and updated.extrinsics.views == 12
    assert np.array_equal(updated.extrinsics.base_T_camera, result.handeye.base_T_camera)
    # Images from another camera (or resolution) are refused by name.
    cv2.imwrite(str(tmp_path / "small.png"), np.zeros((240, 320, 3), np.uint8))
    with pytest.raises(ImageError, match=re.escape(f"{tmp_path / 'small.png'}: 320x240 pixels, but the camera was "
                                                   "calibrated at 640x480")):
        calibrate_extrinsics(camera, BoardDetector(spec), [RobotView(tmp_path / "small.png", np.eye(4))])


@pytest.mark.parametrize("board", ["checkerboard:7x7:0.03", "checkerboard:8x6:0.03"])
def test_checkerboards_without_a_unique_orientation_are_refused(board: str) -> None:
    with pytest.raises(HandEyeError, match=re.escape(f"board {board}: a checkerboard whose inner-corner counts are "
                                                     "both even or both odd has no unique orientation")):
        calibrate_extrinsics(example_camera("pinhole", (640, 480)), BoardDetector(BoardSpec.parse(board)), [])


def test_quaternion_and_matrix_poses_are_the_same_pose(tmp_path: Path) -> None:
    angle = np.radians(30)
    path = tmp_path / "poses.yaml"
    path.write_text(f"""views:
  - image: a.png
    xyz: [0.4, 0.0, 0.3]
    quat_xyzw: [0.0, {np.sin(angle / 2)}, 0.0, {np.cos(angle / 2)}]
  - image: /abs/b.png
    base_T_gripper: {transform(np.array([0.0, angle, 0.0]), [0.4, 0.0, 0.3]).tolist()}
""")
    a, b = read_poses(path)
    assert a.image == tmp_path / "a.png" and b.image == Path("/abs/b.png")
    assert np.allclose(a.base_T_gripper, b.base_T_gripper, atol=1e-12)


@pytest.mark.parametrize(("text", "message"), [
    ("views: []\n", "expected a mapping with a non-empty list 'views'"),
    ("views:\n  - {base_T_gripper: [1]}\n", "views[0]: expected a mapping with 'image'"),
    ("views:\n  - {image: a.png}\n", "views[0]: needs base_T_gripper (4x4) or both xyz and quat_xyzw"),
    ("views:\n  - {image: a.png, xyz: [0, 0], quat_xyzw: [0, 0, 0, 1]}\n", "views[0].xyz: expected 3 finite numbers"),
    ("views:\n  - {image: a.png, xyz: [0, 0, 0], quat_xyzw: [0, 0, 0, 2]}\n",
     "views[0].quat_xyzw: not a unit quaternion (norm 2.0000)"),
    ("views:\n  - {image: a.png, base_T_gripper: [[2,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]}\n",
     "views[0].base_T_gripper: not a rigid transform"),
    ("views: [1, 2\n", "not valid YAML or JSON"),
])
def test_bad_poses_files_are_refused_naming_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "poses.yaml"
    path.write_text(text)
    with pytest.raises(PosesFileError, match=re.escape(message)) as error:
        read_poses(path)
    assert str(error.value).startswith(f"{path}: ")


def test_a_binary_poses_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "poses.yaml"
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PosesFileError, match=re.escape(f"{path}: not a text file (byte 0 is not UTF-8)")):
        read_poses(path)
