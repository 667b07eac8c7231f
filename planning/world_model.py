"""The world model over inference engines: encode observations, roll latents forward under actions."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from perception.engines import Backend, Engine, create_engine
from perception.manifest import (
    ENCODER_IMAGE,
    ENCODER_LATENT,
    ENCODER_PROPRIO,
    PREDICTOR_ACTION,
    PREDICTOR_LATENT,
    PREDICTOR_NEXT,
    ROLLOUT_ACTIONS,
    ROLLOUT_LATENT,
    ROLLOUT_LATENTS,
    Manifest,
)
from perception.preprocess import Preprocessor


def goal_state_problem(proprio_dim: int, joints_given: int) -> str | None:
    """Why `joints_given` joint positions cannot be a goal state of a model with this proprio input; None if
    they can (the proprio input is [q, dq]: positions, then velocities of the same joints)."""
    if proprio_dim % 2:
        return f"the model's proprio input has {proprio_dim} values, not [q, dq] pairs, so joint-state goals do " \
               "not apply to it"
    if joints_given != proprio_dim // 2:
        return f"{joints_given} joint positions given; the model's proprio input [q, dq] ({proprio_dim} values) " \
               f"takes {proprio_dim // 2}"
    return None


class WorldModel:
    """Encoder + action-conditioned predictor (+ its rollout model, when the manifest has one) on one backend.

    `rollout_steps` (the planner's predictor steps per plan) sets a TensorRT rollout engine's horizon profile.
    """

    def __init__(self, manifest: Manifest, backend: Backend = "onnxruntime", threads: int = 1,
                 undistort: Callable[[np.ndarray], np.ndarray] | None = None, *, engine_cache: Path | None = None,
                 cuda_graph: bool = False, planner_samples: int | None = None,
                 rollout_steps: int | None = None) -> None:
        self.manifest = manifest
        engine = functools.partial(create_engine, manifest, backend=backend, threads=threads,
                                   engine_cache=engine_cache, cuda_graph=cuda_graph,
                                   predictor_samples=planner_samples, rollout_steps=rollout_steps)
        self.encoder, self.predictor = engine("encoder"), engine("predictor")
        self.rollout_engine: Engine | None = engine("rollout") if manifest.rollout is not None else None
        self.backend = self.encoder.backend
        self.preprocess = Preprocessor(manifest.image, undistort=undistort)  # camera calibration, when configured
        self.latent_dim = manifest.latent_dim
        self.visual_dim = manifest.visual_dim
        self.action_dim = manifest.action_dim
        self.action_low = np.asarray(manifest.action_low, dtype=np.float32)
        self.action_high = np.asarray(manifest.action_high, dtype=np.float32)
        self._proprio = np.zeros((1, manifest.proprio_dim), dtype=np.float32)
        self._blank_image = np.zeros((1, 3, manifest.image.height, manifest.image.width), dtype=np.float32)

    def encode(self, frame_bgr: np.ndarray, proprio: np.ndarray | None) -> np.ndarray:
        """Latent (latent_dim,) of one BGR frame and its proprio vector (zeros when unknown)."""
        if proprio is None:
            self._proprio.fill(0.0)
        elif np.size(proprio) != self.manifest.proprio_dim:
            raise ValueError(f"proprio: {np.size(proprio)} values given; the model's encoder takes "
                             f"{self.manifest.proprio_dim}")
        else:
            self._proprio[0] = proprio
        image = self.preprocess(frame_bgr)[None]  # one frame -> a batch of one
        out = self.encoder.run({ENCODER_IMAGE: image, ENCODER_PROPRIO: self._proprio})
        return out[ENCODER_LATENT][0]

    def encode_goal_image(self, frame_bgr: np.ndarray) -> np.ndarray:
        """Visual latent (visual_dim,) of a goal view; goals carry no robot state."""
        return self.encode(frame_bgr, None)[: self.visual_dim].copy()

    def encode_goal_state(self, q: np.ndarray) -> np.ndarray:
        """Proprio part of the latent (latent_dim - visual_dim,) for joint positions q held still (dq = 0)."""
        q = np.asarray(q, dtype=np.float32).ravel()
        problem = goal_state_problem(self.manifest.proprio_dim, q.size)
        if problem is not None:
            raise ValueError(f"goal state: {problem}")
        if not np.all(np.isfinite(q)):
            raise ValueError("goal state: joint positions must be finite")
        proprio = np.concatenate([q, np.zeros_like(q)])[None]
        # The proprio branch never sees the image, so a blank image leaves this part of the latent unchanged.
        out = self.encoder.run({ENCODER_IMAGE: self._blank_image, ENCODER_PROPRIO: proprio})
        return out[ENCODER_LATENT][0, self.visual_dim:].copy()

    def predict(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """One batched predictor step: latents (N, Z) and physical actions (N, A) -> next latents (N, Z)."""
        return self.predictor.run({PREDICTOR_LATENT: latents, PREDICTOR_ACTION: actions})[PREDICTOR_NEXT]

    @property
    def planner_rollout(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray] | None:
        """What a Planner takes as its `rollout`: this model's when one call runs it (a rollout model), else None,
        so the planner steps `predict` into its own buffers instead of through `rollout`'s stacking."""
        return self.rollout if self.rollout_engine is not None else None

    def rollout(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Latents (N, Z) rolled under action sequences (N, S, A) -> every step's latent (N, S, Z).

        One call to the rollout model when the manifest has one; else S predictor steps.
        """
        if self.rollout_engine is not None:
            return self.rollout_engine.run({ROLLOUT_LATENT: latents, ROLLOUT_ACTIONS: actions})[ROLLOUT_LATENTS]
        steps = []
        for step in range(actions.shape[1]):
            latents = self.predict(latents, np.ascontiguousarray(actions[:, step]))
            steps.append(latents)
        return np.stack(steps, axis=1)
