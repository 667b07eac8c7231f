"""Board views rendered through known cameras (calibration.synthetic), for the calibration tests.

Rendering is deterministic (fixed seeds); conftest.py renders each set once per session: each camera's ray
map takes about a second, each view a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.boards import BoardSpec
from calibration.camera_file import CameraCalibration
from calibration.lens import LensModel
from calibration.synthetic import BoardPose, Renderer, example_camera, random_poses

SIZE = (640, 480)
CHECKERBOARD = "checkerboard:9x6:0.025"
CHARUCO = "charuco:9x7:0.03:0.022:DICT_5X5_100"


@dataclass
class Views:
    truth: CameraCalibration
    spec: BoardSpec
    renderer: Renderer
    poses: list[BoardPose]
    images: list[np.ndarray]


def render_views(model: LensModel, board: str, count: int, seed: int) -> Views:
    truth = example_camera(model, SIZE)
    spec = BoardSpec.parse(board)
    renderer = Renderer(truth, spec)
    rng = np.random.default_rng(seed)
    poses = random_poses(truth, spec, count, rng, max_tilt_deg=35.0)
    images = [renderer.render(p.rvec, p.tvec, noise=1.0, rng=rng) for p in poses]
    return Views(truth, spec, renderer, poses, images)
