"""Camera calibration files: the CameraCalibration record and its two YAML formats.

- OpenCV FileStorage YAML (`cv2.FileStorage`; the key names of OpenCV's calibration sample: `image_width`,
  `camera_matrix`, `distortion_coefficients`, `avg_reprojection_error`, ...), plus `distortion_model`,
  `projection_matrix` and `extrinsics`.
- ROS camera_info YAML (camera_calibration_parsers' layout: `camera_matrix: {rows, cols, data}`, ...), plus one
  extra top-level key, `extrinsics`, that ROS tools ignore.

Both hold the same `extrinsics` mapping: `base_T_camera` (4x4, maps points in the camera frame to the robot
base frame), `views`, `rotation_residual_deg`, `translation_residual_m`. Reading detects the format: a file
with `!!opencv-matrix` tags is FileStorage, anything else is read as camera_info.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import yaml

from calibration.lens import LensModel, rectified_camera_matrix

FileFormat = Literal["opencv", "ros"]
# ROS distortion_model names, and the lens model each means here.
ROS_DISTORTION_MODELS: dict[str, LensModel] = {
    "plumb_bob": "pinhole", "rational_polynomial": "pinhole", "equidistant": "fisheye", "fisheye": "fisheye",
}
# Coefficient counts OpenCV's pinhole model takes (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1-s4 [tx ty]]]]); fisheye takes 4.
PINHOLE_COEFFICIENTS = (4, 5, 8, 12, 14)


class CalibrationFileError(ValueError):
    """A calibration file that cannot be read or used; the text names the file and the key."""


@dataclass
class Extrinsics:
    """Where the camera is: from hand-eye calibration (calibration/handeye.py)."""

    base_T_camera: np.ndarray  # (4, 4): a point in the camera frame -> the same point in the robot base frame
    views: int  # board observations it was solved from
    rotation_residual_deg: float  # RMS disagreement between the views, after the fit
    translation_residual_m: float


@dataclass
class CameraCalibration:
    model: LensModel
    width: int
    height: int
    camera_matrix: np.ndarray  # (3, 3) K
    dist_coeffs: np.ndarray  # pinhole: k1 k2 p1 p2 k3 (or 4/8/12/14 values); fisheye: k1 k2 k3 k4
    projection_matrix: np.ndarray  # (3, 4) [K' | 0]: the camera matrix of the undistorted image
    camera_name: str = "camera"
    rms_px: float | None = None  # reprojection RMS of the intrinsic calibration
    views: int | None = None  # images it was computed from
    board: str | None = None  # the board spec
    calibrated_at: str | None = None  # ISO 8601
    extrinsics: Extrinsics | None = None

    @classmethod
    def create(cls, model: LensModel, size: tuple[int, int], camera_matrix: np.ndarray, dist_coeffs: np.ndarray,
               **fields: Any) -> CameraCalibration:
        """A calibration whose projection matrix is the one without black borders (rectified_camera_matrix)."""
        camera_matrix = np.asarray(camera_matrix, dtype=np.float64)
        dist_coeffs = np.asarray(dist_coeffs, dtype=np.float64).ravel()
        rectified = rectified_camera_matrix(model, camera_matrix, dist_coeffs, size)
        projection = np.hstack([rectified, np.zeros((3, 1))])
        return cls(model, size[0], size[1], camera_matrix, dist_coeffs, projection, **fields)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.width, self.height

    @property
    def ros_distortion_model(self) -> str:
        if self.model == "fisheye":
            return "equidistant"
        return "plumb_bob" if len(self.dist_coeffs) <= 5 else "rational_polynomial"


def _check_lens(c: CameraCalibration, origin: str) -> None:
    """Model, size, camera matrix and distortion: what the projection matrix is computed from."""
    if c.model not in ("pinhole", "fisheye"):
        raise CalibrationFileError(f"{origin}: distortion_model: unknown lens model {c.model!r}")
    if c.width <= 0 or c.height <= 0:
        raise CalibrationFileError(f"{origin}: image_width/image_height must be positive, got {c.width}x{c.height}")
    k = c.camera_matrix
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0 \
            or not np.allclose(k[2], [0, 0, 1]):
        raise CalibrationFileError(f"{origin}: camera_matrix: expected a 3x3 [[fx 0 cx] [0 fy cy] [0 0 1]] with "
                                   f"positive focal lengths, got {k.tolist()}")
    counts = (4,) if c.model == "fisheye" else PINHOLE_COEFFICIENTS
    if c.dist_coeffs.ndim != 1 or len(c.dist_coeffs) not in counts or not np.all(np.isfinite(c.dist_coeffs)):
        raise CalibrationFileError(f"{origin}: distortion_coefficients: the {c.model} model takes "
                                   f"{' or '.join(map(str, counts))} finite values, got {c.dist_coeffs.tolist()}")


def check(calibration: CameraCalibration, origin: str) -> CameraCalibration:
    """The calibration if it is usable; else CalibrationFileError naming `origin` and the field."""
    c = calibration
    _check_lens(c, origin)
    p = c.projection_matrix
    if p.shape != (3, 4) or not np.all(np.isfinite(p)) or p[0, 0] <= 0 or p[1, 1] <= 0:
        raise CalibrationFileError(f"{origin}: projection_matrix: expected a 3x4 [K' | t] with positive focal "
                                   f"lengths, got {p.tolist()}")
    if c.extrinsics is not None:
        t = c.extrinsics.base_T_camera
        if t.shape != (4, 4) or not np.all(np.isfinite(t)) or not np.allclose(t[3], [0, 0, 0, 1]) \
                or not np.allclose(t[:3, :3] @ t[:3, :3].T, np.eye(3), atol=1e-4) \
                or not np.linalg.det(t[:3, :3]) > 0:
            raise CalibrationFileError(f"{origin}: extrinsics.base_T_camera: expected a 4x4 rigid transform "
                                       f"(rotation and translation, last row 0 0 0 1), got {t.tolist()}")
    return calibration


# -- OpenCV FileStorage --------------------------------------------------------------------------------------


def write_opencv(calibration: CameraCalibration, path: str | Path) -> None:
    """Write an OpenCV FileStorage YAML (readable by cv2.FileStorage in C++ and Python)."""
    c = check(calibration, str(path))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # The format flag: FileStorage would otherwise choose XML or JSON from the file name.
    storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_FORMAT_YAML)
    if not storage.isOpened():
        raise CalibrationFileError(f"{path}: cannot write a calibration file here")
    try:
        storage.writeComment(f"edgeloop camera calibration ({c.model} model); docs/calibration.md")
        if c.calibrated_at is not None:
            storage.write("calibration_time", c.calibrated_at)
        storage.write("camera_name", c.camera_name)
        storage.write("image_width", c.width)
        storage.write("image_height", c.height)
        storage.write("distortion_model", c.ros_distortion_model)
        storage.write("camera_matrix", c.camera_matrix)
        storage.write("distortion_coefficients", c.dist_coeffs.reshape(1, -1))
        storage.write("projection_matrix", c.projection_matrix)
        if c.rms_px is not None:
            storage.write("avg_reprojection_error", c.rms_px)
        if c.views is not None:
            storage.write("nr_of_frames", c.views)
        if c.board is not None:
            storage.write("board", c.board)
        if c.extrinsics is not None:
            e = c.extrinsics
            storage.startWriteStruct("extrinsics", cv2.FileNode_MAP)
            storage.write("base_T_camera", e.base_T_camera)
            storage.write("views", e.views)
            storage.write("rotation_residual_deg", e.rotation_residual_deg)
            storage.write("translation_residual_m", e.translation_residual_m)
            storage.endWriteStruct()
    finally:
        storage.release()


def _cv_message(exc: BaseException) -> str:
    # OpenCV's text is "...cpp:681: error: (-212:Parsing error) parseValue in function 'FILE(3): why'".
    text = str(exc.__cause__ or exc)
    match = re.search(r"\(-?\d+:[^)]*\) (.*)", text)
    return (match[1] if match else text).strip()


class _Storage:
    """Typed reads from an open FileStorage node; errors name the file and the dotted key."""

    def __init__(self, node: cv2.FileNode, origin: str, prefix: str = "") -> None:
        self.node, self.origin, self.prefix = node, origin, prefix

    def _get(self, key: str, required: bool) -> cv2.FileNode | None:
        node = self.node.getNode(key)
        if node.empty() or node.isNone():
            if required:
                raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: missing")
            return None
        return node

    def number(self, key: str, required: bool = True) -> float | None:
        node = self._get(key, required)
        if node is None:
            return None
        if not (node.isInt() or node.isReal()):
            raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: expected a number")
        return float(node.real())

    def integer(self, key: str) -> int:
        node = self._get(key, True)
        assert node is not None
        if not node.isInt():
            raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: expected an integer")
        return int(node.real())

    def text(self, key: str) -> str | None:
        node = self._get(key, False)
        if node is None:
            return None
        if not node.isString():
            raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: expected a string")
        return str(node.string())

    def matrix(self, key: str, required: bool = True) -> np.ndarray | None:
        node = self._get(key, required)
        if node is None:
            return None
        try:
            value = node.mat() if node.isMap() else None
        except cv2.error:
            value = None
        if value is None:
            raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: expected an !!opencv-matrix")
        return np.asarray(value, dtype=np.float64)

    def section(self, key: str) -> _Storage | None:
        node = self._get(key, False)
        if node is None:
            return None
        if not node.isMap():
            raise CalibrationFileError(f"{self.origin}: {self.prefix}{key}: expected a mapping")
        return _Storage(node, self.origin, f"{self.prefix}{key}.")


def _read_opencv(path: Path) -> CameraCalibration:
    origin = str(path)
    try:
        storage = cv2.FileStorage(origin, cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError) as exc:  # OpenCV 5's bindings wrap parse errors in SystemError
        raise CalibrationFileError(f"{path}: not a valid OpenCV FileStorage YAML: {_cv_message(exc)}") from exc
    if not storage.isOpened():
        raise CalibrationFileError(f"{path}: cannot open as an OpenCV FileStorage YAML")
    try:
        root = _Storage(storage.root(), origin)
        size = (root.integer("image_width"), root.integer("image_height"))
        name = root.text("distortion_model") or "plumb_bob"  # OpenCV's own sample writes none: pinhole
        if name not in ROS_DISTORTION_MODELS:
            raise CalibrationFileError(f"{path}: distortion_model: unknown {name!r}; one of "
                                       f"{', '.join(ROS_DISTORTION_MODELS)}")
        model = ROS_DISTORTION_MODELS[name]
        camera_matrix = root.matrix("camera_matrix")
        dist = root.matrix("distortion_coefficients")
        assert camera_matrix is not None and dist is not None
        projection = root.matrix("projection_matrix", required=False)
        rms, views = root.number("avg_reprojection_error", required=False), root.number("nr_of_frames", False)
        fields: dict[str, Any] = {
            "camera_name": root.text("camera_name") or "camera", "rms_px": rms,
            "views": None if views is None else int(views), "board": root.text("board"),
            "calibrated_at": root.text("calibration_time"), "extrinsics": None,
        }
        section = root.section("extrinsics")
        if section is not None:
            transform = section.matrix("base_T_camera")
            assert transform is not None
            fields["extrinsics"] = Extrinsics(transform, int(section.number("views") or 0),
                                              float(section.number("rotation_residual_deg") or 0.0),
                                              float(section.number("translation_residual_m") or 0.0))
    finally:
        storage.release()
    return _assemble(origin, model, size, camera_matrix, dist, projection, fields)


def _assemble(origin: str, model: LensModel, size: tuple[int, int], camera_matrix: np.ndarray,
              dist: np.ndarray, projection: np.ndarray | None, fields: dict[str, Any]) -> CameraCalibration:
    dist = dist.ravel()
    if projection is None:  # files from other tools may lack it: the same choice as ours
        _check_lens(CameraCalibration(model, size[0], size[1], camera_matrix, dist, np.zeros((3, 4))), origin)
        calibration = CameraCalibration.create(model, size, camera_matrix, dist, **fields)
    else:
        calibration = CameraCalibration(model, size[0], size[1], camera_matrix, dist, projection, **fields)
    return check(calibration, origin)


# -- ROS camera_info -----------------------------------------------------------------------------------------


def _ros_matrix(matrix: np.ndarray) -> dict[str, Any]:
    rows, cols = matrix.shape
    return {"rows": rows, "cols": cols, "data": [float(v) for v in matrix.ravel()]}


def write_ros(calibration: CameraCalibration, path: str | Path) -> None:
    """Write a ROS camera_info YAML (camera_calibration_parsers' layout), extrinsics under `extrinsics`."""
    c = check(calibration, str(path))
    data: dict[str, Any] = {
        "image_width": c.width,
        "image_height": c.height,
        "camera_name": c.camera_name,
        "camera_matrix": _ros_matrix(c.camera_matrix),
        "distortion_model": c.ros_distortion_model,
        "distortion_coefficients": _ros_matrix(c.dist_coeffs.reshape(1, -1)),
        "rectification_matrix": _ros_matrix(np.eye(3)),  # monocular: no rectifying rotation
        "projection_matrix": _ros_matrix(c.projection_matrix),
    }
    if c.extrinsics is not None:
        e = c.extrinsics
        data["extrinsics"] = {"base_T_camera": _ros_matrix(e.base_T_camera), "views": e.views,
                              "rotation_residual_deg": e.rotation_residual_deg,
                              "translation_residual_m": e.translation_residual_m}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


class _Yaml:
    """Typed reads from a parsed YAML mapping; errors name the file and the dotted key."""

    def __init__(self, data: dict[str, Any], origin: str, prefix: str = "") -> None:
        self.data, self.origin, self.prefix = data, origin, prefix

    def _fail(self, key: str, why: str) -> CalibrationFileError:
        return CalibrationFileError(f"{self.origin}: {self.prefix}{key}: {why}")

    def get(self, key: str, required: bool = True) -> Any:
        if self.data.get(key) is None and required:
            raise self._fail(key, "missing")
        return self.data.get(key)

    def integer(self, key: str) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"expected an integer, got {value!r}")
        return value

    def number(self, key: str) -> float:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"expected a number, got {value!r}")
        return float(value)

    def matrix(self, key: str, required: bool = True) -> np.ndarray | None:
        value = self.get(key, required)
        if value is None:
            return None
        if not isinstance(value, dict) or not {"rows", "cols", "data"} <= value.keys():
            raise self._fail(key, "expected a mapping with rows, cols and data")
        rows, cols, data = value["rows"], value["cols"], value["data"]
        if not isinstance(rows, int) or not isinstance(cols, int) or not isinstance(data, list) \
                or len(data) != rows * cols:
            raise self._fail(key, f"data must be a list of rows x cols = {rows}x{cols} numbers")
        try:
            return np.asarray(data, dtype=np.float64).reshape(rows, cols)
        except (TypeError, ValueError) as exc:
            raise self._fail(key, f"data must hold numbers only ({exc})") from exc


def _read_ros(path: Path, text: str) -> CameraCalibration:
    origin = str(path)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalibrationFileError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CalibrationFileError(f"{path}: not a camera calibration: expected a ROS camera_info mapping "
                                   "(image_width, camera_matrix, ...) or an OpenCV FileStorage YAML")
    root = _Yaml(loaded, origin)
    size = (root.integer("image_width"), root.integer("image_height"))
    name = root.get("distortion_model")
    if name not in ROS_DISTORTION_MODELS:
        raise CalibrationFileError(f"{path}: distortion_model: unknown {name!r}; one of "
                                   f"{', '.join(ROS_DISTORTION_MODELS)}")
    camera_matrix, dist = root.matrix("camera_matrix"), root.matrix("distortion_coefficients")
    assert camera_matrix is not None and dist is not None
    rectification = root.matrix("rectification_matrix", required=False)
    if rectification is not None and not np.allclose(rectification, np.eye(3), atol=1e-9):
        raise CalibrationFileError(f"{path}: rectification_matrix: only monocular calibrations (identity) "
                                   "are supported")
    name_value = root.get("camera_name", required=False)
    fields: dict[str, Any] = {"camera_name": str(name_value) if name_value is not None else "camera",
                              "extrinsics": None}
    section = root.get("extrinsics", required=False)
    if section is not None:
        if not isinstance(section, dict):
            raise CalibrationFileError(f"{path}: extrinsics: expected a mapping")
        extra = _Yaml(section, origin, "extrinsics.")
        transform = extra.matrix("base_T_camera")
        assert transform is not None
        fields["extrinsics"] = Extrinsics(transform, extra.integer("views"), extra.number("rotation_residual_deg"),
                                          extra.number("translation_residual_m"))
    return _assemble(origin, ROS_DISTORTION_MODELS[name], size, camera_matrix, dist,
                     root.matrix("projection_matrix", required=False), fields)


# -- either ---------------------------------------------------------------------------------------------------


def file_format(path: str | Path) -> FileFormat:
    """Which of the two formats a calibration file is in; CalibrationFileError if it cannot be read."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationFileError(f"{path}: cannot read the calibration file ({exc})") from exc
    return "opencv" if "!!opencv-matrix" in text else "ros"


def read_calibration(path: str | Path) -> CameraCalibration:
    """Read either format (detected from the content); errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationFileError(f"{path}: calibration file not found")
    if file_format(path) == "opencv":
        return _read_opencv(path)
    return _read_ros(path, path.read_text())


def write_calibration(calibration: CameraCalibration, path: str | Path, fmt: FileFormat) -> None:
    (write_opencv if fmt == "opencv" else write_ros)(calibration, path)

