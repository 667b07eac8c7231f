"""The simulator as the world model: what the planner and its cost reach with perfect perception and dynamics.

`edgeloop eval --task NAME --oracle` plans with the same optimizer, settings and cost as the model's run,
but its latent is the one the model was trained to have, computed from the true physics state
(`basis @ normalized visual state`, planning/training.py), and its predictor is MuJoCo itself, every sample
rolled out one control period per call in one `mujoco.rollout` batch. The gap between a model and its oracle
is what a better model can win; the oracle's own shortfall is the planner's and the cost's (docs/tasks.md).

The latent carries the full physics state after the visual part, so `predict` can continue from it. `encode`
reads the bound scene's state whatever image it is given, so it must be called with the scene in the state
the image shows, as the task evaluation does.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np
from mujoco import rollout

from perception.manifest import Manifest
from planning.visual_basis import visual_basis
from runtime.sim.scene import Scene
from runtime.sim.tasks import Task

_STATE = mujoco.mjtState.mjSTATE_FULLPHYSICS  # time, qpos, qvel, act, ...: enough to continue a rollout


class OracleError(ValueError):
    pass


class OracleModel:
    """Encoder and predictor of a task's scene, in the latent space of `manifest`'s model."""

    def __init__(self, task: Task, scene: Scene, manifest: Manifest, threads: int = 1) -> None:
        target: dict[str, Any] = (manifest.training or {}).get("metrics", {}).get("visual_target", {})
        mean, std = target.get("mean", target.get("q_mean")), target.get("std", target.get("q_std"))  # older: q_
        if mean is None or std is None:
            raise OracleError(f"{manifest.name}: the manifest's training.metrics.visual_target has no state "
                              f"statistics (mean, std): the oracle needs a model trained with them")
        self.task, self.scene, self.model = task, scene, scene.model
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)
        self.visual_dim = manifest.visual_dim
        self.basis = visual_basis(self.visual_dim, len(self.mean)).astype(np.float64)
        self.state_size = mujoco.mj_stateSize(self.model, _STATE)
        self.latent_dim = self.visual_dim + self.state_size
        self._qpos = slice(1, 1 + self.model.nq)  # after the time
        self._substeps = scene.spec.physics_substeps
        self._datas = [mujoco.MjData(self.model) for _ in range(threads)]
        if len(self._visual_state(scene.qpos())) != len(self.mean):
            raise OracleError(f"{manifest.name}: trained on a visual state of {len(self.mean)} values; task "
                              f"{task.name!r} has {len(self._visual_state(scene.qpos()))}")

    def _visual_state(self, qpos: np.ndarray) -> np.ndarray:
        state = self.task.visual_state(qpos)
        return qpos[..., self.scene.proprio_qpos_indices] if state is None else state

    def _visual(self, qpos: np.ndarray) -> np.ndarray:
        return ((self._visual_state(qpos) - self.mean) / self.std) @ self.basis.T

    def encode(self, frame_bgr: np.ndarray, proprio: np.ndarray | None) -> np.ndarray:
        state = np.empty(self.state_size)
        mujoco.mj_getState(self.model, self.scene.data, state, _STATE)
        return np.concatenate([self._visual(state[self._qpos]), state]).astype(np.float32)

    def encode_goal_image(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.encode(frame_bgr, None)[: self.visual_dim]

    def predict(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Every sample one control period on: the action held for the scene's physics substeps."""
        states = latents[:, self.visual_dim:].astype(np.float64)
        ctrl = self.scene.controls(actions.astype(np.float64), states[:, self._qpos])
        control = np.broadcast_to(ctrl[:, None, :], (len(ctrl), self._substeps, ctrl.shape[1]))
        trajectory, _ = rollout.rollout(self.model, self._datas, states, np.ascontiguousarray(control))
        last = trajectory[:, -1]
        return np.concatenate([self._visual(last[:, self._qpos]), last], axis=1).astype(np.float32)
