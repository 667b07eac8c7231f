"""Accuracy report of an INT8 model against its FP32 parent: `accuracy.json` and `accuracy.md` beside it.

Everything is measured side by side in one run, on frames neither model saw in training or calibration
(the parent's held-out goal images): latent agreement, predictor drift over the planning horizon, the
planner's first action, closed-loop reach success on the same goals, and encoder/predictor speed.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from perception.manifest import ENCODER_IMAGE, ENCODER_PROPRIO, load_manifest, model_provenance
from planning.settings import PlannerSettings
from planning.world_model import WorldModel
from runtime.evaluation.closed_loop import EdgeloopPolicy, closed_loop, load_goal_set, planner_for

ACCURACY_GOAL_POINTS = 2.0  # INT8 reach success within this many percentage points of FP32
ENCODER_SPEEDUP_GOAL = 1.3
AGREEMENT_TOLERANCE = 0.1  # first actions agree when every dimension differs by < 10 % of its half-range


def interleaved_median_ms(calls: dict[str, Callable[[], object]], repeats: int, warmup: int = 10) -> dict[str, float]:
    """Median ms of each call, measured in alternation so that machine noise hits every call alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for index in range(warmup + repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if index >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: float(np.median(samples) * 1000.0) for name, samples in times.items()}


def accuracy_report(fp32_manifest: Path, int8_manifest: Path, settings: PlannerSettings, *, goals: int = 50,
                    threads: int = 1, repeats: int = 300, seed: int = 0,
                    on_goal: Callable[[], None] | None = None) -> dict[str, Any]:
    fp32 = WorldModel(load_manifest(fp32_manifest), threads=threads)
    int8 = WorldModel(load_manifest(int8_manifest), threads=threads)
    if int8.manifest.precision != "int8":
        raise ValueError(f"{int8_manifest}: precision is {int8.manifest.precision}, expected int8")
    goal_list, goal_dir = load_goal_set(fp32_manifest, goals)
    frames, proprio = _held_out(goal_list, goal_dir, fp32.manifest.proprio_dim)
    z32 = np.stack([fp32.encode(frame, state) for frame, state in zip(frames, proprio, strict=True)])
    z8 = np.stack([int8.encode(frame, state) for frame, state in zip(frames, proprio, strict=True)])
    cosine = np.sum(z32 * z8, axis=1) / (np.linalg.norm(z32, axis=1) * np.linalg.norm(z8, axis=1))

    report: dict[str, Any] = {
        "fp32_model": model_provenance(fp32.manifest),
        "int8_model": model_provenance(int8.manifest),
        "calibration_sha256": int8.manifest.calibration_sha256,
        "held_out_frames": len(frames),
        "latent_cosine_mean": float(cosine.mean()),
        "latent_cosine_min": float(cosine.min()),
        "predictor_drift": _drift(fp32, int8, z32, settings.horizon, seed),
        **_first_action_agreement(fp32, int8, z32, z8, settings),
    }
    for name, model in (("fp32", fp32), ("int8", int8)):
        outcome = closed_loop(EdgeloopPolicy(settings.optimizer, planner_for(settings, model)), model, goal_list,
                              goal_dir, control_period_s=model.manifest.control_period_s, on_goal=on_goal)
        report[f"success_{name}"] = outcome["success_rate"]
        report[f"mean_final_distance_{name}"] = outcome["mean_final_distance"]
        report[f"plan_ms_{name}"] = outcome["ms_per_plan"]
    report.update(_speed(fp32, int8, frames[0], proprio[0], settings.samples, repeats, seed))
    report["success_drop_points"] = success_drop_points(report["success_fp32"], report["success_int8"])
    report["meets_accuracy_goal"] = report["success_drop_points"] <= ACCURACY_GOAL_POINTS
    report["meets_encoder_speed_goal"] = report["encoder_speedup"] >= ENCODER_SPEEDUP_GOAL
    report["settings"] = {"goals": goals, "threads": threads, "repeats": repeats, "optimizer": settings.optimizer,
                          "samples": settings.samples, "horizon": settings.horizon,
                          "iterations": settings.iterations}
    report["machine"] = {"processor": platform.processor() or platform.machine(), "python": platform.python_version()}
    return report


def success_drop_points(success_fp32: float, success_int8: float) -> float:
    """FP32 minus INT8 success in percentage points, rounded so that one goal in 50 is exactly 2.0 points
    ((1.0 - 49/50) * 100 is 2.0000000000000018, which would fail a goal of "at most 2")."""
    return round((success_fp32 - success_int8) * 100.0, 9)


def _held_out(goals: list[dict[str, Any]], goal_dir: Path, proprio_dim: int) -> tuple[list[np.ndarray], np.ndarray]:
    frames = []
    for goal in goals:
        frame = cv2.imread(str(goal_dir / goal["image"]), cv2.IMREAD_COLOR)
        if frame is None:
            raise FileNotFoundError(f"{goal_dir / goal['image']}: goal image missing or unreadable")
        frames.append(frame)
    # Goal images are rendered with the arm at rest at the goal pose: velocities are zero.
    proprio = np.zeros((len(goals), proprio_dim), dtype=np.float32)
    joints = proprio_dim // 2
    proprio[:, :joints] = np.asarray([goal["q"] for goal in goals], dtype=np.float32)[:, :joints]
    return frames, proprio


def _drift(fp32: WorldModel, int8: WorldModel, start: np.ndarray, horizon: int, seed: int) -> list[dict[str, float]]:
    """Both predictors from the same FP32 latents under the same random actions: how far apart per step."""
    rng = np.random.default_rng(seed)
    a32 = b8 = start.astype(np.float32)
    steps = []
    for step in range(1, horizon + 1):
        actions = rng.uniform(fp32.action_low, fp32.action_high, (len(start), fp32.action_dim)).astype(np.float32)
        a32, b8 = fp32.predict(a32, actions), int8.predict(b8, actions)
        relative = np.linalg.norm(b8 - a32, axis=1) / np.maximum(np.linalg.norm(a32, axis=1), 1e-9)
        steps.append({"step": step, "relative_error_mean": float(relative.mean()),
                      "relative_error_max": float(relative.max())})
    return steps


def _first_action_agreement(fp32: WorldModel, int8: WorldModel, z32: np.ndarray, z8: np.ndarray,
                            settings: PlannerSettings) -> dict[str, float]:
    """Each held-out frame planned towards the next one's goal, cold start, same seed, each model's own latents."""
    half_range = (fp32.action_high - fp32.action_low) / 2
    differences = []
    for index in range(len(z32)):
        goal = (index + 1) % len(z32)
        first = []
        for model, latents in ((fp32, z32), (int8, z8)):
            planner = planner_for(settings, model)
            planner.set_goal(latents[goal, : model.visual_dim])
            first.append(planner.plan(latents[index]).action)
        differences.append(np.abs(first[0] - first[1]) / half_range)
    normalized = np.asarray(differences)
    return {"first_action_agreement": float(np.mean(normalized.max(axis=1) < AGREEMENT_TOLERANCE)),
            "first_action_mean_abs_difference": float(normalized.mean())}


def _speed(fp32: WorldModel, int8: WorldModel, frame: np.ndarray, proprio: np.ndarray, samples: int, repeats: int,
           seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    latents = np.repeat(fp32.encode(frame, proprio)[None], samples, axis=0)
    actions = rng.uniform(fp32.action_low, fp32.action_high, (samples, fp32.action_dim)).astype(np.float32)
    # The encoder network alone on one preprocessed frame: preprocessing is the same code for both models.
    inputs = {ENCODER_IMAGE: fp32.preprocess(frame)[None], ENCODER_PROPRIO: proprio[None].astype(np.float32)}
    encode = interleaved_median_ms({"fp32": lambda: fp32.encoder.run(inputs),
                                    "int8": lambda: int8.encoder.run(inputs)}, repeats)
    predict = interleaved_median_ms({"fp32": lambda: fp32.predict(latents, actions),
                                     "int8": lambda: int8.predict(latents, actions)}, repeats)
    return {"encoder_ms_fp32": encode["fp32"], "encoder_ms_int8": encode["int8"],
            "encoder_speedup": encode["fp32"] / encode["int8"],
            "predictor_ms_fp32": predict["fp32"], "predictor_ms_int8": predict["int8"],
            "predictor_speedup": predict["fp32"] / predict["int8"], "predictor_batch": float(samples)}


def write_report(report: dict[str, Any], directory: Path, command: str) -> tuple[Path, Path]:
    """accuracy.json (every number) and accuracy.md (the same, for people) into `directory`."""
    json_path, md_path = directory / "accuracy.json", directory / "accuracy.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    drift = "\n".join(f"| {row['step']} | {row['relative_error_mean']:.4f} | {row['relative_error_max']:.4f} |"
                      for row in report["predictor_drift"])
    settings = report["settings"]
    accuracy_verdict = "met" if report["meets_accuracy_goal"] else "NOT met"
    speed_verdict = "met" if report["meets_encoder_speed_goal"] else "NOT met"
    rows = [
        ("", "FP32", "INT8", "goal"),
        (f"closed-loop reach success ({settings['goals']} goals, {settings['optimizer']})",
         f"{report['success_fp32']:.0%}", f"{report['success_int8']:.0%}",
         f"INT8 within {ACCURACY_GOAL_POINTS:.0f} points: {accuracy_verdict}"),
        ("mean final distance", f"{report['mean_final_distance_fp32'] * 100:.2f} cm",
         f"{report['mean_final_distance_int8'] * 100:.2f} cm", ""),
        ("encoder network, batch 1 (median ms)", f"{report['encoder_ms_fp32']:.3f}", f"{report['encoder_ms_int8']:.3f}",
         f"INT8 ≥ {ENCODER_SPEEDUP_GOAL}× faster: {report['encoder_speedup']:.2f}×, {speed_verdict}"),
        (f"predictor, batch {int(report['predictor_batch'])} (median ms)", f"{report['predictor_ms_fp32']:.3f}",
         f"{report['predictor_ms_int8']:.3f}", f"{report['predictor_speedup']:.2f}×"),
        ("plan (median ms, closed loop)", f"{report['plan_ms_fp32']:.2f}", f"{report['plan_ms_int8']:.2f}", ""),
    ]
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join([lines[0], "|---|---|---|---|", *lines[1:]])
    int8_id, fp32_id = report["int8_model"]["model_id"][:12], report["fp32_model"]["model_id"][:12]
    md_path.write_text(f"""# INT8 accuracy report

INT8 model `{int8_id}` against its FP32 parent `{fp32_id}` (model ids), calibration set
`{str(report['calibration_sha256'])[:12]}`; {report['held_out_frames']} held-out frames (the parent's goal images,
seen by neither training nor calibration). Measured by:

```
{command}
```

{table}

Latent cosine FP32 vs INT8: mean {report['latent_cosine_mean']:.4f}, min {report['latent_cosine_min']:.4f}.
Planner first action (cold start, same seed): agrees within {AGREEMENT_TOLERANCE:.0%} of the half-range on
{report['first_action_agreement']:.0%} of frames; mean absolute difference
{report['first_action_mean_abs_difference']:.3f} of the half-range.

Predictor drift: both predictors from the same FP32 latents under the same random actions, relative L2
distance per step:

| step | mean | max |
|---|---|---|
{drift}

Timings: {settings['threads']} thread(s), {settings['repeats']} calls each, FP32 and INT8 alternated; machine
{report['machine']['processor']}, Python {report['machine']['python']}.
""")
    return json_path, md_path
