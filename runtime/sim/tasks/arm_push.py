"""arm-push: the demo's planar arm pushes a puck to within 2 cm of its goal position (contact through a learned
model of the arm and the puck)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from runtime.sim.arm import LINK_LENGTHS, VELOCITY_LIMIT, forward_kinematics
from runtime.sim.scene import Scene
from runtime.sim.tasks.base import Expert, Task, TaskSettings

PUCK_RADIUS_M = 0.035
HAND_RADIUS_M = 0.03
REACH_M = (0.2, 0.45)  # where pucks start, from the shoulder


class ArmPushSettings(TaskSettings):
    tolerance_m: float = Field(0.02, gt=0, description="Puck to its goal position.")


def inverse_kinematics(point: np.ndarray, near: np.ndarray) -> np.ndarray:
    """Joint angles putting the end effector at `point` (clipped to the reachable annulus), the elbow branch
    nearer to `near`."""
    l1, l2 = LINK_LENGTHS
    radius = float(np.clip(np.linalg.norm(point), abs(l1 - l2) + 1e-3, l1 + l2 - 1e-3))
    x, y = point / max(float(np.linalg.norm(point)), 1e-9) * radius
    elbow = math.acos(float(np.clip((radius**2 - l1**2 - l2**2) / (2 * l1 * l2), -1.0, 1.0)))
    solutions = []
    for q2 in (elbow, -elbow):
        q1 = math.atan2(y, x) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
        solutions.append(np.array([math.remainder(q1, 2 * math.pi), q2]))
    return min(solutions, key=lambda q: float(np.abs(q - near).sum()))


def _segment_distance(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    along = float(np.clip((point - start) @ (end - start) / max(float((end - start) @ (end - start)), 1e-12), 0, 1))
    return float(np.linalg.norm(point - (start + along * (end - start))))


class _ArmPushExpert(Expert):
    """Brings the hand behind the puck (seen from a random direction), then pushes through it for a while."""

    def __init__(self, task: ArmPush, rng: np.random.Generator) -> None:
        self.task, self.rng = task, rng
        self._choose()

    def _choose(self) -> None:
        angle = self.rng.uniform(-math.pi, math.pi)
        self.direction = np.array([math.cos(angle), math.sin(angle)])
        self.pushing = 0
        self.push_steps = int(self.rng.integers(5, 20))

    def __call__(self, scene: Scene) -> np.ndarray:
        qpos = scene.qpos()
        q, puck = qpos[self.task.joints], qpos[self.task.puck]
        if self.pushing:
            self.pushing += 1
            if self.pushing > self.push_steps:
                self._choose()
            target = puck + self.direction * 0.05
        else:
            target = puck - self.direction * (PUCK_RADIUS_M + HAND_RADIUS_M + 0.015)
            if np.linalg.norm(forward_kinematics(q) - target) < 0.015:
                self.pushing = 1
        action = 4.0 * (inverse_kinematics(target, q) - q) + 0.1 * self.rng.standard_normal(2)
        return np.clip(action, -VELOCITY_LIMIT, VELOCITY_LIMIT)


class ArmPush(Task):
    name = "arm-push"
    scene = "arm-push"
    settings_type = ArmPushSettings

    def __init__(self, scene: Scene, settings: dict[str, Any] | None = None) -> None:
        super().__init__(scene, settings)
        self.settings: ArmPushSettings
        self.joints = self.qpos_indices("shoulder", "elbow")
        self.puck = self.qpos_indices("puck_x", "puck_y")
        self.limits = self.joint_limits("shoulder", "elbow")

    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        qpos = scene.qpos()
        while True:  # an arm pose and a puck clear of each other
            q = rng.uniform(self.limits[:, 0] + 0.2, self.limits[:, 1] - 0.2)
            radius, angle = rng.uniform(*REACH_M), rng.uniform(-math.pi, math.pi)
            puck = radius * np.array([math.cos(angle), math.sin(angle)])
            elbow = np.array([LINK_LENGTHS[0] * math.cos(q[0]), LINK_LENGTHS[0] * math.sin(q[0])])
            clear = PUCK_RADIUS_M + HAND_RADIUS_M + 0.02
            if min(_segment_distance(puck, np.zeros(2), elbow),
                   _segment_distance(puck, elbow, forward_kinematics(q))) > clear:
                break
        qpos[self.joints], qpos[self.puck] = q, puck
        scene.set_qpos(qpos)

    def expert(self, rng: np.random.Generator) -> Expert:
        return _ArmPushExpert(self, rng)

    def visual_state(self, qpos: np.ndarray) -> np.ndarray:
        """The arm's joint positions and the puck's position."""
        return np.concatenate([qpos[..., self.joints], qpos[..., self.puck]], axis=-1)

    def distance(self, qpos: np.ndarray, goal: np.ndarray) -> float:
        """Puck to its goal position, m."""
        return float(np.linalg.norm(qpos[self.puck] - goal[self.puck]))

    def success(self, qpos: np.ndarray, goal: np.ndarray) -> bool:
        return self.distance(qpos, goal) <= self.settings.tolerance_m
