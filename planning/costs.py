"""Costs of latent rollouts against a goal latent."""

from __future__ import annotations

import numpy as np

from planning.settings import CostSettings


class GoalDistanceCost:
    """Distance of the visual part of predicted latents to the goal's visual latent.

    Accumulates into a caller-owned cost buffer so a rollout allocates nothing per step.
    """

    def __init__(self, settings: CostSettings, visual_dim: int) -> None:
        self.settings = settings
        self.visual_dim = visual_dim

    def add_step(self, latents: np.ndarray, goal: np.ndarray, step: int, horizon: int, out: np.ndarray) -> None:
        if self.settings.steps == "last" and step != horizon - 1:
            return
        diff = latents[:, : self.visual_dim] - goal
        if self.settings.distance == "l1":
            out += np.abs(diff).sum(axis=1)
        else:
            out += np.sqrt(np.einsum("ij,ij->i", diff, diff))
