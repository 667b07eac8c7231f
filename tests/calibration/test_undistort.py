"""Undistortion: a distorted rendering, undistorted, matches the same scene rendered by a distortion-free camera."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from rendered_views import Views

from calibration.boards import BoardDetector, Detection
from calibration.camera_file import CameraCalibration, write_opencv, write_ros
from calibration.lens import project_points
from calibration.synthetic import Renderer
from calibration.undistort import FrameSizeError, Undistorter
from perception.manifest import ImageSpec
from perception.preprocess import Preprocessor


def _ideal(truth: CameraCalibration) -> CameraCalibration:
    """The camera the undistorted image is from: the projection matrix, no distortion."""
    matrix = truth.projection_matrix[:, :3]
    return CameraCalibration.create("pinhole", truth.size, matrix, np.zeros(5))


@pytest.mark.parametrize("fixture", ["pinhole_views", "fisheye_views"])
def test_undistorting_matches_a_distortion_free_rendering(fixture: str, request: pytest.FixtureRequest) -> None:
    views: Views = request.getfixturevalue(fixture)
    undistort = Undistorter(views.truth)
    ideal = _ideal(views.truth)
    expected_renderer = Renderer(ideal, views.spec)
    pose = views.poses[3]
    distorted = views.renderer.render(pose.rvec, pose.tvec)  # noise-free, to compare pixel values
    undistorted = undistort(distorted)
    expected = expected_renderer.render(pose.rvec, pose.tvec)
    difference = np.abs(undistorted.astype(np.int16) - expected.astype(np.int16))[..., 0]
    # Interpolation softens the squares' edges a little; everywhere else the images agree exactly.
    assert difference.mean() < 1.0, difference.mean()  # 10-20 without undistortion
    assert np.percentile(difference, 95) <= 3
    # Geometry: the corners in the undistorted image are where the ideal camera projects them.
    found = BoardDetector(views.spec).detect(undistorted)
    assert isinstance(found, Detection)
    projected = project_points("pinhole", ideal.camera_matrix, ideal.dist_coeffs,
                               views.spec.object_points()[found.ids], pose.rvec, pose.tvec)
    assert np.abs(found.corners - projected).max() < 0.25
    # The projection matrix was chosen so that no output pixel falls outside the camera's image.
    assert (undistort(np.full_like(distorted, 255)) > 0).mean() > 0.995


def test_frames_of_another_size_are_refused_naming_the_file_and_both_sizes(tmp_path: Path,
                                                                            pinhole_views: Views) -> None:
    path = tmp_path / "camera.yaml"
    write_opencv(pinhole_views.truth, path)
    undistort = Undistorter.from_file(path)
    message = re.escape(f"{path}: the camera was calibrated at 640x480 pixels but this image is 1280x720")
    with pytest.raises(FrameSizeError, match=message):
        undistort(np.zeros((720, 1280, 3), np.uint8))


def test_both_file_formats_give_the_same_maps(tmp_path: Path, pinhole_views: Views) -> None:
    write_opencv(pinhole_views.truth, tmp_path / "a.yaml")
    write_ros(pinhole_views.truth, tmp_path / "b.yaml")
    frame = pinhole_views.images[0]
    a = Undistorter.from_file(tmp_path / "a.yaml")(frame).copy()
    assert np.array_equal(a, Undistorter.from_file(tmp_path / "b.yaml")(frame))


def test_the_output_buffer_is_reused_and_preprocessing_undistorts_first(pinhole_views: Views) -> None:
    undistort = Undistorter(pinhole_views.truth)
    first = undistort(pinhole_views.images[0])
    assert undistort(pinhole_views.images[1]) is first  # no allocation per frame
    spec = ImageSpec(height=120, width=160, channel_order="RGB", layout="NCHW", scale=1 / 255, mean=[0.5] * 3,
                     std=[0.25] * 3)
    plain, calibrated = Preprocessor(spec), Preprocessor(spec, undistort=Undistorter(pinhole_views.truth))
    frames = np.stack(pinhole_views.images[:3])
    expected = np.stack([plain(undistort(f)).copy() for f in frames])
    assert np.array_equal(calibrated(frames[0]), expected[0])
    assert np.array_equal(calibrated(frames), expected)  # a batch: every frame its own undistorted view
    with pytest.raises(FrameSizeError):
        calibrated(cv2.resize(frames[0], (320, 240)))
