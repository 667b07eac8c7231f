"""The task interface: what a scene is asked to do, judged on physics states (docs/tasks.md).

A task reads the scene's full physics positions (`Scene.qpos()`), so its success and distance are pure
functions of two states, the current one and the goal's: tests judge hand-placed states. Its expert is a
scripted or noisy policy that makes the recorded trajectories goals are taken from (runtime/sim/goal_sets.py)
and the episodes models are trained on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from runtime.sim.scene import Scene


class TaskSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Expert(ABC):
    """A policy for one episode: actions from the scene's current state."""

    @abstractmethod
    def __call__(self, scene: Scene) -> np.ndarray: ...


class Task(ABC):
    name: ClassVar[str]
    scene: ClassVar[str]  # the shipped scene it is played in
    settings_type: ClassVar[type[TaskSettings]] = TaskSettings

    def __init__(self, scene: Scene, settings: dict[str, Any] | None = None) -> None:
        self.settings = self.settings_type.model_validate(settings or {})
        self.model = scene.model

    def qpos_index(self, joint: str) -> int:
        """Where a hinge or slide joint's position sits in qpos."""
        return int(self.model.jnt_qposadr[self.model.joint(joint).id])

    def qpos_indices(self, *joints: str) -> list[int]:
        """Where these hinge or slide joints' positions sit in qpos, in order."""
        return [self.qpos_index(joint) for joint in joints]

    def joint_limits(self, *joints: str) -> np.ndarray:
        """(len(joints), 2) [low, high] ranges of these joints, from the MJCF."""
        return self.model.jnt_range[[self.model.joint(joint).id for joint in joints]].copy()

    @abstractmethod
    def reset(self, scene: Scene, rng: np.random.Generator) -> None:
        """Put the scene in a random start state of this task."""

    @abstractmethod
    def expert(self, rng: np.random.Generator) -> Expert:
        """A fresh expert for one episode."""

    def data_expert(self, rng: np.random.Generator) -> Expert:
        """The policy training episodes are recorded with (runtime/sim/task_data.py); the expert by default.
        A task overrides it when the expert alone never shows the model something planners will try."""
        return self.expert(rng)

    @abstractmethod
    def distance(self, qpos: np.ndarray, goal: np.ndarray) -> float:
        """How far state `qpos` is from the goal state, in the task's own units (docs/tasks.md)."""

    @abstractmethod
    def success(self, qpos: np.ndarray, goal: np.ndarray) -> bool:
        """Whether state `qpos` counts as having reached the goal state."""

    def visual_state(self, qpos: np.ndarray) -> np.ndarray | None:
        """What the camera shows that the task is about, from physics positions qpos (..., nq): training anchors
        the visual latent to it (docs/training.md), so latent distance to a goal image measures this. None: the
        proprio joint positions, enough when the robot is all that moves."""
        return None

    def metrics(self, qpos: np.ndarray, goal: np.ndarray) -> dict[str, float]:
        """Extra per-episode measures beside success and distance (e.g. Push-T's coverage)."""
        return {}
