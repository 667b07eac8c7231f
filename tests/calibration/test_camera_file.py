"""Calibration files: both formats round trip, other tools' files are read, bad files are refused by key."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from calibration.camera_file import (
    CalibrationFileError,
    CameraCalibration,
    Extrinsics,
    file_format,
    read_calibration,
    write_opencv,
    write_ros,
)
from calibration.handeye import transform
from calibration.synthetic import example_camera


def _calibration(model: str = "pinhole") -> CameraCalibration:
    camera = example_camera(model, (640, 480))  # type: ignore[arg-type]
    camera.camera_name = "wrist_cam"
    camera.rms_px, camera.views, camera.board = 0.231, 17, "checkerboard:9x6:0.025"
    camera.calibrated_at = "2026-01-02T03:04:05+00:00"
    camera.extrinsics = Extrinsics(transform(np.array([0.1, -0.2, 0.3]), [0.5, -0.1, 0.8]), 12, 0.05, 0.0007)
    return camera


def _assert_same(a: CameraCalibration, b: CameraCalibration, *, metadata: bool) -> None:
    assert (a.model, a.size, a.camera_name) == (b.model, b.size, b.camera_name)
    assert np.array_equal(a.camera_matrix, b.camera_matrix)  # doubles written with every digit
    assert np.array_equal(a.dist_coeffs, b.dist_coeffs)
    assert np.array_equal(a.projection_matrix, b.projection_matrix)
    assert a.extrinsics is not None and b.extrinsics is not None
    assert np.array_equal(a.extrinsics.base_T_camera, b.extrinsics.base_T_camera)
    assert (a.extrinsics.views, a.extrinsics.rotation_residual_deg, a.extrinsics.translation_residual_m) == (
        b.extrinsics.views, b.extrinsics.rotation_residual_deg, b.extrinsics.translation_residual_m)
    if metadata:
        assert (a.rms_px, a.views, a.board, a.calibrated_at) == (b.rms_px, b.views, b.board, b.calibrated_at)


@pytest.mark.parametrize("model", ["pinhole", "fisheye"])
def test_opencv_filestorage_round_trips_and_opencv_reads_it(tmp_path: Path, model: str) -> None:
    written = _calibration(model)
    path = tmp_path / "camera.yaml"
    write_opencv(written, path)
    assert file_format(path) == "opencv"
    _assert_same(written, read_calibration(path), metadata=True)
    # OpenCV itself reads it, under the key names of its calibration sample.
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    assert np.array_equal(storage.getNode("camera_matrix").mat(), written.camera_matrix)
    assert storage.getNode("distortion_coefficients").mat().shape == (1, len(written.dist_coeffs))
    assert int(storage.getNode("image_width").real()) == 640
    assert storage.getNode("avg_reprojection_error").real() == pytest.approx(0.231)
    assert storage.getNode("distortion_model").string() == ("equidistant" if model == "fisheye" else "plumb_bob")
    assert storage.getNode("extrinsics").getNode("base_T_camera").mat().shape == (4, 4)
    storage.release()


@pytest.mark.parametrize(("model", "ros_model"), [("pinhole", "plumb_bob"), ("fisheye", "equidistant")])
def test_ros_camera_info_round_trips_in_ros_layout(tmp_path: Path, model: str, ros_model: str) -> None:
    written = _calibration(model)
    path = tmp_path / "camera_info.yaml"
    write_ros(written, path)
    assert file_format(path) == "ros"
    _assert_same(written, read_calibration(path), metadata=False)  # camera_info has no place for them
    data = yaml.safe_load(path.read_text())
    assert list(data)[:8] == ["image_width", "image_height", "camera_name", "camera_matrix", "distortion_model",
                              "distortion_coefficients", "rectification_matrix", "projection_matrix"]
    assert data["distortion_model"] == ros_model
    assert data["camera_matrix"]["rows"] == 3 and len(data["camera_matrix"]["data"]) == 9
    assert data["projection_matrix"]["cols"] == 4
    assert data["rectification_matrix"]["data"] == np.eye(3).ravel().tolist()
    assert data["extrinsics"]["base_T_camera"]["rows"] == 4  # the one extra key


def test_files_of_other_tools_are_read(tmp_path: Path) -> None:
    # OpenCV's calibration sample: no distortion_model (pinhole) and no projection matrix (computed), the
    # "%YAML:1.0" header of OpenCV 4.
    k = np.array([[600.0, 0, 320], [0, 600, 240], [0, 0, 1]])
    path = tmp_path / "sample.yml"
    path.write_text("%YAML:1.0\n---\nimage_width: 640\nimage_height: 480\n"
                    "camera_matrix: !!opencv-matrix\n   rows: 3\n   cols: 3\n   dt: d\n"
                    "   data: [ 600., 0., 320., 0., 600., 240., 0., 0., 1. ]\n"
                    "distortion_coefficients: !!opencv-matrix\n   rows: 5\n   cols: 1\n   dt: d\n"
                    "   data: [ -0.2, 0.05, 0., 0., 0. ]\navg_reprojection_error: 0.3\n")
    sample = read_calibration(path)
    assert sample.model == "pinhole" and np.array_equal(sample.camera_matrix, k) and sample.rms_px == 0.3
    assert sample.projection_matrix.shape == (3, 4) and sample.projection_matrix[0, 0] < 600  # zoomed in
    assert sample.extrinsics is None
    # A camera_info written by ROS's camera_calibration (no extrinsics, 3x3 identity rectification).
    ros = tmp_path / "ost.yaml"
    ros.write_text("image_width: 640\nimage_height: 480\ncamera_name: narrow_stereo\ncamera_matrix:\n  rows: 3\n"
                   "  cols: 3\n  data: [600, 0, 320, 0, 600, 240, 0, 0, 1]\ndistortion_model: plumb_bob\n"
                   "distortion_coefficients:\n  rows: 1\n  cols: 5\n  data: [-0.2, 0.05, 0, 0, 0]\n"
                   "rectification_matrix:\n  rows: 3\n  cols: 3\n  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]\n"
                   "projection_matrix:\n  rows: 3\n  cols: 4\n  data: [550, 0, 320, 0, 0, 550, 240, 0, 0, 0, 1, 0]\n")
    from_ros = read_calibration(ros)
    assert from_ros.camera_name == "narrow_stereo" and from_ros.projection_matrix[0, 0] == 550
    assert np.array_equal(from_ros.dist_coeffs, [-0.2, 0.05, 0, 0, 0])


def _ros_text(**changes: object) -> str:
    path_data = {
        "image_width": 640, "image_height": 480,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [600, 0, 320, 0, 600, 240, 0, 0, 1]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0, 0, 0, 0, 0]},
    }
    path_data.update(changes)
    return yaml.safe_dump({k: v for k, v in path_data.items() if v is not None})


@pytest.mark.parametrize(("text", "message"), [
    (_ros_text(image_width=None), "image_width: missing"),
    (_ros_text(image_height="480"), "image_height: expected an integer, got '480'"),
    (_ros_text(distortion_model="kannala"), "distortion_model: unknown 'kannala'"),
    (_ros_text(camera_matrix={"rows": 3, "cols": 3, "data": [1, 2, 3]}),
     "camera_matrix: data must be a list of rows x cols = 3x3 numbers"),
    (_ros_text(camera_matrix={"rows": 3, "cols": 3, "data": [0, 0, 320, 0, 600, 240, 0, 0, 1]}),
     "camera_matrix: expected a 3x3 [[fx 0 cx] [0 fy cy] [0 0 1]] with positive focal lengths"),
    (_ros_text(distortion_coefficients={"rows": 1, "cols": 3, "data": [0, 0, 0]}),
     "distortion_coefficients: the pinhole model takes 4 or 5 or 8 or 12 or 14 finite values"),
    (_ros_text(distortion_model="equidistant"), "distortion_coefficients: the fisheye model takes 4 finite values"),
    (_ros_text(extrinsics={"base_T_camera": {"rows": 4, "cols": 4, "data": [2.0] * 16}, "views": 3,
                           "rotation_residual_deg": 0.1, "translation_residual_m": 0.001}),
     "extrinsics.base_T_camera: expected a 4x4 rigid transform"),
    (_ros_text(extrinsics={"base_T_camera": {"rows": 4, "cols": 4, "data": np.eye(4).ravel().tolist()}}),
     "extrinsics.views: missing"),
    ("camera_matrix: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "not a camera calibration"),
])
def test_bad_camera_info_files_are_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CalibrationFileError, match=re.escape(message)) as error:
        read_calibration(path)
    assert str(error.value).startswith(f"{path}: ")


def test_bad_opencv_files_are_refused_naming_the_key(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    write_opencv(_calibration(), good)
    text = good.read_text()
    cases = {
        "missing.yaml": (re.sub(r"image_height: \d+\n", "", text), "image_height: missing"),
        "matrix.yaml": (text.replace("camera_matrix: !!opencv-matrix", "camera_matrix: [1, 2]\nx: !!opencv-matrix"),
                        "camera_matrix: expected an !!opencv-matrix"),
        "syntax.yaml": (text.replace("image_width: 640", "image_width: [640"), "not a valid OpenCV FileStorage YAML"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(CalibrationFileError, match=re.escape(message)) as error:
            read_calibration(path)
        assert str(error.value).startswith(f"{path}: ")
    with pytest.raises(CalibrationFileError, match="calibration file not found"):
        read_calibration(tmp_path / "absent.yaml")
