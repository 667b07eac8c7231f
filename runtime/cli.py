"""The `edgeloop` command line."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli_calibrate import calibrate_app
from runtime.cli_common import fail
from runtime.cli_controller import controller_sim
from runtime.cli_engine import build_engine, convert_fp16
from runtime.cli_goal import goal_capture, goal_from_recording, goal_send
from runtime.cli_model import goals, record, train
from runtime.cli_quantize import quantize
from runtime.cli_tune import tune

app = typer.Typer(help="edgeloop: perception model -> world-model planner -> commands over ZeroMQ.",
                  no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Validate configs and export their JSON Schema.", no_args_is_help=True)
controller_app = typer.Typer(help="Controller processes that speak docs/protocol.md.", no_args_is_help=True)
app.add_typer(config_app, name="config")
bench_app = typer.Typer(help="Benchmarks: every variant side by side in one run.", no_args_is_help=True)
app.add_typer(controller_app, name="controller")
app.add_typer(bench_app, name="bench")
controller_app.command("sim")(controller_sim)
goal_app = typer.Typer(help="Goal images and run-time goal switching (docs/goals.md).", no_args_is_help=True)
app.add_typer(goal_app, name="goal")
goal_app.command("capture")(goal_capture)
goal_app.command("send")(goal_send)
goal_app.command("from-recording")(goal_from_recording)
app.command("record")(record)
app.command("train")(train)
app.command("goals")(goals)
app.add_typer(calibrate_app, name="calibrate")
app.command("quantize")(quantize)
app.command("tune")(tune)
app.command("build-engine")(build_engine)
app.command("convert-fp16")(convert_fp16)

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="Run config YAML.")]
SetOption = Annotated[list[str] | None, typer.Option("--set", help="Override a key: dotted.key=value (repeatable).")]


def _stop_on_signals(stop: object) -> None:
    """SIGINT/SIGTERM end the loop cleanly: stop sent, sockets closed, summary written, exit 0."""
    def handler(signum: int, frame: object) -> None:
        stop.set()  # type: ignore[attr-defined]
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@app.command()
def run(config: ConfigOption, set_: SetOption = None) -> None:
    """Run the control loop: source -> encode -> plan -> safety filter -> command."""
    from calibration.undistort import FrameSizeError
    from perception.engines.cuda_memory import CudaError
    from perception.manifest import ManifestError
    from perception.trt_build import EngineBuildError
    from runtime.config import ConfigError, load_config
    from runtime.loop import ControlLoop
    from runtime.recording import RecordingError

    try:
        loop = ControlLoop(load_config(config, set_ or []), config_file=config, overrides=set_ or [])
    except (ConfigError, ManifestError, RecordingError, FileNotFoundError, ValueError, EngineBuildError,
            CudaError) as exc:  # ValueError includes EngineError: a TensorRT backend that cannot run here
        raise fail(str(exc)) from exc
    _stop_on_signals(loop.stop_requested)
    try:
        loop.run()
    except FrameSizeError as exc:  # the camera's frames are not the size its calibration is for
        raise fail(str(exc)) from exc
    finally:
        summary = loop.close()
    typer.echo(json.dumps({k: summary[k] for k in ("loop_hz", "tick_ms", "counters", "run_dir")}))


@app.command()
def demo(
    config: ConfigOption = Path("configs/demo.yaml"),
    goals_: Annotated[int, typer.Option("--goals", help="How many held-out goals to drive to.")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    tolerance_m: Annotated[float, typer.Option(help="End-effector distance that counts as reached.")] = 0.05,
    goal_timeout_s: Annotated[float, typer.Option(help="Give up on a goal after this long.")] = 10.0,
    set_: SetOption = None,
) -> None:
    """Start the sim controller and drive the arm to held-out goal images, closed loop."""
    from runtime.config import ConfigError
    from runtime.demo import DemoError, run_demo

    try:
        result = run_demo(config, goals_, set_ or [], tolerance_m=tolerance_m, goal_timeout_s=goal_timeout_s,
                          verbose=not json_)
    except (ConfigError, DemoError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if json_:
        typer.echo(json.dumps(result))
        return
    reached = sum(g["reached"] for g in result["goals"])
    typer.echo(f"reached {reached}/{len(result['goals'])} goals ({result['success_rate']:.0%}) within "
               f"{result['tolerance_m'] * 100:.0f} cm | loop {result['loop_hz']:.1f} Hz | tick p50 "
               f"{result['tick_ms']['p50']:.1f} ms p99 {result['tick_ms']['p99']:.1f} ms | plan p50 "
               f"{result['plan_ms_p50']:.1f} ms | backend {result['backend']} | run {result['run_dir']}")


@bench_app.command("model")
def bench_model(
    config: ConfigOption = Path("configs/demo.yaml"),
    backend: Annotated[list[str] | None, typer.Option(help="Backends to compare (repeatable).")] = None,
    repeats: Annotated[int, typer.Option(min=10, help="Timed calls per measurement.")] = 200,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOption = None,
) -> None:
    """Median latency of preprocess, encode, a batched predictor step and a whole plan, per backend.

    The plan runs every configured iteration (the config's deadline_ms is left out)."""
    from rich.console import Console
    from rich.table import Table

    from runtime.bench import bench_model as measure
    from runtime.config import ConfigError, load_config

    try:
        result = measure(load_config(config, set_ or []), backend or ["onnxruntime", "torch"], repeats)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    if json_:
        typer.echo(json.dumps(result))
        return
    table = Table(title=f"median ms, {result['samples']} samples x {result['horizon']} steps x "
                        f"{result['iterations']} iterations, {result['threads']} thread(s)")
    table.add_column("backend")
    for column in ("preprocess_ms", "encode_ms", "predict_batch_ms", "plan_ms"):
        table.add_column(column, justify="right")
    for name, row in result["backends"].items():
        table.add_row(name, *(f"{value:.3f}" for value in row.values()))
    Console().print(table)
    if result["undistort_ms"] is not None:
        typer.echo(f"undistort (calibration.camera, per frame): {result['undistort_ms']:.3f} ms")


@bench_app.command("planner")
def bench_planner(
    config: ConfigOption = Path("configs/demo.yaml"),
    goals_: Annotated[int, typer.Option("--goals", help="Held-out goals per planner.")] = 20,
    planner: Annotated[list[str] | None, typer.Option(help="Planners to compare (repeatable): cem, mppi, "
                                                      "predictive_sampling, pytorch_mppi.")] = None,
    sweep: Annotated[bool, typer.Option(help="Instead: success and plan ms vs samples, horizon, iterations.")] = False,
    tolerance_m: Annotated[float, typer.Option(min=0.001, help="End-effector distance that counts as reached.")]
    = 0.05,
    mppi_noise_std: Annotated[float | None, typer.Option(
        min=0.001, help="pytorch-mppi's sampling spread, normalized action units "
                        "(default: planner.mppi.noise_std; not used by --sweep)."
    )] = None,
    mppi_temperature: Annotated[float, typer.Option(
        min=1e-6, help="pytorch-mppi's lambda, in cost units (0.1: its best in docs/benchmarks.md)."
    )] = 0.1,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOption = None,
) -> None:
    """Closed loop in the in-process sim: our planners and pytorch-mppi on the same predictor and goals.

    Every plan runs all of planner.iterations: the config's deadline_ms is left out so that results measure
    the configured work, not how loaded the machine is."""
    from runtime.bench import bench_planner as measure
    from runtime.bench import sweep_planner
    from runtime.config import ConfigError, load_config

    try:
        run_config = load_config(config, set_ or [])
        if sweep:
            rows = sweep_planner(run_config, goals_, {"samples": [32, 64, 128, 256, 512], "horizon": [2, 3, 5, 8],
                                                      "iterations": [1, 2, 3, 5]}, tolerance_m=tolerance_m)
            result: dict[str, object] = {"sweep": rows}
        else:
            found = measure(run_config, goals_, planner or ["cem", "mppi", "pytorch_mppi"], tolerance_m=tolerance_m,
                            mppi_noise_std=mppi_noise_std, mppi_temperature=mppi_temperature)
            result = found
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from exc
    if json_:
        typer.echo(json.dumps(result))
        return
    if sweep:
        for row in rows:
            typer.echo(f"samples {row['samples']:4d} horizon {row['horizon']:2d} iterations {row['iterations']:2d}: "
                       f"success {row['success_rate']:.0%}  plan {row['ms_per_plan']:.2f} ms")
        return
    for name, entry in found["planners"].items():
        ratio = entry.get("speedup_vs_pytorch_mppi")
        speedup = f"  {ratio:.2f}x pytorch-mppi" if ratio is not None else ""
        typer.echo(f"{name:20s} {entry['engine']:12s} {entry['mean_iterations']:.0f} it  "
                   f"success {entry['success_rate']:.0%}  "
                   f"plan p50 {entry['ms_per_plan']:.2f} ms  p90 {entry['ms_per_plan_p90']:.2f} ms  "
                   f"ticks {entry['mean_ticks']:.1f}{speedup}")


@config_app.command("validate")
def config_validate(file: Path, set_: SetOption = None) -> None:
    """Exit 0 if FILE is a valid run config whose files exist and fit its model, else print every error with
    its key path and exit 2."""
    from runtime.config import ConfigError, load_config
    from runtime.preflight import preflight

    try:
        config = load_config(file, set_ or [])
    except ConfigError as exc:
        raise fail(str(exc)) from exc
    problems = preflight(config)
    if problems:
        raise fail("\n".join(f"{file}: {problem}" for problem in problems))
    typer.echo(f"{file}: valid")


@config_app.command("schema")
def config_schema() -> None:
    """Print the run config's JSON Schema."""
    from runtime.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":
    sys.exit(app())
