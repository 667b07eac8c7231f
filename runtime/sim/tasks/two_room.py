"""two-room: a point mass to a goal point in either of two rooms joined by one door; success within 16/224 of
the floor's side (the field's TwoRoom criterion)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from runtime.sim.scene import Scene
from runtime.sim.tasks.base import Expert, Task, TaskSettings

SIDE_M = 1.0  # the floor of two_room.xml
DOOR = np.array([0.0, 0.0])  # the door's centre, in the wall at x = 0
DOOR_HALF_WIDTH = 0.1
SPEED = 0.5  # the actuators' ctrlrange, m/s


class TwoRoomSettings(TaskSettings):
    tolerance: float = Field(16 / 224, gt=0, description="Success radius as a fraction of the floor's side.")


class _TwoRoomExpert(Expert):
    """Heads for a random point, through the door when it lies in the other room, with some noise. With
    `direct_share` > 0 it heads straight for that share of its targets instead, into the wall."""

    def __init__(self, indices: list[int], rng: np.random.Generator, direct_share: float = 0.0) -> None:
        self.indices, self.rng, self.direct_share = indices, rng, direct_share
        self._new_target(None)

    def _new_target(self, position: np.ndarray | None) -> None:
        self.target = random_point(self.rng)
        self.direct = self.direct_share > 0 and self.rng.random() < self.direct_share  # no draw for experts
        if self.direct and position is not None:  # a point in the other room, straight: into the wall
            self.target[0] = -np.sign(position[0] or 1.0) * abs(self.target[0])

    def __call__(self, scene: Scene) -> np.ndarray:
        position = scene.qpos()[self.indices]
        if np.linalg.norm(self.target - position) < 0.03 or (self.direct and self.rng.random() < 0.03):
            self._new_target(position)
        waypoint = self.target
        crossing = not self.direct and np.sign(position[0]) != np.sign(self.target[0])
        if crossing and abs(position[1] - DOOR[1]) > DOOR_HALF_WIDTH - 0.05:
            waypoint = DOOR + np.array([np.sign(position[0]) * 0.06, 0.0])  # line up with the door first
        elif crossing:
            waypoint = DOOR + np.array([np.sign(self.target[0]) * 0.1, 0.0])
        heading = waypoint - position
        velocity = SPEED * heading / max(float(np.linalg.norm(heading)), 0.1) + 0.1 * self.rng.standard_normal(2)
        return np.clip(velocity, -SPEED, SPEED)


def random_point(rng: np.random.Generator) -> np.ndarray:
    """A point in a random room, clear of the walls."""
    side = rng.choice([-1.0, 1.0])
    return np.array([side * rng.uniform(0.08, 0.44), rng.uniform(-0.44, 0.44)])


class TwoRoom(Task):
    name = "two-room"
    scene = "two-room"
    settings_type = TwoRoomSettings

    def __init__(self, scene: Scene, settings: dict[str, Any] | None = None) -> None:
        super().__init__(scene, settings)
        self.settings: TwoRoomSettings
        self.agent = self.qpos_indices("agent_x", "agent_y")

    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        qpos = scene.qpos()
        qpos[self.agent] = random_point(rng)
        scene.set_qpos(qpos)

    def expert(self, rng: np.random.Generator) -> Expert:
        return _TwoRoomExpert(self.agent, rng)

    def data_expert(self, rng: np.random.Generator) -> Expert:
        # Experts always use the door, so a model trained on them alone never sees the wall stop the agent, and
        # plans straight through it; a third of the targets are headed for straight, into the wall.
        return _TwoRoomExpert(self.agent, rng, direct_share=0.35)

    def distance(self, qpos: np.ndarray, goal: np.ndarray) -> float:
        """Agent to goal point, as a fraction of the floor's side."""
        return float(np.linalg.norm(qpos[self.agent] - goal[self.agent])) / SIDE_M

    def success(self, qpos: np.ndarray, goal: np.ndarray) -> bool:
        return self.distance(qpos, goal) <= self.settings.tolerance
