"""`edgeloop task list | goals` and `edgeloop eval`: tasks, their goal sets, and planners judged on them
(docs/tasks.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.common import ResultOutOption, SetOption, emit_json, fail
from runtime.cli.progress import progress_bar

task_app = typer.Typer(help="Tasks in the sim and their goal sets (docs/tasks.md).", no_args_is_help=True)
eval_app = typer.Typer(help="Planners judged on a task's goal set, with intervals (docs/tasks.md).",
                       invoke_without_command=True)

KOption = Annotated[int, typer.Option("--k", min=1, help="Goals are the state k expert steps ahead (25; 75: long "
                                                           "horizon); episodes get 2k steps.")]


@task_app.command("list")
def task_list() -> None:
    """The tasks, each with its scene and success criterion."""
    from runtime.sim.tasks import TASKS, task_summary

    for name, kind in TASKS.items():
        typer.echo(f"{name:10s} scene {kind.scene:11s} {task_summary(kind)}")


@task_app.command("scene-schema")
def task_scene_schema() -> None:
    """Print the scene file's JSON Schema (docs/tasks.md)."""
    from runtime.sim.scene_file import scene_json_schema

    typer.echo(json.dumps(scene_json_schema(), indent=2))


@task_app.command("goals")
def task_goals(
    task: Annotated[str, typer.Argument(help="Task name (edgeloop task list).")],
    k: KOption = 25,
    count: Annotated[int, typer.Option(min=1, help="Goals in the set.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the starts and experts.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Goal set JSON (default: data/goals/TASK-kK.json).")] = None,
) -> None:
    """Write a goal set: seeded starts and the states the task's expert reaches k steps later."""
    from runtime.sim.goal_sets import GoalSetError, make_goal_set, shipped_goal_set, write_goal_set

    try:
        goal_set = make_goal_set(task, count, k, seed)
    except (GoalSetError, ValueError) as exc:
        raise fail(str(exc)) from exc
    typer.echo(str(write_goal_set(goal_set, out or shipped_goal_set(task, k))))


@eval_app.callback()
def evaluate(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option(help="Task name (edgeloop task list).")] = None,
    k: KOption = 25,
    goal_set: Annotated[Path | None, typer.Option(help="Goal set JSON (default: data/goals/TASK-kK.json).")] = None,
    goals: Annotated[int | None, typer.Option(min=1, help="Only the first N goals of the set.")] = None,
    planner: Annotated[list[str] | None, typer.Option(help="Planners (repeatable): cem, icem, mppi, "
                                                      "predictive_sampling, pytorch_mppi; the first is the one "
                                                      "the others are compared with, paired.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config whose model and planner are "
                                                "judged (default: configs/tasks/TASK.yaml).")] = None,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    ray: Annotated[str | None, typer.Option(help="Spread episodes over Ray: 'local', 'auto' or ray://HOST:10001 "
                                                 "(every node needs the repo and models at the same paths).")]
    = None,
    shard_goals: Annotated[int | None, typer.Option(min=1, help="Goals per shard (default: 10 with --ray, else "
                                                                "all of a planner's).")] = None,
    oracle: Annotated[bool, typer.Option(help="Plan on the simulator's physics in the model's latent space: "
                                              "what the planner and cost reach with a perfect model.")] = False,
    set_: SetOption = None,
) -> None:
    """Closed loop in the in-process sim: success (Wilson 95 % interval), final distance, ticks and plan ms per
    planner on a task's goal set; every plan runs all of planner.iterations (deadline_ms is left out)."""
    if ctx.invoked_subcommand is not None:
        return
    if task is None:
        raise typer.BadParameter("give --task (edgeloop task list), or a subcommand", param_hint="--task")
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.task_eval import evaluate_task
    from runtime.sim.goal_sets import GoalSetError, read_goal_set, shipped_goal_set

    config = config or Path("configs") / "tasks" / f"{task}.yaml"
    try:
        run_config = load_config(config, set_ or [])
        chosen = read_goal_set(goal_set or shipped_goal_set(task, k))
        if chosen.task != task:
            raise GoalSetError(f"{goal_set}: a goal set of task {chosen.task!r}, not {task!r}")
        with progress_bar("eval", quiet=json_) as bar:

            def show(name: str, done: int, total: int) -> None:
                bar.update(done, total, f"{task} {name}")

            runner = None
            if ray is not None:
                from runtime.evaluation.ray_cluster import RayShards

                runner = RayShards(ray)
            try:
                result = evaluate_task(run_config, chosen, planner or ["cem"], goals=goals, progress=show,
                                       runner=runner, shard_goals=shard_goals, oracle=oracle)
            finally:
                if runner is not None:
                    runner.close()
    except (ConfigError, GoalSetError, ValueError, FileNotFoundError, ImportError, ConnectionError) as exc:
        raise fail(str(exc)) from exc
    result["config"] = str(config)
    if emit_json(result, out, json_, kind="eval", config=run_config):
        return
    world = "the simulator (--oracle) in the latent of model" if oracle else "model"
    typer.echo(f"{task} k={result['k']} budget {result['budget']} steps, {result['goals']} goals, {world} "
               f"{result['model_id'][:12]} on {result['backend']}")
    for name, entry in result["planners"].items():
        low, high = entry["success_interval_95"]
        nodes = f"  on {len(entry['nodes'])} Ray node(s)" if entry["nodes"] else ""
        typer.echo(f"{name:20s} success {entry['success_rate']:6.1%} [{low:.1%}, {high:.1%}]  distance mean "
                   f"{entry['final_distance_mean']:.4f} median {entry['final_distance_median']:.4f}  ticks "
                   f"{entry['ticks_mean']:5.1f}  plan p50 {entry['plan_ms_p50']:.2f} ms (period "
                   f"{entry['control_period_ms']:.0f} ms){nodes}")
    for name, paired in result["paired"]["comparisons"].items():
        _print_paired(result["paired"]["against"], name, paired)


@eval_app.command("compare")
def evaluate_compare(
    first: Annotated[Path, typer.Argument(help="Result JSON of run A (edgeloop eval --out).")],
    second: Annotated[Path, typer.Argument(help="Result JSON of run B, on the same goal set.")],
    planner: Annotated[str | None, typer.Option(help="The planner to compare (default: the first of each).")] = None,
) -> None:
    """Two runs on the same goals compared paired: B − A with Newcombe's 95 % interval and McNemar's test."""
    from runtime.evaluation.statistics import compare_paired

    runs = []
    for path in (first, second):
        try:
            result = json.loads(path.read_text())
            name = planner or next(iter(result["planners"]))
            runs.append((result, result["planners"][name]["outcomes"], name))
        except (OSError, ValueError, KeyError, StopIteration) as exc:
            raise fail(f"{path}: not an eval result with planner {planner or '(first)'} ({exc})") from exc
    (a, outcomes_a, name_a), (b, outcomes_b, name_b) = runs
    same = ("task", "k", "goal_set_seed", "goals")
    if any(a.get(key) != b.get(key) for key in same):
        raise fail("the runs are not on the same goals: " + ", ".join(
            f"{key} {a.get(key)} vs {b.get(key)}" for key in same if a.get(key) != b.get(key)))
    _print_paired(f"{first}:{name_a}", f"{second}:{name_b}", compare_paired(outcomes_a, outcomes_b).as_dict())


def _print_paired(a: str, b: str, paired: dict[str, Any]) -> None:
    low, high = paired["difference_interval"]
    typer.echo(f"{b} − {a}: {paired['difference']:+.1%} [{low:+.1%}, {high:+.1%}] on {paired['goals']} goals "
               f"(only A {paired['only_a']}, only B {paired['only_b']}; McNemar p = {paired['p_value']:.3g})")
