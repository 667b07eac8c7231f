"""`edgeloop record | train | goals`: make the demo model's data, train and export it, render goal images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.common import fail
from runtime.cli.progress import progress_bar


def record(
    out: Annotated[Path, typer.Option(help="Directory for the episode recordings.")],
    episodes: Annotated[int, typer.Option(help="Number of episodes.")] = 100,
    steps: Annotated[int, typer.Option(help="Control ticks per episode (0.05 s each).")] = 200,
    seed: Annotated[int, typer.Option(help="Exploration seed.")] = 1,
    name: Annotated[str, typer.Option(help="File name stem: NAME.mcap for one episode, NAME_000.mcap, ... else.")]
    = "episode",
    task: Annotated[str | None, typer.Option(help="Record a task's expert, mixed with random actions, in its "
                                                  "scene (edgeloop task list); default: the demo arm's "
                                                  "exploration.")] = None,
) -> None:
    """Record episodes (frames, state, actions) as MCAP files: the demo arm exploring, or a task's expert."""
    if task is not None:
        from runtime.sim.task_data import record_task_episodes

        try:
            with progress_bar(f"recording {task}", episodes) as bar:
                paths = record_task_episodes(task, out, episodes=episodes, steps=steps, seed=seed, name=name,
                                             on_episode=bar.advance)
        except ValueError as exc:
            raise fail(str(exc)) from exc
        typer.echo(f"wrote {len(paths)} episode(s) of {steps} ticks of {task} to {out}")
        return
    from runtime.sim.explore import record_episodes

    with progress_bar("recording", episodes) as bar:
        paths = record_episodes(out, episodes=episodes, steps=steps, seed=seed, name=name, on_episode=bar.advance)
    typer.echo(f"wrote {len(paths)} episode(s) of {steps} ticks to {out}")


def train(
    data: Annotated[Path, typer.Option(help="Directory of episode .mcap recordings.")],
    out: Annotated[Path, typer.Option(help="Directory for manifest.json and the model files.")],
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    epochs: Annotated[int, typer.Option(help="Passes over the training windows.")] = 6,
    threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 2,
    device: Annotated[str, typer.Option(help="Torch device: cpu, cuda or cuda:N (a CUDA build of torch on a GPU "
                                             "machine; docs/training.md).")] = "cpu",
    time_budget_s: Annotated[float | None, typer.Option(help="Stop after the epoch that crosses this many seconds.")]
    = None,
    scene: Annotated[str, typer.Option(help="The scene the episodes were recorded in: its actions, proprio and "
                                            "bounds go into the manifest.")] = "planar-arm",
    task: Annotated[str | None, typer.Option(help="The task the episodes came from, for the manifest.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Any other training setting: key=value "
                                                   "(repeatable; docs/training.md), e.g. hidden=512.")] = None,
) -> None:
    """Train the world model (encoder + predictor) on recorded episodes and export it with its manifest."""
    from pydantic import ValidationError

    from planning.training import TrainSettings
    from runtime.config import ConfigError, apply_override, format_errors
    from runtime.offline.train import NoRecordingsError, train_from_recordings
    from runtime.sim.scene_file import SceneError

    values: dict[str, object] = {"seed": seed, "epochs": epochs, "threads": threads, "device": device,
                                 "time_budget_s": time_budget_s}
    try:
        for assignment in set_ or []:
            apply_override(values, assignment)
        settings = TrainSettings.model_validate(values)
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    except ValidationError as exc:
        raise fail(format_errors(exc, "training settings (options and --set)")) from exc
    try:
        with progress_bar("training") as bar:
            trained = train_from_recordings(data, out, settings, scene=scene, task=task, on_step=bar.update)
    except NoRecordingsError as exc:
        raise typer.BadParameter(str(exc), param_hint="--data") from exc
    except SceneError as exc:
        raise fail(str(exc)) from exc
    typer.echo(str(trained.manifest))
    if trained.curves is not None:
        typer.echo(str(trained.curves))
    typer.echo(json.dumps({k: trained.metrics[k] for k in (
        "probe_r2", "visual_state_error_mean", "rollout_relative_rmse_visual", "latent_std_min_visual",
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


def export(
    model: Annotated[Path, typer.Argument(help="Model directory (or its manifest.json) with reference.pt.")],
    out: Annotated[Path | None, typer.Option(help="Directory for the exported model (default: MODEL itself).")]
    = None,
) -> None:
    """Export a model's ONNX files and manifest again from its reference weights, without training."""
    from perception.export import ExportError, reexport
    from perception.manifest import ManifestError, load_manifest, model_id

    try:
        path = reexport(model, out)
    except (ExportError, ManifestError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"wrote {path} (model_id {model_id(load_manifest(path))[:12]})")
