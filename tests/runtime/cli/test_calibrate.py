"""`edgeloop calibrate`: end to end on rendered board images, a recorded video, and hand-eye views."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from calibration.camera_file import file_format, read_calibration
from calibration.handeye import rotation_angle_deg
from runtime.cli.app import app

BOARD = "checkerboard:9x6:0.025"
CHARUCO = "charuco:7x5:0.04:0.03:DICT_5X5_100"


def _unboxed(output: str) -> str:
    """Usage errors come in a box, wrapped: the text alone, on one line."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["calibrate", *args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def views(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """15 rendered views of the checkerboard through a known pinhole camera (truth.yaml)."""
    folder = tmp_path_factory.mktemp("views")
    code, output = _invoke("synthesize", "--board", BOARD, "--out", str(folder), "--views", "15", "--seed", "3")
    assert code == 0, output
    return folder


def test_intrinsics_from_a_folder_writes_both_files_the_plots_and_the_report(tmp_path: Path, views: Path) -> None:
    out, ros, plots = tmp_path / "camera.yaml", tmp_path / "camera_info.yaml", tmp_path / "plots"
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(views), "--out", str(out),
                           "--ros-out", str(ros), "--plots", str(plots), "--camera-name", "front", "--json")
    assert code == 0, output
    report = json.loads(output.strip().splitlines()[-1])
    truth = read_calibration(views / "truth.yaml")
    for path, fmt in ((out, "opencv"), (ros, "ros")):
        found = read_calibration(path)
        assert file_format(path) == fmt and found.camera_name == "front" and found.size == (640, 480)
        assert np.allclose(np.diag(found.camera_matrix)[:2], np.diag(truth.camera_matrix)[:2], rtol=0.01)
    assert report["kind"] == "intrinsics" and report["rms_px"] < 0.2 and report["views_used"] >= 13
    assert report["views_used"] + report["views_rejected"] == 15
    assert {v["name"] for v in report["views"]} <= {f"view_{i:03d}.png" for i in range(15)}
    assert 0 < report["coverage"] <= 1 and report["files"]["opencv"] == str(out)
    assert json.loads((plots / "report.json").read_text())["rms_px"] == report["rms_px"]
    for name, min_height in (("errors.png", 13 * 20), ("coverage.png", 480), ("undistorted.png", 480)):
        image = cv2.imread(str(plots / name))
        assert image is not None and image.shape[0] > min_height, name
    side_by_side = cv2.imread(str(plots / "undistorted.png"))
    assert side_by_side.shape[1] >= 2 * 640 and side_by_side.shape[1] > side_by_side.shape[0]
    # Without --json: a short text summary.
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(views / "view_00*.png"),
                           "--out", str(tmp_path / "again.yaml"))
    assert code == 0, output
    assert re.search(r"pinhole model, 640x480: fx \d+\.\d+ fy", output)
    assert re.search(r"RMS reprojection error 0\.\d+ px over \d+ views", output)


def test_fisheye_model(tmp_path: Path) -> None:
    folder = tmp_path / "fisheye"
    code, output = _invoke("synthesize", "--board", BOARD, "--out", str(folder), "--model", "fisheye",
                           "--views", "12", "--seed", "5")
    assert code == 0, output
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(folder), "--model", "fisheye",
                           "--out", str(tmp_path / "camera.yaml"), "--ros-out", str(tmp_path / "info.yaml"))
    assert code == 0, output
    assert yaml.safe_load((tmp_path / "info.yaml").read_text())["distortion_model"] == "equidistant"
    found, truth = read_calibration(tmp_path / "camera.yaml"), read_calibration(folder / "truth.yaml")
    assert found.model == "fisheye" and abs(found.camera_matrix[0, 0] / truth.camera_matrix[0, 0] - 1) < 0.01


def test_capture_mode_from_a_recorded_video(tmp_path: Path, views: Path) -> None:
    """A real MJPG video through the runtime's file: source: frames without the board, repeated frames and
    board views; capture keeps the useful ones and stops when it has enough."""
    video = tmp_path / "sweep.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    assert writer.isOpened()
    empty = np.full((480, 640, 3), 120, np.uint8)
    for index in range(15):
        image = cv2.imread(str(views / f"view_{index:03d}.png"))
        for frame in (empty, image, image):
            writer.write(frame)
    writer.release()
    frames = tmp_path / "kept"
    code, output = _invoke("intrinsics", "--board", BOARD, "--source", f"file:{video}", "--min-frames", "8",
                           "--max-frames", "12", "--coverage", "0.3", "--out", str(tmp_path / "camera.yaml"),
                           "--frames-out", str(frames), "--json")
    assert code == 0, output
    assert re.search(r"capture: enough frames; kept (\d+) of (\d+) frames, coverage \d+%", output)
    report = json.loads(output.strip().splitlines()[-1])
    kept = sorted(frames.glob("frame_*.png"))
    assert 8 <= report["views_used"] == len(kept) <= 12 and report["coverage"] >= 0.3
    # The frames without the board and the repeats are counted by reason (live frames have no names).
    by_reason = report["rejected_by_reason"]
    assert by_reason["blurred"] >= 1 and by_reason["nothing_new"] >= 1  # a flat grey frame has no sharpness
    assert report["views_rejected"] == sum(by_reason.values()) and report["rejected"] == []
    truth = read_calibration(views / "truth.yaml")
    found = read_calibration(tmp_path / "camera.yaml")
    assert abs(found.camera_matrix[0, 0] / truth.camera_matrix[0, 0] - 1) < 0.02
    # A short recording ends before there is enough: capture stops and calibrates what it kept.
    short = tmp_path / "short.avi"
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    for index in range(6):
        writer.write(cv2.imread(str(views / f"view_{index:03d}.png")))
    writer.release()
    code, output = _invoke("intrinsics", "--board", BOARD, "--source", f"file:{short}", "--out",
                           str(tmp_path / "short.yaml"))
    assert code == 0, output
    assert "capture: the source ended; kept" in output and "warning: only" in output


def test_extrinsics_from_robot_poses_go_into_the_same_file_in_either_format(tmp_path: Path) -> None:
    folder = tmp_path / "handeye"
    code, output = _invoke("synthesize", "--board", CHARUCO, "--out", str(folder), "--views", "12", "--handeye",
                           "--seed", "2")
    assert code == 0, output
    camera, ros = tmp_path / "camera.yaml", tmp_path / "camera_info.yaml"
    code, output = _invoke("intrinsics", "--board", CHARUCO, "--images", str(folder), "--out", str(camera),
                           "--ros-out", str(ros))
    assert code == 0, output
    truth = read_calibration(folder / "truth.yaml").extrinsics
    assert truth is not None
    for path, fmt in ((camera, "opencv"), (ros, "ros")):
        code, output = _invoke("extrinsics", "--board", CHARUCO, "--camera", str(path), "--poses",
                               str(folder / "poses.yaml"), "--json")
        assert code == 0, output
        report = json.loads(output.strip().splitlines()[-1])
        assert report["kind"] == "extrinsics" and report["views_used"] == 12
        found = read_calibration(path)
        assert file_format(path) == fmt and found.extrinsics is not None and found.extrinsics.views == 12
        transform = found.extrinsics.base_T_camera
        assert np.linalg.norm(transform[:3, 3] - truth.base_T_camera[:3, 3]) < 0.005  # intrinsics estimated
        assert rotation_angle_deg(transform[:3, :3].T @ truth.base_T_camera[:3, :3]) < 0.5
        # The intrinsics are kept (a ROS file has no field for the RMS error).
        assert np.allclose(found.camera_matrix, read_calibration(camera).camera_matrix, rtol=1e-6)
        assert found.rms_px is None if fmt == "ros" else found.rms_px is not None and found.rms_px < 0.3


def test_board_command_writes_a_printable_board(tmp_path: Path) -> None:
    code, output = _invoke("board", "--board", BOARD, "--out", str(tmp_path / "board.png"), "--dpi", "100")
    assert code == 0, output
    image = cv2.imread(str(tmp_path / "board.png"), cv2.IMREAD_GRAYSCALE)
    square = round(0.025 / 0.0254 * 100)  # pixels per square at 100 dpi
    assert image.shape == (9 * square, 12 * square)  # 10 x 7 squares and one square of margin around
    assert "with 25 mm squares" in output


def test_bad_input_is_refused_with_the_file_or_option_named(tmp_path: Path, views: Path) -> None:
    code, output = _invoke("intrinsics", "--board", "checkerboard:9x6", "--images", str(views))
    assert code == 2 and "Invalid value for --board: board 'checkerboard:9x6': expected checkerboard:COLSxROWS" \
        in _unboxed(output)
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(views), "--source", "images:x")
    assert code == 2 and "give either --images or --source" in _unboxed(output)
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(tmp_path))
    assert code == 2 and "no image files" in output and str(tmp_path) in output
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(broken))
    assert code == 2 and f"{broken / 'a.png'}: cannot read the image" in output
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "a.png"), cv2.imread(str(views / "view_000.png")))
    cv2.imwrite(str(mixed / "b.png"), np.zeros((240, 320, 3), np.uint8))
    code, output = _invoke("intrinsics", "--board", BOARD, "--images", str(mixed))
    assert code == 2 and f"{mixed / 'b.png'}: 320x240 pixels, but the other images are 640x480" in output
    code, output = _invoke("intrinsics", "--board", BOARD, "--source", f"file:{tmp_path / 'none.mp4'}")
    assert code == 2 and "no such video file" in output
    code, output = _invoke("extrinsics", "--board", BOARD, "--camera", str(views / "truth.yaml"), "--poses",
                           str(tmp_path / "none.yaml"))
    assert code == 2 and "cannot read the poses file" in output
    code, output = _invoke("board", "--board", BOARD, "--out", str(tmp_path / "board"))
    assert code == 2 and f"{tmp_path / 'board'}: cannot write an image there" in output


def test_the_commands_default_to_the_detectors_sharpness_threshold() -> None:
    # The CLI keeps cv2 out of `edgeloop` start-up, so it repeats the default instead of importing it.
    from calibration.boards import DEFAULT_MIN_SHARPNESS
    from runtime.cli.calibrate import extrinsics_command, intrinsics_command

    for command in (intrinsics_command, extrinsics_command):
        assert inspect.signature(command).parameters["min_sharpness"].default == DEFAULT_MIN_SHARPNESS
