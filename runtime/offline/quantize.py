"""The INT8 Q/DQ model from an FP32 model and real recordings (docs/quantization.md); `edgeloop quantize` runs it.

Calibration frames come from the recordings, undistorted as the run config's `calibration.camera` undistorts
live frames, cached by recordings and frame count; the predictor's calibration rolls out over the config's
planner horizon. The FP32 model's held-out goals are copied beside the INT8 model, so the demo and the
benchmarks run on it as they are.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from calibration.frame_sets import EpisodeFrames, build_calibration_set, cached_calibration_set, source_key
from calibration.undistort import Undistorter
from perception.manifest import Manifest
from perception.quantize import quantize_model
from runtime.config import RunConfig
from runtime.recording import read_episode


@dataclass
class QuantizedModel:
    manifest: Path  # the INT8 model's manifest.json
    calibration_sha256: str  # the calibration frame set's
    calibration_frames: int
    recordings: list[Path]  # each once, in the order given


def quantize_from_recordings(fp32: Manifest, recordings: list[Path], out: Path, run_config: RunConfig, *,
                             frames: int, cache: Path) -> QuantizedModel:
    unique = list(dict.fromkeys(recordings))  # a recording named twice would count its frames twice
    frame_set = cached_calibration_set(cache, source_key(unique, frames),
                                       lambda: build_calibration_set(recording_episodes(unique), frames))
    camera = run_config.calibration.camera
    undistort = Undistorter.from_file(camera) if camera is not None else None
    int8_path = quantize_model(fp32, frame_set, out, rollout_steps=run_config.planner.horizon, undistort=undistort)
    if (fp32.root / "goals").is_dir():
        shutil.copytree(fp32.root / "goals", out / "goals", dirs_exist_ok=True)
    return QuantizedModel(int8_path, frame_set.sha256, len(frame_set), unique)


def recording_episodes(paths: list[Path]) -> list[EpisodeFrames]:
    """Frames, proprio [q, dq] and actions of each recording, for drawing calibration frames."""
    episodes = []
    for path in paths:
        episode = read_episode(path)
        episodes.append(EpisodeFrames(path.name, episode.frames, np.concatenate([episode.q, episode.dq], axis=1),
                                      episode.actions))
    return episodes
