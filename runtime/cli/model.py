"""`edgeloop record | train | goals`: make the demo model's data, train and export it, render goal images."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

# The sim arm's joints, in proprio and action order (runtime/sim/scene.xml).
JOINTS = ("shoulder", "elbow")
MODEL_NAME = "planar-arm-jepa"


def record(
    out: Annotated[Path, typer.Option(help="Directory for the episode recordings.")],
    episodes: Annotated[int, typer.Option(help="Number of episodes.")] = 100,
    steps: Annotated[int, typer.Option(help="Control ticks per episode (0.05 s each).")] = 200,
    seed: Annotated[int, typer.Option(help="Exploration seed.")] = 1,
    name: Annotated[str, typer.Option(help="File name stem: NAME.mcap for one episode, NAME_000.mcap, ... else.")]
    = "episode",
) -> None:
    """Record exploration episodes of the simulated arm (frames, state, actions) as MCAP files."""
    from runtime.sim.explore import record_episodes

    paths = record_episodes(out, episodes=episodes, steps=steps, seed=seed, name=name)
    typer.echo(f"wrote {len(paths)} episode(s) of {steps} ticks to {out}")


def train(
    data: Annotated[Path, typer.Option(help="Directory of episode .mcap recordings.")],
    out: Annotated[Path, typer.Option(help="Directory for manifest.json and the model files.")],
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training windows.")] = 6,
    threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 2,
    time_budget_s: Annotated[float | None, typer.Option(help="Stop after the epoch that crosses this many seconds.")]
    = None,
) -> None:
    """Train the world model (encoder + predictor) on recorded episodes and export it with its manifest."""
    from perception.export import ModelInterface, export_world_model
    from planning.training import EpisodeArrays, TrainSettings, train_world_model
    from runtime.recording import read_episode
    from runtime.sim.arm import VELOCITY_LIMIT

    files = sorted(data.glob("*.mcap"))
    if not files:
        raise typer.BadParameter(f"{data}: no .mcap recordings found", param_hint="--data")
    episodes = [read_episode(path) for path in files]
    periods = np.concatenate([np.diff(e.stamps) for e in episodes]) / 1e9
    control_period_s = round(float(np.median(periods)), 6)
    arrays = [EpisodeArrays(e.frames, e.q, e.dq, e.actions) for e in episodes]
    settings = TrainSettings(seed=seed, epochs=epochs, threads=threads, time_budget_s=time_budget_s)
    result = train_world_model(arrays, settings)
    # Over the training arrays, not the files: re-recording the same episodes changes only the stamps.
    data_digest = hashlib.sha256()
    for episode in arrays:
        for array in (episode.frames, episode.q, episode.dq, episode.actions):
            data_digest.update(np.ascontiguousarray(array).tobytes())
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
                           "sha256": data_digest.hexdigest()}},
    )
    manifest = export_world_model(result.encoder, result.predictor, out, result.config, interface, seed=seed)
    typer.echo(str(manifest))
    typer.echo(json.dumps({k: result.metrics[k] for k in (
        "probe_r2", "visual_q_error_rad_mean", "rollout_relative_rmse_visual", "latent_std_min_visual",
        "latent_std_min_proprio", "train_seconds")}))


def goals(
    out: Annotated[Path, typer.Option(help="Directory for goal_NNN.png and goals.json.")],
    count: Annotated[int, typer.Option(help="Number of goal images.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed for the goal configurations (keep it apart from training).")]
    = 1000,
) -> None:
    """Render held-out goal images of the simulated arm at rest, with their joint and end-effector positions."""
    from runtime.sim.explore import make_goal_set

    typer.echo(str(make_goal_set(out, count=count, seed=seed)))
