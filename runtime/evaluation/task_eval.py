"""`edgeloop eval --task NAME`: planners judged on a task's goal set, with intervals (docs/tasks.md).

Each episode starts at the goal set's start state, gets the goal as the image rendered at the goal state,
and runs until the task says success or the goal set's budget (2k control periods) is spent. Every planner
plays the same goals from the same states with the same model; results carry each goal's outcome, so two
runs (planners, models or precisions) compare paired on the goals where they disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

import numpy as np

from perception.manifest import Manifest, load_manifest, model_provenance
from planning.planner import Planner
from planning.world_model import WorldModel
from runtime.config import RunConfig
from runtime.evaluation.closed_loop import EdgeloopPolicy, Policy, policy_for, timed_act
from runtime.evaluation.statistics import compare_paired, wilson_interval
from runtime.safety import SafetyFilter
from runtime.sim.goal_sets import GoalSet, TaskGoal
from runtime.sim.scene import Scene
from runtime.sim.scene_file import SceneSpec, load_scene
from runtime.sim.tasks import Task, open_task, task_type
from runtime.world import load_world_model


class TaskModelMismatch(ValueError):
    pass


def check_model_fits_scene(manifest: Manifest, spec: SceneSpec, manifest_path: object) -> None:
    """The model must take the scene's action and proprio, at its control period."""
    problems = []
    if manifest.action_dim != len(spec.actuators):
        problems.append(f"the model takes {manifest.action_dim} action values, the scene drives "
                        f"{len(spec.actuators)}")
    if manifest.proprio_dim != 2 * len(spec.proprio.joints):
        problems.append(f"the model's proprio has {manifest.proprio_dim} values, the scene's [q, dq] "
                        f"{2 * len(spec.proprio.joints)}")
    if abs(manifest.control_period_s - spec.control_period_s) > 1e-9:
        problems.append(f"the model steps {manifest.control_period_s} s, the scene {spec.control_period_s} s")
    if problems:
        raise TaskModelMismatch(f"{manifest_path}: does not fit scene {spec.name!r}: " + "; ".join(problems))


class Perception(Protocol):
    """What an episode encodes with: the model (planning/world_model.py) or the simulator (oracle.py)."""

    def encode(self, frame_bgr: np.ndarray, proprio: np.ndarray | None) -> np.ndarray: ...

    def encode_goal_image(self, frame_bgr: np.ndarray) -> np.ndarray: ...


def run_episode(policy: Policy, model: Perception, task: Task, scene: Scene, goal: TaskGoal, budget: int,
                safety: SafetyFilter, plan_ms: list[float]) -> dict[str, Any]:
    scene.set_qpos(goal.goal, goal.goal_qvel)
    goal_latent = model.encode_goal_image(scene.render())  # with the scene still in the state it shows (oracle)
    scene.set_qpos(goal.start)
    safety.reset()
    policy.set_goal(goal_latent)
    ticks, reached = 0, False
    while ticks < budget:
        q, dq = scene.proprio()
        latent = model.encode(scene.render(), np.concatenate([q, dq]))
        action = timed_act(policy, latent, plan_ms)
        verdict = safety(action)
        if verdict.action is None:
            scene.hold_still()
        else:
            scene.apply(verdict.action)
        scene.step_control()
        ticks += 1
        if task.success(scene.qpos(), goal.goal):
            reached = True
            break
    final = scene.qpos()
    return {"goal": goal.index, "success": reached, "distance": task.distance(final, goal.goal), "ticks": ticks,
            **task.metrics(final, goal.goal)}


def summarize(episodes: list[dict[str, Any]], plan_ms: list[float]) -> dict[str, Any]:
    successes = sum(e["success"] for e in episodes)
    distances = np.array([e["distance"] for e in episodes])
    ms = np.asarray(plan_ms) if plan_ms else np.zeros(1)
    low, high = wilson_interval(successes, len(episodes))
    summary = {
        "episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "success_interval_95": [low, high],
        "final_distance_mean": float(distances.mean()),
        "final_distance_median": float(np.median(distances)),
        "ticks_mean": float(np.mean([e["ticks"] for e in episodes])),
        "plan_ms_p50": float(np.median(ms)),
        "plan_ms_p90": float(np.percentile(ms, 90)),
        "plans": len(plan_ms),
    }
    extra = sorted({key for e in episodes for key in e} - {"goal", "success", "distance", "ticks"})
    for key in extra:
        summary[f"{key}_mean"] = float(np.mean([e[key] for e in episodes]))
    return summary


@dataclass(frozen=True)
class Shard:
    """One planner on some goals of a set: the unit of work `evaluate_task` runs here or on a Ray node."""

    config_json: str  # the resolved RunConfig
    goal_set: GoalSet  # holding only this shard's goals
    planner: str
    mppi_noise_std: float | None = None
    mppi_temperature: float = 0.1
    oracle: bool = False  # plan on the simulator's physics in the model's latent space (oracle.py)


def _oracle_policy(shard: Shard, config: RunConfig, model: WorldModel, task: Task,
                   scene: Scene) -> tuple[Policy, Perception]:
    from runtime.evaluation.oracle import OracleModel

    if shard.planner == "pytorch_mppi":
        raise ValueError("--oracle plans with our optimizers only, not pytorch_mppi")
    oracle = OracleModel(task, scene, model.manifest, threads=config.model.threads)
    settings = config.planner.model_copy(update={"optimizer": shard.planner, "deadline_ms": None})
    planner = Planner(settings, oracle.predict, oracle.latent_dim, oracle.visual_dim, model.action_low,
                      model.action_high, scene.spec.control_period_s)
    return EdgeloopPolicy(shard.planner, planner), oracle


def run_shard(shard: Shard, on_episode: Callable[[], None] | None = None) -> dict[str, Any]:
    """Play a shard's goals; returns its episodes and plan times (plain data, for any process)."""
    config = RunConfig.model_validate_json(shard.config_json)
    model = load_world_model(config)
    image = model.manifest.image
    task, scene = open_task(shard.goal_set.task, image_size=(image.height, image.width))
    try:
        check_model_fits_scene(model.manifest, scene.spec, config.model.manifest)
        perception: Perception = model
        if shard.oracle:
            policy, perception = _oracle_policy(shard, config, model, task, scene)
        else:
            policy = policy_for(shard.planner, config, model, mppi_noise_std=shard.mppi_noise_std,
                                mppi_temperature=shard.mppi_temperature)
        safety = SafetyFilter(model.action_low, model.action_high, config.safety.max_rate,
                              scene.spec.control_period_s)
        plan_ms: list[float] = []
        episodes = []
        for goal in shard.goal_set.goals:
            episodes.append(run_episode(policy, perception, task, scene, goal, shard.goal_set.budget, safety,
                                        plan_ms))
            if on_episode is not None:
                on_episode()
    finally:
        scene.close()
    return {"planner": shard.planner, "episodes": episodes, "plan_ms": plan_ms}


class ShardRunner(Protocol):
    """Runs shards somewhere and returns their results in order (runtime/evaluation/ray_cluster.py)."""

    def run(self, shards: list[Shard], on_done: Callable[[Shard], None]) -> list[dict[str, Any]]: ...


def evaluate_task(config: RunConfig, goal_set: GoalSet, planners: list[str], *, goals: int | None = None,
                  mppi_noise_std: float | None = None, mppi_temperature: float = 0.1,
                  progress: Callable[[str, int, int], None] | None = None, runner: ShardRunner | None = None,
                  shard_goals: int | None = None, oracle: bool = False) -> dict[str, Any]:
    """Every planner on the first `goals` goals of the set (all by default); JSON-able results. With `oracle`
    the planners plan on the simulator instead of the model's predictor (oracle.py).

    Each planner's goals are cut into shards of `shard_goals` (default: one shard per planner here, 10 on a
    runner), played here one after another or spread over `runner` (a Ray cluster)."""
    if goals is not None and goals > len(goal_set.goals):
        raise ValueError(f"--goals {goals}: the goal set has {len(goal_set.goals)}")
    chosen = goal_set.goals if goals is None else goal_set.goals[:goals]
    manifest = load_manifest(config.model.manifest)
    check_model_fits_scene(manifest, load_scene(task_type(goal_set.task).scene), config.model.manifest)
    size = shard_goals or (10 if runner is not None else len(chosen))
    shards = [Shard(config.model_dump_json(), replace(goal_set, goals=chosen[start:start + size]), name,
                    mppi_noise_std, mppi_temperature, oracle)
              for name in planners for start in range(0, len(chosen), size)]
    played = dict.fromkeys(planners, 0)

    def count(shard: Shard, episodes: int) -> None:
        played[shard.planner] += episodes
        if progress is not None:
            progress(shard.planner, played[shard.planner], len(chosen))

    if runner is None:
        outputs = [run_shard(shard, partial(count, shard, 1)) for shard in shards]
    else:
        outputs = runner.run(shards, lambda shard: count(shard, len(shard.goal_set.goals)))
    period = load_scene(task_type(goal_set.task).scene).control_period_s
    results: dict[str, Any] = {}
    for name in planners:
        mine = [output for output in outputs if output["planner"] == name]
        episodes = [episode for output in mine for episode in output["episodes"]]
        plan_ms = [ms for output in mine for ms in output["plan_ms"]]
        results[name] = summarize(episodes, plan_ms) | {
            "control_period_ms": period * 1000.0, "outcomes": [e["success"] for e in episodes],
            "nodes": sorted({output["node"] for output in mine if "node" in output}),
            "episodes_detail": episodes}
    first = planners[0]
    paired = {name: compare_paired(results[first]["outcomes"], results[name]["outcomes"]).as_dict()
              for name in planners[1:]}
    return {
        "task": goal_set.task, "scene": goal_set.scene, "k": goal_set.k, "budget": goal_set.budget,
        "goal_set_seed": goal_set.seed, "goals": len(chosen),
        **model_provenance(load_manifest(config.model.manifest, verify=False)), "backend": config.model.backend,
        "world_model": "oracle (the simulator, in the model's latent space)" if oracle else "model",
        "planner_settings": {"samples": config.planner.samples, "horizon": config.planner.horizon,
                             "iterations": config.planner.iterations, "action_block": config.planner.action_block},
        "planners": results, "paired": {"against": first, "comparisons": paired},
    }
