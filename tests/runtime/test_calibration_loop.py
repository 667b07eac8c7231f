"""`calibration.camera` in the run config: the loop undistorts what it encodes, and refuses other sizes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_loop import GOAL, MANIFEST, SimControllerThread, loop_config
from typer.testing import CliRunner

from calibration.camera_file import Extrinsics, write_ros
from calibration.poses import quaternion_matrix
from calibration.synthetic import example_camera
from calibration.undistort import FrameSizeError, Undistorter
from perception.manifest import load_manifest
from planning.world_model import WorldModel
from runtime.cli.app import app
from runtime.config import ConfigError, load_config
from runtime.loop import ControlLoop
from runtime.recording import iter_messages


def _calibration(tmp_path: Path, size: tuple[int, int]) -> Path:
    """A calibration with strong barrel distortion at `size` (the sim camera is 64x64), in ROS format."""
    path = tmp_path / f"camera_{size[0]}x{size[1]}.yaml"
    write_ros(example_camera("pinhole", size), path)
    return path


def test_the_key_is_validated_and_kept_in_the_resolved_config(tmp_path: Path) -> None:
    assert load_config(None).calibration.camera is None
    path = _calibration(tmp_path, (64, 64))
    assert load_config(None, [f"calibration.camera={path}"]).calibration.camera == path
    with pytest.raises(ConfigError, match=r"calibration\.file: unknown key"):
        load_config(None, [f"calibration.file={path}"])


def test_a_calibrated_loop_encodes_undistorted_views(tmp_path: Path) -> None:
    controller = SimControllerThread()
    try:
        camera = _calibration(tmp_path, (64, 64))
        loop = ControlLoop(loop_config(controller.endpoints, tmp_path, f"calibration.camera={camera}"))
        loop.run(duration_s=1.5)
        summary = loop.close()
    finally:
        controller.stop()
    assert summary["counters"]["commands"] > 5
    assert summary["config"]["calibration"]["camera"] == str(camera)
    # The goal view went through the same undistortion as the frames: its latent is the plain model's
    # latent of the undistorted goal image, and differs from that of the raw one.
    plain = WorldModel(load_manifest(MANIFEST))
    goal = cv2.imread(str(GOAL), cv2.IMREAD_COLOR)
    assert loop.planner.goal is not None and loop.planner.goal.visual is not None
    undistorted = plain.encode_goal_image(Undistorter.from_file(camera)(goal))
    assert np.allclose(loop.planner.goal.visual, undistorted, atol=1e-5)
    assert not np.allclose(loop.planner.goal.visual, plain.encode_goal_image(goal), atol=1e-3)


def test_frames_of_another_size_than_calibrated_are_refused_at_the_first_frame(tmp_path: Path) -> None:
    controller = SimControllerThread()
    try:
        camera = _calibration(tmp_path, (80, 60))
        # A joint-state goal: nothing is encoded until the first frame arrives.
        loop = ControlLoop(loop_config(controller.endpoints, tmp_path, f"calibration.camera={camera}",
                                       "goal.image=null", "goal.state=[0.5, -0.5]"))
        try:
            with pytest.raises(FrameSizeError, match=re.escape(
                    f"{camera}: the camera was calibrated at 80x60 pixels but this image is 64x64")):
                loop.run(duration_s=10.0)
            assert loop.telemetry.counters["commands"] == 0
        finally:
            loop.close()
    finally:
        controller.stop()


def test_edgeloop_run_refuses_a_calibration_of_another_size(tmp_path: Path) -> None:
    """The goal image (64x64) is encoded at start: the run stops there with the reason, exit status 2."""
    camera = _calibration(tmp_path, (640, 480))
    result = CliRunner().invoke(app, ["run", "--config", "configs/demo.yaml", "--set", f"calibration.camera={camera}",
                                      "--set", "link.goal_endpoint=tcp://127.0.0.1:*",
                                      "--set", f"runs_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 2
    # Named: the config key and goal image that could not be used, then the calibration file and both sizes.
    assert (f"error: goal.image: {GOAL.relative_to(GOAL.parents[3])}: {camera}: the camera was calibrated at 640x480 "
            "pixels but this image is 64x64") in result.output.replace("\n", "")
    broken = tmp_path / "broken.yaml"
    broken.write_text("image_width: 64\n")
    result = CliRunner().invoke(app, ["run", "--config", "configs/demo.yaml", "--set", f"calibration.camera={broken}",
                                      "--set", "link.goal_endpoint=tcp://127.0.0.1:*"])
    assert result.exit_code == 2 and f"error: {broken}: image_height: missing" in result.output


def test_a_recorded_run_places_the_camera_where_its_extrinsics_say(tmp_path: Path) -> None:
    """`/camera/transform` in the recording: the calibration's base_T_camera as a foxglove.FrameTransform."""
    base_T_camera = np.eye(4)
    base_T_camera[:3, :3] = cv2.Rodrigues(np.array([0.3, -1.2, 0.4]))[0]
    base_T_camera[:3, 3] = [0.6, 0.05, 0.9]
    camera = tmp_path / "camera.yaml"
    write_ros(replace(example_camera("pinhole", (64, 64)), extrinsics=Extrinsics(base_T_camera, 12, 0.2, 0.001)),
              camera)
    controller = SimControllerThread()
    try:
        loop = ControlLoop(loop_config(controller.endpoints, tmp_path, f"calibration.camera={camera}", "record=true"))
        loop.run(duration_s=0.5)
        summary = loop.close()
    finally:
        controller.stop()
    transforms = [payload for _topic, _seq, _stamp, payload
                  in iter_messages(Path(summary["run_dir"]) / "run.mcap", ["/camera/transform"])]
    assert len(transforms) == 1
    transform = transforms[0]
    assert (transform["parent_frame_id"], transform["child_frame_id"]) == ("base", "camera")
    rotation = transform["rotation"]
    np.testing.assert_allclose(quaternion_matrix(np.array([rotation[k] for k in "xyzw"])), base_T_camera[:3, :3],
                               atol=1e-6)
    np.testing.assert_allclose([transform["translation"][k] for k in "xyz"], base_T_camera[:3, 3])
