"""The demo robot: the planar-arm scene (runtime/sim/scenes/planar-arm.yaml) with its kinematics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.sim.scene import Scene
from runtime.sim.scene_file import load_scene

SCENE = "planar-arm"
LINK_LENGTHS = (0.30, 0.25)
# Joint-velocity commands in rad/s; the actuators' ctrlrange in planar_arm.xml matches.
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


class SimArm(Scene):
    """A planar arm driven by joint-velocity commands and seen by a fixed overhead camera."""

    n_joints = 2

    def __init__(self, image_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__(load_scene(SCENE), image_size)
        self.joint_limits = self.model.jnt_range[: self.n_joints].copy()  # (2, 2) [low, high]

    def reset_to(self, q: np.ndarray | None = None) -> None:
        """Rest at joint angles `q` (clipped to the joint limits), or at zero."""
        self.reset()
        if q is not None:
            self.data.qpos[: self.n_joints] = np.clip(q, self.joint_limits[:, 0], self.joint_limits[:, 1])
            self._mj.mj_forward(self.model, self.data)

    def command_velocity(self, velocity: np.ndarray) -> None:
        """Set the joint-velocity targets (rad/s), clipped to the actuator limits."""
        self.apply(velocity)

    def state(self) -> ArmState:
        q, dq = self.proprio()
        return ArmState(q=q, dq=dq, ee=self.site_positions(), time=self.time)

    def sample_configuration(self, rng: np.random.Generator, margin: float = 0.2) -> np.ndarray:
        """A uniformly random joint configuration at least `margin` rad inside the joint limits."""
        low = self.joint_limits[:, 0] + margin
        high = self.joint_limits[:, 1] - margin
        return rng.uniform(low, high)
