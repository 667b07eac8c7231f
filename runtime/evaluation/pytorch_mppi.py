"""pytorch-mppi's MPPI as a policy of the closed-loop benchmark, scored with our config's cost terms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from planning.settings import CostSettings, DistanceTerm, PlannerSettings


class PytorchMppiPolicy:
    """pytorch-mppi's MPPI on the same trained predictor, run by torch, with the config's cost terms.

    On `device` "cuda" when ours runs TensorRT (GPU against GPU), else on the CPU with our thread count.
    `noise_std` is in normalized action units like ours; `temperature` is pytorch-mppi's lambda, in cost units.
    """

    name = "pytorch_mppi"

    def __init__(self, weights: Path, settings: PlannerSettings, visual_dim: int, latent_dim: int,
                 action_low: np.ndarray, action_high: np.ndarray, noise_std: float, temperature: float, *,
                 device: str = "cpu", threads: int = 1) -> None:
        import torch
        try:
            from pytorch_mppi import MPPI
        except ImportError as exc:
            raise ImportError("pytorch_mppi: not installed; install the bench extra: "
                              "pip install -e '.[bench]'") from exc

        from perception.nets import load_reference

        if settings.action_block != 1:
            raise ValueError("pytorch_mppi: planner.action_block has no counterpart in pytorch-mppi, which plans one "
                             "action per step; set planner.action_block=1 for this comparison")
        if settings.cost.bounds.weight > 0:
            # pytorch-mppi clamps samples to the bounds before its cost sees them: nothing to penalize.
            raise ValueError("pytorch_mppi: planner.cost.bounds has no counterpart in pytorch-mppi, which clamps "
                             "samples before scoring them; set planner.cost.bounds.weight=0 for this comparison")
        torch.set_num_threads(threads)
        self._torch, self.device = torch, device
        self._seed = settings.seed
        self.iterations_done: list[int] = []
        _config, _encoder, predictor = load_reference(weights)
        predictor.eval().to(device)
        self._goal = _TorchGoal(settings.cost, visual_dim, settings.horizon, action_low, action_high, device)
        half_range = torch.from_numpy((action_high - action_low) / 2)

        def dynamics(state: torch.Tensor, action: torch.Tensor, _step: int) -> torch.Tensor:
            return predictor(state, action)

        self._make = lambda: MPPI(
            dynamics, self._goal.running_cost, latent_dim,
            torch.diag((half_range * noise_std) ** 2).float().to(device),
            num_samples=settings.samples, horizon=settings.horizon, lambda_=temperature,
            u_min=torch.from_numpy(action_low).float().to(device),
            u_max=torch.from_numpy(action_high).float().to(device), device=device, step_dependent_dynamics=True,
        )
        self._controller = self._make()

    def set_goal(self, visual_latent: np.ndarray, state_latent: np.ndarray | None = None) -> None:
        self._goal.set(visual_latent, state_latent)
        # pytorch-mppi samples from torch's global generator: seeded per goal, an episode is the same in every run
        # and whatever ran before it (ours are seeded by planner.seed alike).
        self._torch.manual_seed(self._seed)
        self._controller = self._make()

    def act(self, latent: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            state = self._torch.from_numpy(np.asarray(latent, dtype=np.float32)).to(self.device)
            action = self._controller.command(state)
        self.iterations_done.append(1)  # pytorch-mppi refines once per command
        return np.asarray(action.cpu().numpy(), dtype=np.float64)


class _TorchGoal:
    """Our cost terms (planning/costs.py) per rollout step in torch, in the form pytorch-mppi calls:
    goal and state-goal distances (every step or the last), action magnitude and rate in normalized units."""

    def __init__(self, cost: CostSettings, visual_dim: int, horizon: int, action_low: np.ndarray,
                 action_high: np.ndarray, device: str) -> None:
        import torch

        self._torch = torch
        self.cost, self.visual_dim, self.horizon = cost, visual_dim, horizon
        center, half_range = (action_high + action_low) / 2, (action_high - action_low) / 2
        self._center = torch.from_numpy(center).float().to(device)
        self._half_range = torch.from_numpy(half_range).float().to(device)
        self._hold_still = torch.from_numpy(np.clip(-center / half_range, -1.0, 1.0)).float().to(device)
        self._action_terms = cost.action_magnitude.weight > 0 or cost.action_rate.weight > 0
        self._device = device
        self.visual: torch.Tensor | None = None
        self.state: torch.Tensor | None = None
        # Normalized actions of step t - 1, for the rate term: pytorch-mppi 0.9 calls running_cost only while
        # rolling out, at t = 0, 1, ... in order, so the previous call was the previous step of the same batch.
        self._previous_step: torch.Tensor | None = None

    def set(self, visual: np.ndarray | None, state: np.ndarray | None) -> None:
        def tensor(value: np.ndarray | None) -> Any:
            return None if value is None else self._torch.from_numpy(np.asarray(value, np.float32)).to(self._device)
        self.visual, self.state = tensor(visual), tensor(state)

    def running_cost(self, latents: Any, action: Any, step: int) -> Any:
        # Only the terms with weight, as ours: no torch work is timed against them that ours skips.
        cost = self.cost
        total: Any = 0.0
        if self.visual is not None:
            total = total + self._distance(cost.goal, latents[:, : self.visual_dim], self.visual, step)
        if self.state is not None:
            total = total + self._distance(cost.state_goal, latents[:, self.visual_dim :], self.state, step)
        if self._action_terms:
            normalized = (action - self._center) / self._half_range
            if cost.action_magnitude.weight > 0:
                total = total + cost.action_magnitude.weight * ((normalized - self._hold_still) ** 2).sum(dim=1)
            if cost.action_rate.weight > 0 and step > 0 and self._previous_step is not None:
                total = total + cost.action_rate.weight * ((normalized - self._previous_step) ** 2).sum(dim=1)
            self._previous_step = normalized
        if isinstance(total, float):  # every term off at this step (e.g. a last-step goal before the last step)
            return self._torch.zeros(latents.shape[0], device=latents.device)
        return total

    def _distance(self, term: DistanceTerm, part: Any, target: Any, step: int) -> Any:
        if term.weight == 0 or (term.steps == "last" and step != self.horizon - 1):
            return 0.0
        if term.distance == "cosine":
            similarity = (part @ target) / (part.norm(dim=1) * target.norm()).clamp_min(1e-12)
            return term.weight * (1.0 - similarity)
        diff = part - target
        return term.weight * (diff.abs().sum(dim=1) if term.distance == "l1" else diff.norm(dim=1))
