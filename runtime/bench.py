"""`edgeloop bench`: per-stage latency of the model and planner, every backend side by side in one run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from calibration.undistort import Undistorter
from perception.manifest import load_manifest, manifest_sha256
from planning.planner import Planner
from planning.settings import CostSettings, DistanceTerm, PlannerSettings
from planning.world_model import WorldModel
from runtime.config import RunConfig
from runtime.safety import SafetyFilter
from runtime.world import load_world_model


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return float(np.median(times) * 1000.0)


def bench_model(config: RunConfig, backends: list[str], repeats: int) -> dict[str, Any]:
    """Median ms of preprocess, encode (batch 1), one predictor step at batch N, and one whole plan per backend;
    with `calibration.camera` set, also the undistortion of one frame at the calibrated size."""
    manifest = load_manifest(config.model.manifest)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (manifest.image.height, manifest.image.width, 3), dtype=np.uint8)
    proprio = rng.standard_normal(manifest.proprio_dim).astype(np.float32)
    n = config.planner.samples
    results: dict[str, Any] = {}
    for backend in backends:
        on_backend = config.model.model_copy(update={"backend": backend})
        model = load_world_model(config.model_copy(update={"model": on_backend}))
        latents = np.repeat(model.encode(frame, proprio)[None], n, axis=0)
        actions = rng.uniform(model.action_low, model.action_high, (n, manifest.action_dim)).astype(np.float32)
        planner = planner_for(config.planner, model)
        planner.set_goal(model.encode_goal_image(frame))
        start_latent = model.encode(frame, proprio)
        results[backend] = {
            "preprocess_ms": median_ms(partial(model.preprocess, frame), repeats),
            "encode_ms": median_ms(partial(model.encode, frame, proprio), repeats),
            "predict_batch_ms": median_ms(partial(model.predict, latents, actions), repeats),
            "plan_ms": median_ms(partial(planner.plan, start_latent), max(10, repeats // 5)),
        }
    undistort_ms = None
    if config.calibration.camera is not None:
        # Per camera frame, before preprocessing; the same on every backend.
        undistort = Undistorter.from_file(config.calibration.camera)
        camera_frame = rng.integers(0, 256, (undistort.size[1], undistort.size[0], 3), dtype=np.uint8)
        undistort_ms = median_ms(partial(undistort, camera_frame), repeats)
    return {
        "model_sha256": manifest_sha256(config.model.manifest),
        "samples": n,
        "horizon": config.planner.horizon,
        "iterations": config.planner.iterations,
        "threads": config.model.threads,
        "repeats": repeats,
        "backends": results,
        "undistort_ms": undistort_ms,
    }


# -- closed-loop planner benchmark ----------------------------------------------------------------------------------

class Policy(Protocol):
    name: str
    iterations_done: list[int]  # per `act`: optimizer iterations the plan ran

    def set_goal(self, visual_latent: np.ndarray, state_latent: np.ndarray | None = None) -> None: ...

    def act(self, latent: np.ndarray) -> np.ndarray: ...


class EdgeloopPolicy:
    """Our planner on our engine (the config's backend)."""

    def __init__(self, name: str, planner: Planner) -> None:
        self.name = name
        self.planner = planner
        self.iterations_done: list[int] = []

    def set_goal(self, visual_latent: np.ndarray, state_latent: np.ndarray | None = None) -> None:
        self.planner.set_goal(visual_latent, state_latent)
        self.planner.reset_warm_start()

    def act(self, latent: np.ndarray) -> np.ndarray:
        result = self.planner.plan(latent)
        self.iterations_done.append(result.iterations)
        return result.action


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

        if settings.cost.bounds.weight > 0:
            # pytorch-mppi clamps samples to the bounds before its cost sees them: nothing to penalize.
            raise ValueError("pytorch_mppi: planner.cost.bounds has no counterpart in pytorch-mppi, which clamps "
                             "samples before scoring them; set planner.cost.bounds.weight=0 for this comparison")
        torch.set_num_threads(threads)
        self._torch, self.device = torch, device
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


def closed_loop(policy: Policy, model: WorldModel, goals: list[dict[str, Any]], goal_dir: Path, *,
                control_period_s: float, tolerance_m: float = 0.05, settle_ticks: int = 6,
                max_ticks: int = 160, state_goals: bool = False) -> dict[str, Any]:
    """Drive the in-process SimArm to each goal image; each goal starts from the previous goal's pose.

    Identical tasks for every policy: same start poses, goals, physics and control period. Only `act`
    is timed (the plan), not rendering or encoding, which all policies share. With `state_goals` each goal
    also carries its joint state (the goal image's pose, held still) as a state goal.
    """
    import cv2

    from runtime.sim.arm import SimArm

    arm = SimArm((model.manifest.image.height, model.manifest.image.width))
    safety = SafetyFilter(model.action_low, model.action_high, max_rate=40.0, period_s=control_period_s)
    plan_ms: list[float] = []
    outcomes = []
    start_q = np.zeros(2)
    for goal in goals:
        image = cv2.imread(str(goal_dir / goal["image"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{goal_dir / goal['image']}: goal image missing or unreadable")
        target = np.asarray(goal["ee"])
        arm.reset(start_q)
        safety.reset()
        goal_state = model.encode_goal_state(np.asarray(goal["q"], dtype=np.float32)) if state_goals else None
        policy.set_goal(model.encode_goal_image(image), goal_state)
        within = 0
        ticks = 0
        while ticks < max_ticks and within < settle_ticks:
            state = arm.state()
            latent = model.encode(arm.render(), np.concatenate([state.q, state.dq]))
            started = time.perf_counter()
            action = policy.act(latent)
            plan_ms.append((time.perf_counter() - started) * 1000.0)
            verdict = safety(action)
            arm.command_velocity(verdict.action if verdict.action is not None else np.zeros(2))
            arm.step(control_period_s)
            ticks += 1
            within = within + 1 if np.linalg.norm(arm.state().ee - target) < tolerance_m else 0
        distance = float(np.linalg.norm(arm.state().ee - target))
        outcomes.append({"reached": within >= settle_ticks, "distance": distance, "ticks": ticks})
        start_q = np.asarray(goal["q"], dtype=np.float64)
    arm.close()
    ms = np.asarray(plan_ms)
    return {
        "mean_iterations": float(np.mean(policy.iterations_done)),
        "ms_per_plan": float(np.median(ms)),
        "ms_per_plan_p90": float(np.percentile(ms, 90)),
        "success_rate": sum(o["reached"] for o in outcomes) / len(outcomes),
        "mean_final_distance": float(np.mean([o["distance"] for o in outcomes])),
        "mean_ticks": float(np.mean([o["ticks"] for o in outcomes])),
        "goals": outcomes,
    }


def load_goal_set(manifest_path: Path, count: int) -> tuple[list[dict[str, Any]], Path]:
    goals_file = manifest_path.parent / "goals" / "goals.json"
    goals = json.loads(goals_file.read_text())["goals"]
    if len(goals) < count:
        raise ValueError(f"{goals_file}: asked for {count} goals, the set has {len(goals)}")
    return goals[:count], goals_file.parent


def bench_planner(config: RunConfig, goal_count: int, planners: list[str], *, mppi_noise_std: float | None = None,
                  mppi_temperature: float = 0.1, tolerance_m: float = 0.05) -> dict[str, Any]:
    """Ours and pytorch-mppi side by side: same predictor weights, cost, samples x horizon, goals and sim.

    pytorch-mppi samples with `mppi_noise_std` (normalized units; default: the config's `planner.mppi.noise_std`)
    and softmins with `mppi_temperature` (its lambda, in cost units, which have no counterpart in ours).
    """
    model = load_world_model(config)
    manifest = model.manifest
    goals, goal_dir = load_goal_set(config.model.manifest, goal_count)
    noise_std = config.planner.mppi.noise_std if mppi_noise_std is None else mppi_noise_std
    results: dict[str, Any] = {}
    for name in planners:
        policy: Policy
        if name == "pytorch_mppi":
            if manifest.reference is None:
                raise ValueError(f"{config.model.manifest}: pytorch_mppi needs the manifest's torch reference weights")
            policy = PytorchMppiPolicy(manifest.path_of(manifest.reference), config.planner, manifest.visual_dim,
                                       manifest.latent_dim, model.action_low, model.action_high,
                                       noise_std=noise_std, temperature=mppi_temperature,
                                       device="cuda" if model.backend == "tensorrt" else "cpu",
                                       threads=config.model.threads)
        else:
            settings = config.planner.model_copy(update={"optimizer": name})
            policy = EdgeloopPolicy(name, planner_for(settings, model))
        results[name] = closed_loop(policy, model, goals, goal_dir, control_period_s=manifest.control_period_s,
                                    tolerance_m=tolerance_m)
        results[name]["engine"] = f"torch ({policy.device})" if isinstance(policy, PytorchMppiPolicy) else model.backend
    if "pytorch_mppi" in results:
        theirs = results["pytorch_mppi"]["ms_per_plan"]
        for entry in results.values():
            entry["speedup_vs_pytorch_mppi"] = theirs / entry["ms_per_plan"]
    return {
        "model_sha256": manifest_sha256(config.model.manifest),
        "samples": config.planner.samples,
        "horizon": config.planner.horizon,
        "iterations": config.planner.iterations,
        "cost": config.planner.cost.model_dump(),
        "pytorch_mppi": {"noise_std": noise_std, "temperature": mppi_temperature},
        "goals": goal_count,
        "tolerance_m": tolerance_m,
        "planners": results,
    }


def planner_for(settings: PlannerSettings, model: WorldModel) -> Planner:
    """A planner that runs every configured iteration: benchmarks measure the configured work, so the
    config's `deadline_ms` (which would cut plans by how loaded the machine is) is left out."""
    settings = settings.model_copy(update={"deadline_ms": None})
    return Planner(settings, model.predict, model.latent_dim, model.visual_dim, model.action_low, model.action_high,
                   model.manifest.control_period_s)


def sweep_planner(config: RunConfig, goal_count: int, axes: dict[str, list[int]], *,
                  tolerance_m: float = 0.05) -> list[dict[str, Any]]:
    """Closed-loop success and plan ms, varying one of samples/horizon/iterations at a time from the config."""
    # TensorRT's predictor profile must hold the largest sample count the sweep tries.
    largest = max([config.planner.samples, *axes.get("samples", [])])
    widest = config.planner.model_copy(update={"samples": largest})
    model = load_world_model(config.model_copy(update={"planner": widest}))
    manifest = model.manifest
    goals, goal_dir = load_goal_set(config.model.manifest, goal_count)
    rows = []
    for key, values in axes.items():
        for value in values:
            update: dict[str, Any] = {key: value}
            if key == "samples":
                update["cem"] = config.planner.cem.model_copy(update={"elites": min(config.planner.cem.elites, value)})
            settings = config.planner.model_copy(update=update)
            policy = EdgeloopPolicy(settings.optimizer, planner_for(settings, model))
            result = closed_loop(policy, model, goals, goal_dir, control_period_s=manifest.control_period_s,
                                 tolerance_m=tolerance_m)
            rows.append({"samples": settings.samples, "horizon": settings.horizon, "iterations": settings.iterations,
                         "mean_iterations": result["mean_iterations"], "varied": key,
                         "success_rate": result["success_rate"], "ms_per_plan": result["ms_per_plan"],
                         "mean_ticks": result["mean_ticks"], "mean_final_distance": result["mean_final_distance"]})
    return rows
