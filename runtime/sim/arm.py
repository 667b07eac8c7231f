"""The MuJoCo planar 2-joint arm: physics stepping, joint-velocity commands and offscreen rendering."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

import numpy as np

# EGL renders offscreen without a display; must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")

SCENE_FILE = "scene.xml"
LINK_LENGTHS = (0.30, 0.25)
# Joint-velocity commands in rad/s; the actuators' ctrlrange in scene.xml matches.
VELOCITY_LIMIT = 2.0


@dataclass(frozen=True)
class ArmState:
    q: np.ndarray  # joint positions [rad], shape (2,)
    dq: np.ndarray  # joint velocities [rad/s], shape (2,)
    ee: np.ndarray  # end-effector position in the table plane [m], shape (2,)
    time: float  # simulated seconds since reset


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """End-effector (x, y) for joint angles q of shape (..., 2); vectorized."""
    q = np.asarray(q, dtype=np.float64)
    l1, l2 = LINK_LENGTHS
    x = l1 * np.cos(q[..., 0]) + l2 * np.cos(q[..., 0] + q[..., 1])
    y = l1 * np.sin(q[..., 0]) + l2 * np.sin(q[..., 0] + q[..., 1])
    return np.stack([x, y], axis=-1)


class SimArm:
    """A planar arm driven by joint-velocity commands and seen by a fixed overhead camera."""

    n_joints = 2

    def __init__(self, image_size: tuple[int, int] = (64, 64)) -> None:
        import mujoco

        self._mj = mujoco
        xml = resources.files("runtime.sim").joinpath(SCENE_FILE).read_text()
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        self.height, self.width = image_size
        self._renderer: mujoco.Renderer | None = None
        self._ee_site = self.model.site("end_effector").id
        self.joint_limits = self.model.jnt_range[: self.n_joints].copy()  # (2, 2) [low, high]
        mujoco.mj_forward(self.model, self.data)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    def reset(self, q: np.ndarray | None = None) -> None:
        self._mj.mj_resetData(self.model, self.data)
        if q is not None:
            self.data.qpos[: self.n_joints] = np.clip(q, self.joint_limits[:, 0], self.joint_limits[:, 1])
        self._mj.mj_forward(self.model, self.data)

    def command_velocity(self, velocity: np.ndarray) -> None:
        """Set the joint-velocity targets (rad/s), clipped to the actuator limits."""
        self.data.ctrl[: self.n_joints] = np.clip(velocity, -VELOCITY_LIMIT, VELOCITY_LIMIT)

    def step(self, seconds: float) -> None:
        """Advance physics by `seconds` (rounded to whole physics steps, at least one)."""
        n = max(1, round(seconds / self.timestep))
        self._mj.mj_step(self.model, self.data, nstep=n)

    def state(self) -> ArmState:
        return ArmState(
            q=self.data.qpos[: self.n_joints].copy(),
            dq=self.data.qvel[: self.n_joints].copy(),
            ee=self.data.site_xpos[self._ee_site][:2].copy(),
            time=float(self.data.time),
        )

    def render(self) -> np.ndarray:
        """The overhead camera view as a BGR uint8 image of shape (height, width, 3)."""
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera="overhead")
        rgb = self._renderer.render()
        return np.ascontiguousarray(rgb[:, :, ::-1])

    def sample_configuration(self, rng: np.random.Generator, margin: float = 0.2) -> np.ndarray:
        """A uniformly random joint configuration at least `margin` rad inside the joint limits."""
        low = self.joint_limits[:, 0] + margin
        high = self.joint_limits[:, 1] - margin
        return rng.uniform(low, high)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
