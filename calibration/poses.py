"""The robot poses file of hand-eye calibration: which image was taken at which gripper pose.

YAML (or JSON, which YAML reads), lengths in metres:

    views:
      - image: view_000.png            # relative to this file's folder, or absolute
        base_T_gripper:                # 4x4 row-major: the gripper (flange/tool) pose in the base frame
          - [1, 0, 0, 0.40]
          - [0, 1, 0, 0.00]
          - [0, 0, 1, 0.30]
          - [0, 0, 0, 1]
      - image: view_001.png
        xyz: [0.42, 0.05, 0.31]        # or position + orientation as quaternion (x, y, z, w), as in ROS
        quat_xyzw: [0.0, 0.2588, 0.0, 0.9659]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml


class PosesFileError(ValueError):
    """A poses file that cannot be used; the text names the file and the entry."""


@dataclass
class RobotView:
    image: Path
    base_T_gripper: np.ndarray  # (4, 4)


def quaternion_matrix(xyzw: np.ndarray) -> np.ndarray:
    x, y, z, w = xyzw / np.linalg.norm(xyzw)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _numbers(value: Any, count: int, where: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        array = np.zeros(0)
    if array.size != count or not np.all(np.isfinite(array)):
        raise PosesFileError(f"{where}: expected {count} finite numbers, got {value!r}")
    return array


def _pose(entry: dict[str, Any], where: str) -> np.ndarray:
    if "base_T_gripper" in entry:
        if "xyz" in entry or "quat_xyzw" in entry:
            raise PosesFileError(f"{where}: give base_T_gripper or xyz + quat_xyzw, not both")
        matrix = _numbers(entry["base_T_gripper"], 16, f"{where}.base_T_gripper").reshape(4, 4)
        rotation = matrix[:3, :3]
        if not np.allclose(matrix[3], [0, 0, 0, 1]) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) \
                or np.linalg.det(rotation) <= 0:
            raise PosesFileError(f"{where}.base_T_gripper: not a rigid transform (orthonormal rotation, last row "
                                 f"0 0 0 1): {matrix.tolist()}")
        return matrix
    if "xyz" not in entry or "quat_xyzw" not in entry:
        raise PosesFileError(f"{where}: needs base_T_gripper (4x4) or both xyz and quat_xyzw")
    quaternion = _numbers(entry["quat_xyzw"], 4, f"{where}.quat_xyzw")
    if abs(np.linalg.norm(quaternion) - 1.0) > 1e-3:
        raise PosesFileError(f"{where}.quat_xyzw: not a unit quaternion (norm {np.linalg.norm(quaternion):.4f})")
    matrix = np.eye(4)
    matrix[:3, :3] = quaternion_matrix(quaternion)
    matrix[:3, 3] = _numbers(entry["xyz"], 3, f"{where}.xyz")
    return matrix


def read_poses(path: str | Path) -> list[RobotView]:
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise PosesFileError(f"{path}: cannot read the poses file ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise PosesFileError(f"{path}: not a text file (byte {exc.start} is not UTF-8): expected YAML or JSON") from exc
    except yaml.YAMLError as exc:
        raise PosesFileError(f"{path}: not valid YAML or JSON: {exc}") from exc
    if not isinstance(loaded, dict) or not isinstance(loaded.get("views"), list) or not loaded["views"]:
        raise PosesFileError(f"{path}: expected a mapping with a non-empty list 'views' of "
                             "{image, base_T_gripper | xyz + quat_xyzw}")
    views = []
    for index, entry in enumerate(loaded["views"]):
        where = f"{path}: views[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str):
            raise PosesFileError(f"{where}: expected a mapping with 'image' (a file name) and a pose")
        views.append(RobotView(path.parent / entry["image"], _pose(entry, where)))
    return views


def write_poses(views: list[RobotView], path: str | Path) -> None:
    """Write a poses file; image paths are written relative to its folder when they lie inside it."""
    path = Path(path)
    entries = []
    for view in views:
        image = view.image.relative_to(path.parent) if view.image.is_relative_to(path.parent) else view.image
        matrix = [[float(v) for v in row] for row in view.base_T_gripper]
        entries.append({"image": str(image), "base_T_gripper": matrix})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"views": entries}, sort_keys=False, default_flow_style=None))
