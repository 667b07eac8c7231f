"""Train a world model from recorded MCAP episodes of a sim scene and export it with its manifest (docs/training.md)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calibration.figures import PlottingUnavailable
from runtime.offline.training_curves import plot_training_curves
from runtime.recording import read_episode
from runtime.sim.scene import Scene
from runtime.sim.scene_file import load_scene

if TYPE_CHECKING:
    from planning.training import EpisodeArrays, TrainSettings  # torch: imported only when training

log = logging.getLogger(__name__)

# Units of an action per actuator mode, for hinge and slide joints.
_UNITS = {("velocity", True): "rad/s", ("velocity", False): "m/s", ("position", True): "rad",
          ("position", False): "m", ("position_delta", True): "rad", ("position_delta", False): "m"}


class NoRecordingsError(ValueError):
    pass


@dataclass
class TrainedModel:
    manifest: Path
    metrics: dict[str, Any]
    curves: Path | None  # training_curves.png; None without matplotlib (the observe extra)


def train_from_recordings(data: Path, out: Path, settings: TrainSettings, *, scene: str = "planar-arm",
                          task: str | None = None, on_step: Callable[[int, int], None] | None = None) -> TrainedModel:
    """Train encoder + predictor on every `*.mcap` in `data`, recorded in `scene` (a shipped scene's name or a
    scene file); write the ONNX files, manifest.json (naming the scene and task) and training_curves.png to
    `out`. `on_step(done, total)` follows the optimizer steps."""
    from perception.export import ModelInterface, export_world_model
    from planning.training import EpisodeArrays, train_world_model

    files = sorted(data.glob("*.mcap"))
    if not files:
        raise NoRecordingsError(f"{data}: no .mcap recordings found")
    episodes = [read_episode(path) for path in files]
    periods = np.concatenate([np.diff(e.stamps) for e in episodes]) / 1e9
    control_period_s = round(float(np.median(periods)), 6)
    arrays = [EpisodeArrays(e.frames, e.q, e.dq, e.actions, e.visual_state) for e in episodes]
    result = train_world_model(arrays, settings, on_step=on_step)
    names = scene_interface(scene)
    interface = ModelInterface(
        name=f"{names['scene']}-jepa",
        image=result.image,
        proprio_names=names["proprio"],
        action_names=names["actions"],
        action_low=names["low"],
        action_high=names["high"],
        action_units=names["units"],
        control_period_s=control_period_s,
        training={"settings": json.loads(settings.model_dump_json()), "metrics": result.metrics,
                  "data": {"episodes": len(files), "frames": int(sum(len(e) for e in episodes)),
                           "sha256": training_data_sha256(arrays)}},
        scene=names["scene"],
        task=task,
    )
    manifest = export_world_model(result.encoder, result.predictor, out, result.config, interface, seed=settings.seed)
    try:
        curves: Path | None = plot_training_curves(result.history, out / "training_curves.png")
    except PlottingUnavailable as exc:  # the model is what was asked for; the plot is a view of it
        log.warning("training_curves.png not drawn: %s", exc)
        curves = None
    return TrainedModel(manifest, result.metrics, curves)


def scene_interface(reference: str) -> dict[str, Any]:
    """The names, bounds and units a model trained in this scene takes, from the scene file and its MJCF."""
    import mujoco

    spec = load_scene(reference)
    built = Scene(spec)
    try:
        model = built.model
        driven = [model.actuator(a.name).trnid[0] for a in spec.actuators]
        hinge = [int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_HINGE) for j in driven]
        actions = [f"{model.joint(j).name}.{a.mode}" for j, a in zip(driven, spec.actuators, strict=True)]
        units = {_UNITS[(a.mode, h)] for a, h in zip(spec.actuators, hinge, strict=True)}
        return {"scene": spec.name, "actions": actions, "units": units.pop() if len(units) == 1 else "mixed",
                "proprio": [f"{j}.{kind}" for kind in ("position", "velocity") for j in spec.proprio.joints],
                "low": built.action_low.tolist(), "high": built.action_high.tolist()}
    finally:
        built.close()


def training_data_sha256(arrays: list[EpisodeArrays]) -> str:
    """Over the training arrays, not the files: re-recording the same episodes changes only the stamps."""
    digest = hashlib.sha256()
    for episode in arrays:
        for array in (episode.frames, episode.q, episode.dq, episode.actions, episode.visual_state):
            if array is not None:  # absent visual states keep older recordings' digests
                digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
