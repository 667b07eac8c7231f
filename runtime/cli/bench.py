"""`edgeloop bench model | planner | soak | fuzz | async`: latency per backend; our planners beside pytorch-mppi
(docs/benchmarks.md); memory and latency over a long closed-loop run, and malformed messages at every listening
socket of the link (docs/reliability.md); asynchronous planning beside the synchronous loop (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.cli.common import ConfigOption, ResultOutOption, SetOption, emit_json, fail
from runtime.cli.progress import progress_bar

if TYPE_CHECKING:
    import numpy as np


def bench_model(
    config: ConfigOption = Path("configs/demo.yaml"),
    backend: Annotated[list[str] | None, typer.Option(help="Backends to compare (repeatable).")] = None,
    repeats: Annotated[int, typer.Option(min=10, help="Timed calls per measurement.")] = 200,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plots: Annotated[Path | None, typer.Option(help="Also write each backend's per-stage latency histograms to "
                                                    "DIR/latency_BACKEND.png (needs the observe extra).")] = None,
    set_: SetOption = None,
) -> None:
    """Median latency of preprocess, encode, a batched predictor step and a whole plan, per backend.

    The plan runs every configured iteration (the config's deadline_ms is left out)."""
    from rich.console import Console
    from rich.table import Table

    from calibration.figures import PlottingUnavailable
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.bench import MODEL_STAGES
    from runtime.evaluation.bench import bench_model as measure
    from runtime.evaluation.latency_plots import plot_stage_latency

    backends = backend or ["onnxruntime", "torch"]
    samples_ms: dict[str, dict[str, np.ndarray]] = {}
    try:
        with progress_bar("bench model", len(backends) * len(MODEL_STAGES), quiet=json_) as bar:
            run_config = load_config(config, set_ or [])
            result = measure(run_config, backends, repeats, samples_ms=samples_ms,
                             on_measured=bar.advance)
        written = plot_stage_latency(samples_ms, plots) if plots is not None else []
    except (ConfigError, ValueError, FileNotFoundError, PlottingUnavailable, OSError) as exc:
        raise fail(str(exc)) from exc
    if emit_json(result, out, json_, kind="bench-model", config=run_config):
        return
    table = Table(title=f"median ms, {result['samples']} samples x {result['horizon']} steps x "
                        f"{result['iterations']} iterations, {result['threads']} thread(s)")
    table.add_column("backend")
    for column in (*MODEL_STAGES, "planner's share"):
        table.add_column(column, justify="right")
    for name, row in result["backends"].items():
        table.add_row(name, *(f"{row[stage]:.3f}" for stage in MODEL_STAGES), f"{row['planner_overhead']:.0%}")
    Console().print(table)
    if result["undistort_ms"] is not None:
        typer.echo(f"undistort (calibration.camera, per frame): {result['undistort_ms']:.3f} ms")
    for path in written:
        typer.echo(f"wrote {path}")


def bench_planner(
    config: ConfigOption = Path("configs/demo.yaml"),
    goals_: Annotated[int, typer.Option("--goals", help="Held-out goals per planner.")] = 20,
    planner: Annotated[list[str] | None, typer.Option(help="Planners to compare (repeatable): cem, icem, mppi, "
                                                      "predictive_sampling, pytorch_mppi.")] = None,
    sweep: Annotated[bool, typer.Option(help="Instead: success and plan ms vs samples, horizon, iterations.")] = False,
    per_call: Annotated[bool, typer.Option(help="Instead: one plan's ms against the horizon at 32 samples, one "
                                                "iteration: the rollout model, stepping, pytorch-mppi.")] = False,
    tolerance_m: Annotated[float, typer.Option(min=0.001, help="End-effector distance that counts as reached.")]
    = 0.05,
    mppi_noise_std: Annotated[float | None, typer.Option(
        min=0.001, help="pytorch-mppi's sampling spread, normalized action units "
                        "(default: planner.mppi.noise_std; not used by --sweep)."
    )] = None,
    mppi_temperature: Annotated[float, typer.Option(
        min=1e-6, help="pytorch-mppi's lambda, in cost units (0.1: its best in docs/benchmarks.md)."
    )] = 0.1,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOption = None,
) -> None:
    """Closed loop in the in-process sim: our planners and pytorch-mppi on the same predictor and goals.

    Every plan runs all of planner.iterations: the config's deadline_ms is left out so that results measure
    the configured work, not how loaded the machine is."""
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.bench import bench_planner as measure
    from runtime.evaluation.bench import sweep_planner
    from runtime.evaluation.efficiency import EfficiencyError

    axes = {"samples": [32, 64, 128, 256, 512], "horizon": [2, 3, 5, 8], "iterations": [1, 2, 3, 5]}
    planners = planner or ["cem", "mppi", "pytorch_mppi"]
    runs = sum(len(values) for values in axes.values()) if sweep else len(planners)
    if per_call:
        _bench_per_call(config, set_ or [], out, json_)
        return
    try:
        run_config = load_config(config, set_ or [])
        with progress_bar("bench planner: goals", runs * goals_, quiet=json_) as bar:
            if sweep:
                rows = sweep_planner(run_config, goals_, axes, tolerance_m=tolerance_m, on_goal=bar.advance)
                result: dict[str, object] = {"sweep": rows}
            else:
                found = measure(run_config, goals_, planners, tolerance_m=tolerance_m, mppi_noise_std=mppi_noise_std,
                                mppi_temperature=mppi_temperature, on_goal=bar.advance)
                result = found
    except (ConfigError, ValueError, FileNotFoundError, ImportError, EfficiencyError) as exc:
        raise fail(str(exc)) from exc
    if emit_json(result, out, json_, kind="bench-planner-sweep" if sweep else "bench-planner", config=run_config):
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



def _bench_per_call(config: Path, overrides: list[str], out: Path | None, json_: bool) -> None:
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.bench import per_call_overhead

    try:
        run_config = load_config(config, overrides)
        rows = per_call_overhead(run_config, [1, 2, 5, 10, 20])
    except (ConfigError, ValueError, FileNotFoundError, ImportError) as exc:
        raise fail(str(exc)) from exc
    if emit_json({"per_call": rows}, out, json_, kind="bench-planner-per-call", config=run_config):
        return
    for row in rows:
        theirs = f"  pytorch-mppi {row['pytorch_mppi_ms']:.3f} ms" if "pytorch_mppi_ms" in row else ""
        typer.echo(f"samples {row['samples']} horizon {row['horizon']:2d}: rollout model {row['rollout_model_ms']:.3f} "
                   f"ms  stepping {row['stepping_ms']:.3f} ms{theirs}")


def bench_soak(
    config: ConfigOption = Path("configs/demo.yaml"),
    minutes: Annotated[float, typer.Option(min=0.1, help="How long to run the closed loop.")] = 30.0,
    switch_s: Annotated[float, typer.Option(min=0.5, help="A new held-out goal every this many seconds.")] = 5.0,
    window_s: Annotated[float, typer.Option(min=1.0, help="The first and last windows whose tick p99 are compared "
                                                          "(the first is also the warm-up RSS is measured after).")]
    = 60.0,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOption = None,
) -> None:
    """The demo's closed loop against the sim controller process for a long time, goals switching: RSS growth and
    tick p99 drift (docs/reliability.md, Soak)."""
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.demo import DemoError
    from runtime.evaluation.soak import run_soak

    try:
        run_config = load_config(config, set_ or [])
        result = run_soak(config, minutes, set_ or [], switch_s=switch_s, window_s=window_s, verbose=not json_)
    except (ConfigError, DemoError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if emit_json(result, out, json_, kind="bench-soak", config=run_config):
        return
    typer.echo(f"{result['minutes']:.1f} min, {result['goals_switched']} goals ({result['goals_reached']} reached) | "
               f"RSS {result['rss_mb_after_warmup']:.1f} -> {result['rss_mb_end']:.1f} MB "
               f"({result['rss_growth_mb']:+.1f} MB, {result['rss_slope_mb_per_hour']:+.2f} MB/h; controller "
               f"{result['controller_rss_slope_mb_per_hour']:+.2f} MB/h) | tick p99 "
               f"{result['tick_p99_ms_first_window']:.1f} -> {result['tick_p99_ms_last_window']:.1f} ms | loop "
               f"{result['loop_hz']:.1f} Hz | run {result['run_dir']}")


def bench_fuzz(
    messages: Annotated[int, typer.Option(min=1, help="Malformed messages per socket.")] = 100_000,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Malformed messages (and ones over 8 MiB) at the runtime's state, frame and goal sockets and the sim
    controller's command socket: each counted, nothing derived from them, valid traffic afterwards (docs/reliability.md,
    Fuzzing). Exit 1 if any of that fails."""
    from runtime.evaluation.fuzz import run_fuzz

    result = run_fuzz(messages)
    if not emit_json(result, out, json_, kind="bench-fuzz", config=None):
        for entry in result["sockets"]:
            typer.echo(f"{entry['socket']}: {entry['sent']} sent, {entry['counted']} counted in {entry['seconds']} s, "
                       f"{entry['derived_from_bad_data']} derived from bad data, valid traffic resumed: "
                       f"{entry['valid_traffic_resumed']} | {entry['counters']}")
    if not (result["all_counted"] and result["nothing_derived"] and result["all_resumed"]):
        raise typer.Exit(1)


def bench_report(
    template: Annotated[Path, typer.Option(help="The page with its table and value lines.")]
    = Path("docs/results/benchmarks.template.md"),
    results: Annotated[Path, typer.Option(help="Folder of result JSONs the template names by file stem.")]
    = Path("docs/results"),
    out: Annotated[Path, typer.Option(help="The page to write.")] = Path("docs/benchmarks.md"),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 if the page differs from what the results "
                                             "give.")] = False,
) -> None:
    """Regenerate docs/benchmarks.md from stored results (docs/benchmarks.md, How this page is made): each table
    refuses rows of different models or machines unless it declares that comparison."""
    from runtime.evaluation.report.provenance_line import ReportError
    from runtime.evaluation.report.render import render

    try:
        page = render(template, results)
    except (ReportError, OSError) as exc:
        raise fail(str(exc)) from exc
    if check:
        if not out.exists() or out.read_text() != page:
            typer.echo(f"{out} differs from {template} with the results in {results}: run `edgeloop bench report`",
                       err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is what {template} and {results} give")
        return
    out.write_text(page)
    typer.echo(f"wrote {out}")


def bench_link(
    round_trips: Annotated[int, typer.Option(min=100, help="Timed round trips per side.")] = 20_000,
    block: Annotated[int, typer.Option(min=10, help="Round trips per block; blocks alternate between the sides.")]
    = 250,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Our link's round trip (command out, state back, both decoded and checked) beside a raw pyzmq echo of the
    same bytes on sockets of the same types and options, alternating in one run (docs/benchmarks.md)."""
    from runtime.evaluation.link_bench import bench_link as measure

    result = measure(round_trips, block)
    if emit_json(result, out, json_, kind="bench-link", config=None):
        return
    for name, side in result["sides"].items():
        typer.echo(f"{name:10s} round trip p50 {side['p50_us']:.1f} us  p90 {side['p90_us']:.1f} us  "
                   f"p99 {side['p99_us']:.1f} us  ({side['round_trips']} round trips)")
    typer.echo(f"edgeloop / raw pyzmq: {result['ratio_p50']:.2f}x at p50, {result['ratio_p99']:.2f}x at p99")


def bench_async(
    config: ConfigOption = Path("configs/demo.yaml"),
    goals_: Annotated[int, typer.Option("--goals", min=1, help="Held-out goals per variant.")] = 10,
    command_hz: Annotated[float, typer.Option(min=1.0, max=1000.0, help="Asynchronous planning's command rate.")]
    = 100.0,
    control_cpu: Annotated[int | None, typer.Option(min=0, help="Also: the command thread pinned to this CPU and the "
                                                                "planner thread to the others (Linux).")] = None,
    control_priority: Annotated[int | None, typer.Option(min=1, max=99, help="Also: the command thread at this "
                                                                        "SCHED_FIFO priority (Linux).")] = None,
    tolerance_m: Annotated[float, typer.Option(min=0.001, help="End-effector distance that counts as reached.")]
    = 0.05,
    out: ResultOutOption = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    set_: SetOption = None,
) -> None:
    """The demo closed loop against the sim controller process: asynchronous planning (command rate, interval and
    jitter, plan rate and age, commands per plan) beside the synchronous loop's success on the same goals
    (docs/benchmarks.md)."""
    from runtime.config import ConfigError, load_config
    from runtime.evaluation.async_bench import bench_async as measure
    from runtime.evaluation.demo import DemoError

    try:
        run_config = load_config(config, set_ or [])
        result = measure(config, goals_, set_ or [], command_hz=command_hz, control_cpu=control_cpu,
                         control_priority=control_priority, tolerance_m=tolerance_m, verbose=not json_)
    except (ConfigError, DemoError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if emit_json(result, out, json_, kind="bench-async", config=run_config):
        return
    for row in result["variants"]:
        line = (f"{row['variant']:34s} success {sum(row['reached'])}/{len(row['reached'])} in "
                f"{row['seconds_per_goal']:.2f} s per goal")
        if "commands_per_s" in row:
            line += (f" | commands {row['commands_per_s']:.1f}/s, interval p50 {row['interval_ms_p50']:.2f} ms p99 "
                     f"{row['interval_ms_p99']:.2f} ms, jitter p99 {row['jitter_ms_p99']:.2f} ms | plans "
                     f"{row['plans_per_s']:.1f}/s, age p50 {row['plan_age_ms_p50']:.1f} ms p99 "
                     f"{row['plan_age_ms_p99']:.1f} ms, {row['commands_per_plan']:.2f} commands/plan | differs from "
                     f"sync on goals {row['disagrees_with_sync']}")
        else:
            line += f" | loop {row['counters']['ticks']} ticks, plan p50 {row['plan_ms_p50']:.1f} ms"
        typer.echo(line)
