"""The closed-loop planner task every policy is judged on: the in-process sim arm driven to held-out goal images."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from planning.planner import Planner
from planning.settings import PlannerSettings
from planning.world_model import WorldModel
from runtime.config import RunConfig
from runtime.safety import SafetyFilter


class Policy(Protocol):
    name: str
    iterations_done: list[int]  # per `act`: optimizer iterations the plan ran

    def set_goal(self, visual_latent: np.ndarray, state_latent: np.ndarray | None = None) -> None: ...

    def act(self, latent: np.ndarray) -> np.ndarray: ...


class EdgeloopPolicy:
    """Our planner on our engine (the config's backend), stepped as the runtime loop steps it: a plan's first
    `planner.execute_steps` actions go out on consecutive ticks before the next plan, whose warm start is
    shifted by the control periods executed since the last."""

    def __init__(self, name: str, planner: Planner) -> None:
        self.name = name
        self.planner = planner
        self.iterations_done: list[int] = []
        self._chunk: list[np.ndarray] = []
        self._ticks_since_plan: int | None = None

    def set_goal(self, visual_latent: np.ndarray, state_latent: np.ndarray | None = None) -> None:
        self.planner.set_goal(visual_latent, state_latent)
        self.planner.reset_warm_start()
        self._chunk, self._ticks_since_plan = [], None

    def act(self, latent: np.ndarray) -> np.ndarray:
        if not self._chunk:
            ticks = self._ticks_since_plan
            result = self.planner.plan(latent, elapsed_s=None if ticks is None else
                                       ticks * self.planner.control_period_s)
            self.iterations_done.append(result.iterations)
            self._chunk = list(result.sequence[: self.planner.settings.execute_steps])
            self._ticks_since_plan = 0
        self._ticks_since_plan = (self._ticks_since_plan or 0) + 1
        return self._chunk.pop(0)


def timed_act(policy: Policy, latent: np.ndarray, plan_ms: list[float]) -> np.ndarray:
    """`policy.act`, its time appended to `plan_ms` when it planned (not on ticks that execute a chunk)."""
    plans_before = len(policy.iterations_done)
    started = time.perf_counter()
    action = policy.act(latent)
    if len(policy.iterations_done) > plans_before:
        plan_ms.append((time.perf_counter() - started) * 1000.0)
    return action


def closed_loop(policy: Policy, model: WorldModel, goals: list[dict[str, Any]], goal_dir: Path, *,
                control_period_s: float, tolerance_m: float = 0.05, settle_ticks: int = 6,
                max_ticks: int = 160, state_goals: bool = False,
                on_goal: Callable[[], None] | None = None) -> dict[str, Any]:
    """Drive the in-process SimArm to each goal image; each goal starts from the previous goal's pose
    (`on_goal` after each).

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
        arm.reset_to(start_q)
        safety.reset()
        goal_state = model.encode_goal_state(np.asarray(goal["q"], dtype=np.float32)) if state_goals else None
        policy.set_goal(model.encode_goal_image(image), goal_state)
        within = 0
        ticks = 0
        while ticks < max_ticks and within < settle_ticks:
            state = arm.state()
            latent = model.encode(arm.render(), np.concatenate([state.q, state.dq]))
            action = timed_act(policy, latent, plan_ms)
            verdict = safety(action)
            arm.command_velocity(verdict.action if verdict.action is not None else np.zeros(2))
            arm.step(control_period_s)
            ticks += 1
            within = within + 1 if np.linalg.norm(arm.state().ee - target) < tolerance_m else 0
        distance = float(np.linalg.norm(arm.state().ee - target))
        outcomes.append({"reached": within >= settle_ticks, "distance": distance, "ticks": ticks})
        start_q = np.asarray(goal["q"], dtype=np.float64)
        if on_goal is not None:
            on_goal()
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


def planner_for(settings: PlannerSettings, model: WorldModel) -> Planner:
    """A planner that runs every configured iteration: benchmarks measure the configured work, so the
    config's `deadline_ms` (which would cut plans by how loaded the machine is) is left out."""
    settings = settings.model_copy(update={"deadline_ms": None})
    return Planner(settings, model.predict, model.latent_dim, model.visual_dim, model.action_low, model.action_high,
                   model.manifest.control_period_s, rollout=model.planner_rollout)


def policy_for(name: str, config: RunConfig, model: WorldModel, *, mppi_noise_std: float | None = None,
               mppi_temperature: float = 0.1) -> Policy:
    """A planner by name: one of ours with the config's settings, or `pytorch_mppi` on the model's torch
    reference weights (on CUDA when ours runs TensorRT) with the config's cost terms."""
    if name != "pytorch_mppi":
        return EdgeloopPolicy(name, planner_for(config.planner.model_copy(update={"optimizer": name}), model))
    from runtime.evaluation.pytorch_mppi import PytorchMppiPolicy

    manifest = model.manifest
    if manifest.reference is None:
        raise ValueError(f"{config.model.manifest}: pytorch_mppi needs the manifest's torch reference weights")
    noise_std = config.planner.mppi.noise_std if mppi_noise_std is None else mppi_noise_std
    return PytorchMppiPolicy(manifest.path_of(manifest.reference), config.planner, manifest.visual_dim,
                             manifest.latent_dim, model.action_low, model.action_high, noise_std=noise_std,
                             temperature=mppi_temperature, device="cuda" if model.backend == "tensorrt" else "cpu",
                             threads=config.model.threads)
