"""Board views rendered through a known camera model: ground truth for the tests, and a way to try the
calibration commands without a camera (`edgeloop calibrate synthesize`).

Each output pixel's ray is found by inverting the lens model exactly (Newton/fixed-point iterations, far
tighter than the detector's accuracy) and intersected with the board plane; the board texture is sampled
there. Rendering at `supersample` times the resolution and averaging down gives anti-aliased edges, so
detected corners sit where the model projects them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import BoardSpec, board_image
from calibration.camera_file import CameraCalibration, Extrinsics, write_opencv
from calibration.lens import LensModel, project_points
from calibration.poses import RobotView, write_poses


def example_camera(model: LensModel, size: tuple[int, int]) -> CameraCalibration:
    """A plausible camera to render through: a ~70 degree lens with barrel distortion (pinhole), or a
    ~130 degree fisheye; the principal point a few pixels off centre, as in real cameras."""
    width, height = size
    if model == "fisheye":
        matrix = np.array([[0.47 * width, 0, width / 2 + 2.5], [0, 0.47 * width, height / 2 - 1.5], [0, 0, 1]])
        return CameraCalibration.create(model, size, matrix, np.array([0.05, -0.01, 0.004, -0.001]))
    matrix = np.array([[0.81 * width, 0, width / 2 + 3.5], [0, 0.80 * width, height / 2 - 4.0], [0, 0, 1]])
    return CameraCalibration.create(model, size, matrix, np.array([-0.28, 0.09, 0.001, -0.0015, 0.0]))


def _pinhole_rays(xd: np.ndarray, yd: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k1, k2, p1, p2 = k[:4]
    k3 = k[4] if len(k) > 4 else 0.0
    x, y = xd.copy(), yd.copy()
    for _ in range(200):  # fixed point, as OpenCV's undistortPoints, but run to convergence
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x_next, y_next = (xd - dx) / radial, (yd - dy) / radial
        change = max(np.abs(x_next - x).max(), np.abs(y_next - y).max())
        x, y = x_next, y_next
        if change < 1e-12:
            break
    return x, y


def _fisheye_rays(xd: np.ndarray, yd: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    theta_d = np.hypot(xd, yd)
    theta = theta_d.copy()
    for _ in range(20):  # Newton on theta * (1 + k1 t^2 + k2 t^4 + k3 t^6 + k4 t^8) = theta_d
        t2 = theta * theta
        f = theta * (1 + t2 * (k[0] + t2 * (k[1] + t2 * (k[2] + t2 * k[3])))) - theta_d
        df = 1 + t2 * (3 * k[0] + t2 * (5 * k[1] + t2 * (7 * k[2] + t2 * 9 * k[3])))
        theta = theta - f / df
    theta = np.clip(theta, 0.0, math.pi / 2 - 1e-6)
    scale = np.divide(np.tan(theta), theta_d, out=np.ones_like(theta_d), where=theta_d > 1e-12)
    return xd * scale, yd * scale


def pixel_rays(calibration: CameraCalibration, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalized undistorted coordinates (x/z, y/z) of the rays through pixels (u, v)."""
    k = calibration.camera_matrix
    yd = (v - k[1, 2]) / k[1, 1]
    xd = (u - k[0, 2] - k[0, 1] * yd) / k[0, 0]
    coeffs = calibration.dist_coeffs
    if calibration.model == "fisheye":
        return _fisheye_rays(xd, yd, coeffs)
    if len(coeffs) > 5:
        raise ValueError("synthetic views: only 4 or 5 pinhole distortion coefficients are rendered")
    return _pinhole_rays(xd, yd, coeffs)


class Renderer:
    """Renders one board through one calibration; the rays of all pixels are computed once, here."""

    def __init__(self, calibration: CameraCalibration, spec: BoardSpec, *, background: int = 110,
                 supersample: int = 2) -> None:
        self.calibration, self.spec = calibration, spec
        self.background, self.supersample = background, supersample
        self.texture, self.board_to_texture = board_image(spec, px_per_square=64, margin_px=48)
        width, height = calibration.size
        # Sub-sample centres, in the output's pixel coordinates (pixel centres at integers).
        us = (np.arange(width * supersample) + 0.5) / supersample - 0.5
        vs = (np.arange(height * supersample) + 0.5) / supersample - 0.5
        self.x, self.y = pixel_rays(calibration, *np.meshgrid(us, vs))

    def render(self, rvec: np.ndarray, tvec: np.ndarray, *, noise: float = 0.0,
               rng: np.random.Generator | None = None) -> np.ndarray:
        """A BGR image of the board at pose (rvec, tvec) (camera_T_board), with Gaussian noise of `noise` levels."""
        rotation, _ = cv2.Rodrigues(np.asarray(rvec, np.float64))
        r = rotation.T
        t_board = r @ np.asarray(tvec, np.float64).reshape(3)
        x, y = self.x, self.y
        # Ray s * (x, y, 1) meets the board plane z_board = 0 where (R^T (s d - t))_z = 0.
        dz = r[2, 0] * x + r[2, 1] * y + r[2, 2]
        s = np.divide(t_board[2], dz, out=np.full_like(dz, -1.0), where=np.abs(dz) > 1e-12)
        to_texture = self.board_to_texture
        map_x = (to_texture[0, 0] * (s * (r[0, 0] * x + r[0, 1] * y + r[0, 2]) - t_board[0]) + to_texture[0, 2])
        map_y = (to_texture[1, 1] * (s * (r[1, 0] * x + r[1, 1] * y + r[1, 2]) - t_board[1]) + to_texture[1, 2])
        map_x[s <= 0] = -1e6  # behind the camera: background
        fine = cv2.remap(self.texture, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=self.background)
        width, height = self.calibration.size
        image = cv2.resize(fine, (width, height), interpolation=cv2.INTER_AREA) if self.supersample > 1 else fine
        if noise > 0:
            rng = rng or np.random.default_rng(0)
            image = np.clip(image + rng.normal(0.0, noise, image.shape), 0, 255).astype(np.uint8)
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


@dataclass
class BoardPose:
    rvec: np.ndarray  # camera_T_board
    tvec: np.ndarray


def board_outline(spec: BoardSpec) -> np.ndarray:
    """(4, 3) board-frame corners of the board's squares (the printed pattern without its margin)."""
    cols, rows = spec.squares
    start = -spec.square_m if spec.kind == "checkerboard" else 0.0
    x0, y0 = start, start
    x1, y1 = start + cols * spec.square_m, start + rows * spec.square_m
    return np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=np.float64)


def in_view(calibration: CameraCalibration, spec: BoardSpec, pose: BoardPose, margin_px: float) -> bool:
    """Whether the whole pattern (with `margin_px` to spare) projects inside the image, in front of the camera."""
    rotation, _ = cv2.Rodrigues(pose.rvec)
    outline = board_outline(spec)
    # Sample the outline's edges too: with distortion, straight edges bow outwards.
    edges = np.concatenate([np.linspace(outline[i], outline[(i + 1) % 4], 9) for i in range(4)])
    depth = (rotation @ edges.T).T[:, 2] + pose.tvec[2]
    if np.any(depth <= 0.05):
        return False
    pixels = project_points(calibration.model, calibration.camera_matrix, calibration.dist_coeffs, edges,
                            pose.rvec, pose.tvec)
    width, height = calibration.size
    return bool(np.all(pixels >= margin_px) and np.all(pixels[:, 0] <= width - 1 - margin_px)
                and np.all(pixels[:, 1] <= height - 1 - margin_px))


def random_poses(calibration: CameraCalibration, spec: BoardSpec, count: int, rng: np.random.Generator, *,
                 max_tilt_deg: float = 40.0, fill: tuple[float, float] = (0.35, 0.7),
                 margin_px: float = 8.0) -> list[BoardPose]:
    """Varied board poses that keep the whole board in view: tilted up to `max_tilt_deg` about both axes,
    the board spanning `fill` of the image width, centred anywhere the board still fits."""
    width, _height = calibration.size
    cols, rows = spec.squares
    board_width = cols * spec.square_m
    centre = np.array([(cols / 2 - (1 if spec.kind == "checkerboard" else 0)) * spec.square_m,
                       (rows / 2 - (1 if spec.kind == "checkerboard" else 0)) * spec.square_m, 0.0])
    focal = calibration.camera_matrix[0, 0]
    poses: list[BoardPose] = []
    for _attempt in range(count * 500):
        if len(poses) == count:
            break
        tilt = np.radians(rng.uniform(-max_tilt_deg, max_tilt_deg, 2))
        roll = np.radians(rng.uniform(-25, 25))
        rotation = (cv2.Rodrigues(np.array([tilt[0], 0.0, 0.0]))[0] @ cv2.Rodrigues(np.array([0.0, tilt[1], 0.0]))[0]
                    @ cv2.Rodrigues(np.array([0.0, 0.0, roll]))[0])
        distance = focal * board_width / (rng.uniform(*fill) * width)
        # Where the board's centre goes: a random direction within the field of view.
        target = np.array([rng.uniform(-0.5, 0.5) * width / focal, rng.uniform(-0.5, 0.5) * width / focal, 1.0])
        tvec = target * distance - rotation @ centre
        pose = BoardPose(cv2.Rodrigues(rotation)[0].ravel(), tvec)
        if in_view(calibration, spec, pose, margin_px):
            poses.append(pose)
    if len(poses) < count:
        raise ValueError(f"synthetic views: found only {len(poses)} of {count} board poses inside the image")
    return poses


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """4x4 pose of a camera at `eye` whose optical axis (z) points at `target`, with image-up towards `up`."""
    z = np.asarray(target, np.float64) - np.asarray(eye, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, -np.asarray(up, np.float64))  # image x to the right, y down
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([x, np.cross(z, x), z])
    pose[:3, 3] = eye
    return pose


@dataclass
class HandEyeScene:
    """A fixed camera watching a board held by a robot, in poses that keep the board in view."""

    base_T_camera: np.ndarray
    gripper_T_board: np.ndarray
    base_T_gripper: list[np.ndarray]
    camera_T_board: list[BoardPose]


def handeye_scene(calibration: CameraCalibration, spec: BoardSpec, count: int,
                  rng: np.random.Generator) -> HandEyeScene:
    """A camera 1 m from the robot looking down at its workspace, and `count` gripper poses (base frame)."""
    base_T_camera = look_at(np.array([0.9, 0.3, 0.8]), np.array([0.4, 0.0, 0.1]), np.array([0.0, 0.0, 1.0]))
    # The board 6 cm beyond the flange, turned to face away from it.
    gripper_T_board = np.eye(4)
    gripper_T_board[:3, :3] = cv2.Rodrigues(np.array([math.pi, 0.0, 0.3]))[0]
    gripper_T_board[:3, 3] = [0.02, -0.03, 0.06]
    poses = random_poses(calibration, spec, count, rng, max_tilt_deg=35.0, fill=(0.3, 0.6))
    grippers = []
    for pose in poses:
        camera_T_board = np.eye(4)
        camera_T_board[:3, :3] = cv2.Rodrigues(pose.rvec)[0]
        camera_T_board[:3, 3] = pose.tvec
        grippers.append(base_T_camera @ camera_T_board @ np.linalg.inv(gripper_T_board))
    return HandEyeScene(base_T_camera, gripper_T_board, grippers, poses)


@dataclass
class SyntheticSet:
    images: list[Path]
    truth: Path  # the camera they were rendered through (OpenCV FileStorage YAML)
    poses: Path | None  # with a hand-eye scene: the robot poses file
    gripper_T_board: np.ndarray | None  # with a hand-eye scene: where the board sits on the gripper


def write_synthetic_set(spec: BoardSpec, model: LensModel, size: tuple[int, int], views: int, out: Path, *,
                        handeye: bool = False, noise: float = 1.5, seed: int = 0) -> SyntheticSet:
    """Render `views` board images through `example_camera(model, size)` into `out` (view_NNN.png), with the
    camera as truth.yaml and, for a hand-eye scene (a fixed camera, the board on the gripper), poses.yaml."""
    truth = example_camera(model, size)
    rng = np.random.default_rng(seed)
    scene = handeye_scene(truth, spec, views, rng) if handeye else None
    poses = scene.camera_T_board if scene is not None else random_poses(truth, spec, views, rng)
    renderer = Renderer(truth, spec)
    out.mkdir(parents=True, exist_ok=True)
    images = []
    for index, pose in enumerate(poses):
        path = out / f"view_{index:03d}.png"
        cv2.imwrite(str(path), renderer.render(pose.rvec, pose.tvec, noise=noise, rng=rng))
        images.append(path)
    poses_path = None
    if scene is not None:
        truth.extrinsics = Extrinsics(scene.base_T_camera, views, 0.0, 0.0)
        poses_path = out / "poses.yaml"
        write_poses([RobotView(p, g) for p, g in zip(images, scene.base_T_gripper, strict=True)], poses_path)
    truth.board = str(spec)
    write_opencv(truth, out / "truth.yaml")
    return SyntheticSet(images, out / "truth.yaml", poses_path,
                        scene.gripper_T_board if scene is not None else None)
