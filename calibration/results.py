"""A calibration run's results on disk: the calibration files (OpenCV and ROS), plots and the JSON report.

`edgeloop calibrate intrinsics | extrinsics` call these after finding the board (docs/calibration.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from calibration.boards import BoardDetector, BoardSpec, Rejection
from calibration.camera_file import file_format, read_calibration, write_calibration, write_opencv, write_ros
from calibration.extrinsics import calibrate_extrinsics, with_extrinsics
from calibration.intrinsics import BoardView, IntrinsicsResult, calibrate_intrinsics
from calibration.lens import LensModel
from calibration.plots import plot_coverage, plot_undistorted, plot_view_errors
from calibration.poses import read_poses
from calibration.report import extrinsics_report, intrinsics_report
from calibration.undistort import Undistorter


@dataclass
class IntrinsicsOutputs:
    out: Path  # the calibration file (OpenCV FileStorage YAML)
    ros_out: Path | None = None  # also a ROS camera_info YAML
    plots: Path | None = None  # a folder for errors.png, coverage.png, undistorted.png and report.json
    report: Path | None = None  # the report (JSON)


def sample_view(result: IntrinsicsResult, corners: Mapping[str, np.ndarray]) -> str:
    """The view whose corners reach farthest from the image centre: it shows the distortion best."""
    centre = np.asarray(result.calibration.size, np.float64) / 2
    return max(corners, key=lambda name: float(np.linalg.norm(corners[name] - centre, axis=1).max()))


def calibrate_and_write_intrinsics(views: Sequence[BoardView], spec: BoardSpec, size: tuple[int, int],
                                   model: LensModel, camera_name: str, rejected: Sequence[tuple[str, Rejection]],
                                   rejected_frames: Mapping[str, int], image_of: Callable[[str], np.ndarray],
                                   outputs: IntrinsicsOutputs) -> dict[str, Any]:
    """Calibrate from the views, write every output asked for; returns the report, with the files written."""
    result = calibrate_intrinsics(views, spec, size, model, camera_name)
    summary = intrinsics_report(result, rejected, dict(rejected_frames))
    write_opencv(result.calibration, outputs.out)
    written: dict[str, Any] = {"opencv": str(outputs.out)}
    if outputs.ros_out is not None:
        write_ros(result.calibration, outputs.ros_out)
        written["ros"] = str(outputs.ros_out)
    if outputs.plots is not None:
        original = image_of(sample_view(result, {v.name: v.detection.corners for v in views}))
        undistorted = Undistorter(result.calibration, str(outputs.out))(original)
        written["plots"] = [str(p) for p in (
            plot_view_errors(result.views, summary["rms_px"], outputs.plots / "errors.png"),
            plot_coverage([v.detection.corners for v in views], size, result.coverage,
                          outputs.plots / "coverage.png"),
            plot_undistorted(original, undistorted, outputs.plots / "undistorted.png"),
        )]
    summary["files"] = written
    reports = [outputs.report] if outputs.report is not None else []
    _write_json(summary, reports + ([outputs.plots / "report.json"] if outputs.plots is not None else []))
    return summary


def calibrate_and_write_extrinsics(camera: Path, poses: Path, detector: BoardDetector, *, ros_out: Path | None = None,
                                   report: Path | None = None,
                                   progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Hand-eye calibration from a poses file; the extrinsics are written into the camera's file (its own format).
    `progress(done, total)` is called as images are searched; returns the report, with the files written."""
    calibration = read_calibration(camera)
    views = read_poses(poses)
    result = calibrate_extrinsics(calibration, detector, views,
                                  None if progress is None else lambda done: progress(done, len(views)))
    updated = with_extrinsics(calibration, result)
    write_calibration(updated, camera, file_format(camera))
    summary = extrinsics_report(result.handeye, result.rejected, result.names)
    summary["files"] = {"calibration": str(camera)}
    if ros_out is not None:
        write_ros(updated, ros_out)
        summary["files"]["ros"] = str(ros_out)
    _write_json(summary, [report] if report is not None else [])
    return summary


def _write_json(report: dict[str, Any], paths: Sequence[Path]) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2))
