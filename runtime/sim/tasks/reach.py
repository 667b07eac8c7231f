"""reach: the planar arm to a goal pose, every joint within 0.05 rad (or the end effector within 5 cm)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from runtime.sim.arm import VELOCITY_LIMIT, forward_kinematics
from runtime.sim.scene import Scene
from runtime.sim.tasks.base import Expert, Task, TaskSettings


class ReachSettings(TaskSettings):
    criterion: Literal["joints", "end_effector"] = Field(
        "joints", description="joints: every joint within tolerance_rad (the field's Reacher criterion); "
                              "end_effector: within tolerance_m in the table plane (the demo's).")
    tolerance_rad: float = Field(0.05, gt=0)
    tolerance_m: float = Field(0.05, gt=0)
    margin_rad: float = Field(0.2, ge=0, description="Starts at least this far inside the joint limits.")


class _ReachExpert(Expert):
    """Proportional joint-velocity moves towards random targets, with noise, retargeting now and then."""

    def __init__(self, limits: np.ndarray, indices: list[int], rng: np.random.Generator) -> None:
        self.limits, self.indices, self.rng = limits, indices, rng
        self.target = rng.uniform(limits[:, 0], limits[:, 1])
        self.gain = float(rng.uniform(1.5, 4.0))

    def __call__(self, scene: Scene) -> np.ndarray:
        if self.rng.random() < 0.03:  # about one new target every 1.7 s
            self.target = self.rng.uniform(self.limits[:, 0], self.limits[:, 1])
        q = scene.qpos()[self.indices]
        action = self.gain * (self.target - q) + 0.2 * self.rng.standard_normal(q.size)
        return np.clip(action, -VELOCITY_LIMIT, VELOCITY_LIMIT)


class Reach(Task):
    name = "reach"
    scene = "planar-arm"
    settings_type = ReachSettings

    def __init__(self, scene: Scene, settings: dict[str, Any] | None = None) -> None:
        super().__init__(scene, settings)
        self.settings: ReachSettings
        self.joints = self.qpos_indices("shoulder", "elbow")
        self.limits = self.joint_limits("shoulder", "elbow")

    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        margin = self.settings.margin_rad
        qpos = scene.qpos()
        qpos[self.joints] = rng.uniform(self.limits[:, 0] + margin, self.limits[:, 1] - margin)
        scene.set_qpos(qpos)

    def expert(self, rng: np.random.Generator) -> Expert:
        margin = self.settings.margin_rad
        inside = np.stack([self.limits[:, 0] + margin, self.limits[:, 1] - margin], axis=1)
        return _ReachExpert(inside, self.joints, rng)

    def distance(self, qpos: np.ndarray, goal: np.ndarray) -> float:
        """Largest joint error in rad (joints) or end-effector distance in m (end_effector)."""
        if self.settings.criterion == "joints":
            return float(np.abs(qpos[self.joints] - goal[self.joints]).max())
        return float(np.linalg.norm(forward_kinematics(qpos[self.joints]) - forward_kinematics(goal[self.joints])))

    def success(self, qpos: np.ndarray, goal: np.ndarray) -> bool:
        tolerance = self.settings.tolerance_rad if self.settings.criterion == "joints" else self.settings.tolerance_m
        return self.distance(qpos, goal) <= tolerance
