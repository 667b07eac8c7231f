"""The world model a run config asks for: one place that turns the `model` (and camera) settings into engines."""

from __future__ import annotations

from calibration.undistort import Undistorter
from perception.manifest import load_manifest
from planning.world_model import WorldModel
from runtime.config import RunConfig


def load_world_model(config: RunConfig, *, undistort: bool = False) -> WorldModel:
    """Engines per `config.model` (TensorRT's predictor profile sized for `planner.samples`); with `undistort`,
    frames are undistorted per `calibration.camera` when it is set (live runs; benchmarks feed model-size frames)."""
    camera = config.calibration.camera
    return WorldModel(load_manifest(config.model.manifest), backend=config.model.backend,
                      threads=config.model.threads,
                      undistort=Undistorter.from_file(camera) if undistort and camera is not None else None,
                      engine_cache=config.model.engine_cache, cuda_graph=config.model.cuda_graph,
                      planner_samples=config.planner.samples,
                      rollout_steps=config.planner.horizon * config.planner.action_block)
