"""The planner's cost: weighted terms over latent rollouts and the action sequences that produced them.

Latent terms compare predicted latents with a goal step by step as the rollout runs; action terms are
computed once per batch in normalized action units, so their weights mean the same on every axis.
All terms accumulate into a caller-owned (N,) buffer, so scoring a batch allocates no (N, ...) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from planning.settings import CostSettings, DistanceTerm

_EPS = 1e-12


@dataclass(frozen=True)
class Goal:
    """What the planner drives to: a visual latent, a proprio-latent (state) goal, or both."""

    visual: np.ndarray | None = None  # (visual_dim,)
    state: np.ndarray | None = None  # (latent_dim - visual_dim,)


class RolloutCost:
    """Scores N rollouts of horizon H against a `Goal` with the terms and weights of `CostSettings`."""

    def __init__(self, settings: CostSettings, visual_dim: int, latent_dim: int, samples: int, horizon: int,
                 action_dim: int, hold_still: np.ndarray) -> None:
        self.settings = settings
        self.visual_dim = visual_dim
        self.horizon = horizon
        self.hold_still = np.asarray(hold_still, dtype=np.float32)  # (A,) normalized zero physical action
        self._scratch = np.empty((samples, max(visual_dim, latent_dim - visual_dim)), dtype=np.float32)
        self._dot = np.empty(samples, dtype=np.float32)
        self._norm = np.empty(samples, dtype=np.float32)
        self._term = np.empty(samples, dtype=np.float64)  # the cost buffer's dtype: added without a cast buffer
        self._action_scratch = np.empty((samples, horizon, action_dim), dtype=np.float32)
        self._steps_scratch = np.empty((samples, horizon, max(visual_dim, latent_dim - visual_dim)), dtype=np.float32)
        self._per_step = np.empty((samples, horizon), dtype=np.float32)
        self._per_step_norm = np.empty((samples, horizon), dtype=np.float32)

    def add_actions(self, raw: np.ndarray, samples: np.ndarray, previous: np.ndarray | None,
                    out: np.ndarray) -> None:
        """Action terms of normalized sequences (N, H, A): `raw` before clipping, `samples` after.

        `previous` is the last command sent, normalized (A,), or None when there is none.
        """
        settings = self.settings
        scratch = self._action_scratch
        if settings.action_magnitude.weight > 0:
            np.subtract(samples, self.hold_still, out=scratch)
            out += settings.action_magnitude.weight * np.einsum("nha,nha->n", scratch, scratch)
        if settings.action_rate.weight > 0:
            changes = scratch[:, : self.horizon - 1]
            np.subtract(samples[:, 1:], samples[:, :-1], out=changes)
            rate = np.einsum("nha,nha->n", changes, changes)
            if previous is not None:
                first = np.subtract(samples[:, 0], previous, out=scratch[:, -1])
                rate += np.einsum("na,na->n", first, first)
            out += settings.action_rate.weight * rate
        if settings.bounds.weight > 0:
            np.abs(raw, out=scratch)
            scratch -= 1.0
            np.maximum(scratch, 0.0, out=scratch)
            out += settings.bounds.weight * scratch.sum(axis=(1, 2))

    def add_step(self, latents: np.ndarray, goal: Goal, step: int, out: np.ndarray) -> None:
        """Latent terms of predicted latents (N, Z) at horizon step `step`."""
        if goal.visual is not None:
            self._add_distance(self.settings.goal, latents[:, : self.visual_dim], goal.visual, step, out)
        if goal.state is not None:
            self._add_distance(self.settings.state_goal, latents[:, self.visual_dim :], goal.state, step, out)

    def add_steps(self, latents: np.ndarray, goal: Goal, out: np.ndarray) -> None:
        """Latent terms of the predicted latents of every horizon step at once, (N, H, Z): add_step at each step,
        in a few whole-batch operations instead of a few per step."""
        if goal.visual is not None:
            self._add_distances(self.settings.goal, latents[:, :, : self.visual_dim], goal.visual, out)
        if goal.state is not None:
            self._add_distances(self.settings.state_goal, latents[:, :, self.visual_dim :], goal.state, out)

    def _add_distances(self, term: DistanceTerm, part: np.ndarray, target: np.ndarray, out: np.ndarray) -> None:
        if term.weight == 0:
            return
        if term.steps == "last":
            self._add_distance(term, np.ascontiguousarray(part[:, -1]), target, self.horizon - 1, out)
            return
        per_step = self._per_step
        if term.distance == "cosine":
            similarity = np.einsum("nhz,z->nh", part, target, out=per_step, casting="same_kind")
            norm = np.einsum("nhz,nhz->nh", part, part, out=self._per_step_norm, casting="same_kind")
            np.sqrt(norm, out=norm)
            norm *= np.linalg.norm(target)
            similarity /= np.maximum(norm, _EPS, out=norm)
            out += term.weight * (per_step.shape[1] - per_step.sum(axis=1))
            return
        diff = np.subtract(part, target, out=self._steps_scratch[:, :, : part.shape[2]])
        if term.distance == "l1":
            out += term.weight * np.abs(diff, out=diff).sum(axis=(1, 2))
        else:
            np.sqrt(np.einsum("nhz,nhz->nh", diff, diff, out=per_step), out=per_step)
            out += term.weight * per_step.sum(axis=1)

    def _add_distance(self, term: DistanceTerm, part: np.ndarray, target: np.ndarray, step: int,
                      out: np.ndarray) -> None:
        if term.weight == 0 or (term.steps == "last" and step != self.horizon - 1):
            return
        if term.distance == "cosine":
            # same_kind: a Python-API predictor may return float64 latents; the scratch stays float32.
            similarity = np.matmul(part, target, out=self._dot, casting="same_kind")
            norm = np.einsum("ij,ij->i", part, part, out=self._norm, casting="same_kind")
            np.sqrt(norm, out=norm)
            norm *= np.linalg.norm(target)
            similarity /= np.maximum(norm, _EPS, out=norm)
            distance = np.subtract(1.0, similarity, out=self._term)
            distance *= term.weight
            out += distance
            return
        diff = np.subtract(part, target, out=self._scratch[:, : part.shape[1]])
        if term.distance == "l1":
            out += term.weight * np.abs(diff, out=diff).sum(axis=1)
        else:
            out += term.weight * np.sqrt(np.einsum("ij,ij->i", diff, diff))
