"""`edgeloop run` and `edgeloop demo`: the control loop against any controller, and the main job."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.cli.common import ConfigOption, ResultOutOption, SetOption, emit_json, fail


def _stop_on_signals(stop: threading.Event) -> None:
    """SIGINT/SIGTERM end the loop cleanly: stop sent, sockets closed, summary written, exit 0."""
    def handler(signum: int, frame: object) -> None:
        stop.set()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def run(config: ConfigOption, set_: SetOption = None) -> None:
    """Run the control loop: source -> encode -> plan -> safety filter -> command."""
    # A signal during start-up (imports, model load: an engine build can take minutes) is kept until the loop
    # exists, which then stops at once the clean way: stop sent, recording finished, summary written.
    early_stop = threading.Event()
    _stop_on_signals(early_stop)
    from calibration.undistort import FrameSizeError
    from perception.engines.cuda_memory import CudaError
    from perception.manifest import ManifestError
    from perception.trt_build import EngineBuildError
    from runtime.config import ConfigError, load_config
    from runtime.loop import ControlLoop
    from runtime.prometheus import serve_loop_metrics
    from runtime.recording import RecordingError
    from runtime.sources.base import SourceError

    try:
        loop = ControlLoop(load_config(config, set_ or []), config_file=config, overrides=set_ or [])
    except (ConfigError, ManifestError, RecordingError, FileNotFoundError, ValueError, EngineBuildError,
            CudaError) as exc:  # ValueError includes EngineError: a TensorRT backend that cannot run here
        raise fail(str(exc)) from exc
    _stop_on_signals(loop.stop_requested)
    if early_stop.is_set():
        loop.stop_requested.set()
    try:
        metrics = serve_loop_metrics(loop.config.prometheus, loop)
    except OSError as exc:  # the port is taken
        loop.close()
        raise fail(str(exc)) from exc
    if metrics is not None:
        typer.echo(f"metrics for Prometheus at {metrics.url}", err=True)
    try:
        loop.run()
    except (FrameSizeError, SourceError) as exc:  # frames of the wrong size, or a video that stops decoding:
        raise fail(str(exc)) from exc           # close() below still sends the stop and writes the summary
    finally:
        if metrics is not None:
            metrics.close()
        summary = loop.close()
    typer.echo(json.dumps({k: summary[k] for k in ("loop_hz", "tick_ms", "counters", "run_dir")}))


def demo(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config YAML (default: configs/demo.yaml; "
                                                                       "with --task, configs/tasks/TASK.yaml).")]
    = None,
    goals_: Annotated[int, typer.Option("--goals", help="How many held-out goals to drive to.")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    tolerance_m: Annotated[float, typer.Option(help="End-effector distance that counts as reached.")] = 0.05,
    goal_timeout_s: Annotated[float, typer.Option(help="Give up on a goal after this long.")] = 10.0,
    task: Annotated[str | None, typer.Option(help="Instead: a task's goals (edgeloop task list) through the real "
                                                  "loop and link, each from its start state within its budget.")]
    = None,
    k: Annotated[int, typer.Option("--k", min=1, help="With --task: the goal set (data/goals/TASK-kK.json).")] = 25,
    out: ResultOutOption = None,
    set_: SetOption = None,
) -> None:
    """Start the sim controller and drive the arm to held-out goal images, closed loop (or play a task)."""
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.demo import DemoError, run_demo

    config_path = config or (Path("configs") / "tasks" / f"{task}.yaml" if task is not None
                             else Path("configs/demo.yaml"))
    try:
        run_config = load_config(config_path, set_ or [])
        if task is not None:
            result = _task_demo(task, k, config_path, goals_, set_ or [], verbose=not json_)
        else:
            result = run_demo(config_path, goals_, set_ or [], tolerance_m=tolerance_m,
                              goal_timeout_s=goal_timeout_s, verbose=not json_)
    except (ConfigError, DemoError, FileNotFoundError, ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from exc
    if emit_json(result, out, json_, kind="demo-task" if task is not None else "demo", config=run_config):
        return
    if task is not None:
        low, high = result["success_interval_95"]
        reached = sum(g["success"] for g in result["goals"])
        typer.echo(f"{task} k={k}: reached {reached}/{len(result['goals'])} goals ({result['success_rate']:.0%}, "
                   f"95 % interval {low:.0%}-{high:.0%}) | loop {result['loop_hz']:.1f} Hz | plan p50 "
                   f"{result['plan_ms_p50']:.1f} ms | run {result['run_dir']}")
        return
    reached = sum(g["reached"] for g in result["goals"])
    typer.echo(f"reached {reached}/{len(result['goals'])} goals ({result['success_rate']:.0%}) within "
               f"{result['tolerance_m'] * 100:.0f} cm | loop {result['loop_hz']:.1f} Hz | tick p50 "
               f"{result['tick_ms']['p50']:.1f} ms p99 {result['tick_ms']['p99']:.1f} ms | plan p50 "
               f"{result['plan_ms_p50']:.1f} ms | backend {result['backend']} | run {result['run_dir']}")


def _task_demo(task: str, k: int, config: Path, goals: int, overrides: list[str],
               verbose: bool) -> dict[str, Any]:
    from runtime.evaluation.task_demo import run_task_demo
    from runtime.sim.goal_sets import read_goal_set, shipped_goal_set

    goal_set = read_goal_set(shipped_goal_set(task, k))
    return run_task_demo(goal_set, config, overrides, goals, verbose=verbose)
