"""Train the sim arm's world model from recorded MCAP episodes and export it with its manifest (docs/training.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runtime.recording import read_episode
from runtime.sim.arm import VELOCITY_LIMIT

if TYPE_CHECKING:
    from planning.training import EpisodeArrays, TrainSettings  # torch: imported only when training

# The sim arm's joints, in proprio and action order (runtime/sim/scenes/planar_arm.xml).
JOINTS = ("shoulder", "elbow")
MODEL_NAME = "planar-arm-jepa"


class NoRecordingsError(ValueError):
    pass


@dataclass
class TrainedModel:
    manifest: Path
    metrics: dict[str, Any]


def train_from_recordings(data: Path, out: Path, settings: TrainSettings) -> TrainedModel:
    """Train encoder + predictor on every `*.mcap` in `data`; write the ONNX files and manifest.json to `out`."""
    from perception.export import ModelInterface, export_world_model
    from planning.training import EpisodeArrays, train_world_model

    files = sorted(data.glob("*.mcap"))
    if not files:
        raise NoRecordingsError(f"{data}: no .mcap recordings found")
    episodes = [read_episode(path) for path in files]
    periods = np.concatenate([np.diff(e.stamps) for e in episodes]) / 1e9
    control_period_s = round(float(np.median(periods)), 6)
    arrays = [EpisodeArrays(e.frames, e.q, e.dq, e.actions) for e in episodes]
    result = train_world_model(arrays, settings)
    interface = ModelInterface(
        name=MODEL_NAME,
        image=result.image,
        proprio_names=[f"{joint}.position" for joint in JOINTS] + [f"{joint}.velocity" for joint in JOINTS],
        action_names=[f"{joint}.velocity" for joint in JOINTS],
        action_low=[-VELOCITY_LIMIT] * len(JOINTS),
        action_high=[VELOCITY_LIMIT] * len(JOINTS),
        action_units="rad/s",
        control_period_s=control_period_s,
        training={"settings": json.loads(settings.model_dump_json()), "metrics": result.metrics,
                  "data": {"episodes": len(files), "frames": int(sum(len(e) for e in episodes)),
                           "sha256": training_data_sha256(arrays)}},
    )
    manifest = export_world_model(result.encoder, result.predictor, out, result.config, interface, seed=settings.seed)
    return TrainedModel(manifest, result.metrics)


def training_data_sha256(arrays: list[EpisodeArrays]) -> str:
    """Over the training arrays, not the files: re-recording the same episodes changes only the stamps."""
    digest = hashlib.sha256()
    for episode in arrays:
        for array in (episode.frames, episode.q, episode.dq, episode.actions):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
