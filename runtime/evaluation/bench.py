"""`edgeloop bench`: per-stage latency of the model and planner, every backend side by side in one run."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from calibration.undistort import Undistorter
from perception.manifest import load_manifest, model_provenance
from planning.planner import Planner
from runtime.config import RunConfig
from runtime.evaluation.closed_loop import EdgeloopPolicy, closed_loop, load_goal_set, planner_for, policy_for
from runtime.evaluation.efficiency import (
    engine_gemm_floor,
    flops_per_sample_step,
    gemm_floor,
    plan_efficiency,
    predictor_layers,
)
from runtime.evaluation.pytorch_mppi import PytorchMppiPolicy
from runtime.world import load_world_model


def timed_ms(fn: Callable[[], object], repeats: int, warmup: int = 5) -> np.ndarray:
    """Milliseconds of each of `repeats` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times * 1000.0


MODEL_STAGES = ("preprocess_ms", "encode_ms", "predict_batch_ms", "rollout_ms", "plan_ms")


def bench_model(config: RunConfig, backends: list[str], repeats: int, *,
                samples_ms: dict[str, dict[str, np.ndarray]] | None = None,
                on_measured: Callable[[], None] | None = None) -> dict[str, Any]:
    """Median ms of preprocess, encode (batch 1), one predictor step at batch N, one rollout of the plan's steps
    at batch N (one call to the rollout model, or the steps) and one whole plan per backend; the planner's own
    share of a plan (`planner_overhead`: the plan less its iterations' rollouts, as a fraction); with
    `calibration.camera` set, also the undistortion of one frame at the calibrated size. Every call's ms
    go into `samples_ms[backend][stage]` when it is given; `on_measured` follows each stage measured."""
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
        steps = config.planner.horizon * config.planner.action_block
        sequences = rng.uniform(model.action_low, model.action_high,
                                (n, steps, manifest.action_dim)).astype(np.float32)
        planner = planner_for(config.planner, model)
        planner.set_goal(model.encode_goal_image(frame))
        start_latent = model.encode(frame, proprio)
        calls: tuple[Callable[[], object], ...] = (
            partial(model.preprocess, frame), partial(model.encode, frame, proprio),
            partial(model.predict, latents, actions), partial(model.rollout, latents, sequences),
            partial(planner.plan, start_latent))
        times: dict[str, np.ndarray] = {}
        for stage, call in zip(MODEL_STAGES, calls, strict=True):
            times[stage] = timed_ms(call, max(10, repeats // 5) if stage == "plan_ms" else repeats)
            if on_measured is not None:
                on_measured()
        results[backend] = {stage: float(np.median(ms)) for stage, ms in times.items()}
        row = results[backend]
        row["planner_overhead"] = 1.0 - config.planner.iterations * row["rollout_ms"] / row["plan_ms"]
        row["rollout_model"] = model.rollout_engine is not None
        if samples_ms is not None:
            samples_ms[backend] = times
    undistort_ms = None
    if config.calibration.camera is not None:
        # Per camera frame, before preprocessing; the same on every backend.
        undistort = Undistorter.from_file(config.calibration.camera)
        camera_frame = rng.integers(0, 256, (undistort.size[1], undistort.size[0], 3), dtype=np.uint8)
        undistort_ms = float(np.median(timed_ms(partial(undistort, camera_frame), repeats)))
    return {
        **model_provenance(manifest),
        "samples": n,
        "horizon": config.planner.horizon,
        "iterations": config.planner.iterations,
        "threads": config.model.threads,
        "repeats": repeats,
        "backends": results,
        "undistort_ms": undistort_ms,
    }


def bench_planner(config: RunConfig, goal_count: int, planners: list[str], *, mppi_noise_std: float | None = None,
                  mppi_temperature: float = 0.1, tolerance_m: float = 0.05,
                  on_goal: Callable[[], None] | None = None) -> dict[str, Any]:
    """Ours and pytorch-mppi side by side: same predictor weights, cost, samples x horizon, goals and sim.

    pytorch-mppi samples with `mppi_noise_std` (normalized units; default: the config's `planner.mppi.noise_std`)
    and softmins with `mppi_temperature` (its lambda, in cost units, which have no counterpart in ours).
    """
    model = load_world_model(config)
    manifest = model.manifest
    layers = predictor_layers(config.model.manifest)  # before the closed loop: a model it cannot count fails now
    goals, goal_dir = load_goal_set(config.model.manifest, goal_count)
    noise_std = config.planner.mppi.noise_std if mppi_noise_std is None else mppi_noise_std
    results: dict[str, Any] = {}
    for name in planners:
        policy = policy_for(name, config, model, mppi_noise_std=noise_std, mppi_temperature=mppi_temperature)
        results[name] = closed_loop(policy, model, goals, goal_dir, control_period_s=manifest.control_period_s,
                                    tolerance_m=tolerance_m, on_goal=on_goal)
        results[name]["engine"] = f"torch ({policy.device})" if isinstance(policy, PytorchMppiPolicy) else model.backend
    if "pytorch_mppi" in results:
        theirs = results["pytorch_mppi"]["ms_per_plan"]
        for entry in results.values():
            entry["speedup_vs_pytorch_mppi"] = theirs / entry["ms_per_plan"]
    floor = _efficiency_against_floor(config, layers, results)
    return {
        **model_provenance(manifest),
        "samples": config.planner.samples,
        "horizon": config.planner.horizon,
        "iterations": config.planner.iterations,
        "cost": config.planner.cost.model_dump(),
        "pytorch_mppi": {"noise_std": noise_std, "temperature": mppi_temperature},
        "goals": goal_count,
        "tolerance_m": tolerance_m,
        "gemm_floor": floor,
        "planners": results,
    }


def _efficiency_against_floor(config: RunConfig, layers: list[tuple[int, int]],
                              results: dict[str, Any]) -> dict[str, Any]:
    """The GEMM throughput at the predictor's shapes and the plan's batch, measured now, and each planner's plan
    as a fraction of it (its `efficiency`)."""
    settings = config.planner
    floors = {"numpy": gemm_floor(layers, settings.samples, config.model.threads),
              "onnxruntime": engine_gemm_floor(layers, settings.samples, config.model.threads)}
    best = max(floors, key=lambda name: floors[name]["gflops"])
    steps = settings.horizon * settings.action_block  # predictor calls per iteration
    flops = flops_per_sample_step(layers)
    for entry in results.values():
        by_floor = {name: plan_efficiency(flops, settings.samples, steps, entry["mean_iterations"],
                                          entry["ms_per_plan"], floor["gflops"]) for name, floor in floors.items()}
        entry["efficiency"] = by_floor[best] | {"plan_over_arithmetic_by_floor": {
            name: efficiency["plan_over_arithmetic"] for name, efficiency in by_floor.items()}}
    return {"layers": layers, "gflops": floors[best]["gflops"], **floors}


def sweep_planner(config: RunConfig, goal_count: int, axes: dict[str, list[int]], *,
                  tolerance_m: float = 0.05, on_goal: Callable[[], None] | None = None) -> list[dict[str, Any]]:
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
                                 tolerance_m=tolerance_m, on_goal=on_goal)
            rows.append({"samples": settings.samples, "horizon": settings.horizon, "iterations": settings.iterations,
                         "mean_iterations": result["mean_iterations"], "varied": key,
                         "success_rate": result["success_rate"], "ms_per_plan": result["ms_per_plan"],
                         "mean_ticks": result["mean_ticks"], "mean_final_distance": result["mean_final_distance"]})
    return rows


def per_call_overhead(config: RunConfig, horizons: list[int], samples: int = 32, repeats: int = 200,
                      with_pytorch_mppi: bool = True) -> list[dict[str, Any]]:
    """Median ms of one plan (one iteration, `samples` samples, one action per period) against the horizon:
    ours with one rollout-model call, ours stepping the predictor once per step, and pytorch-mppi (which steps
    its torch predictor from Python), all on the same model and goal. Small batches make the per-call cost show."""
    model = load_world_model(config)
    manifest = model.manifest
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (manifest.image.height, manifest.image.width, 3), dtype=np.uint8)
    start = model.encode(frame, np.zeros(manifest.proprio_dim, dtype=np.float32))
    goal = model.encode_goal_image(frame[::-1].copy())
    rows = []
    for horizon in horizons:
        settings = config.planner.model_copy(update={
            "samples": samples, "horizon": horizon, "iterations": 1, "action_block": 1, "execute_steps": 1,
            "deadline_ms": None, "cem": config.planner.cem.model_copy(
                update={"elites": min(config.planner.cem.elites, samples)})})
        stepping = Planner(settings, model.predict, model.latent_dim, model.visual_dim, model.action_low,
                           model.action_high, manifest.control_period_s)
        rollout = planner_for(settings, model)
        row: dict[str, Any] = {"samples": samples, "horizon": horizon}
        for name, planner in (("rollout_model_ms", rollout), ("stepping_ms", stepping)):
            planner.set_goal(goal)
            row[name] = float(np.median(timed_ms(partial(planner.plan, start), repeats)))
        if with_pytorch_mppi:
            theirs = policy_for("pytorch_mppi", config.model_copy(update={"planner": settings}), model)
            theirs.set_goal(goal)
            row["pytorch_mppi_ms"] = float(np.median(timed_ms(partial(theirs.act, start), repeats)))
        rows.append(row)
    return rows
