"""`edgeloop tune`: an Optuna study over planner keys, trials on this machine or on a Ray cluster (docs/tuning.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.common import fail


def tune(
    config: Annotated[Path, typer.Option("--config", "-c", help="Tuning spec YAML (configs/tune.yaml).")],
    trials: Annotated[int | None, typer.Option(min=0, help="Finished trials the study should hold in all "
                                                           "(default: the spec's budget.trials).")] = None,
    timeout_s: Annotated[float | None, typer.Option(min=0, help="Start no new trial after this long.")] = None,
    ray: Annotated[str | None, typer.Option(help="Run trials on Ray: 'local' (a private instance), 'auto' (the "
                                                 "cluster this machine belongs to) or ray://HOST:10001.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Trials in flight at once (default: the spec's; "
                                                                "with --ray, the cluster's CPUs per trial).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: the spec's out_dir).")] = None,
    study_name: Annotated[str | None, typer.Option(help="Study name (default: the spec's, else its file stem).")]
    = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a spec key: dotted.key=value.")] = None,
) -> None:
    """Search planner settings in closed loop (sim) or open loop (recordings); resumes a study of the same name."""
    from rich.console import Console

    from runtime.evaluation.tuning.local_backend import LocalRunner
    from runtime.evaluation.tuning.report import write_report
    from runtime.evaluation.tuning.spec import SpecError, load_spec
    from runtime.evaluation.tuning.study import run_study, study_dir
    from runtime.evaluation.tuning.trial import TrialRunner

    console = Console(stderr=True, soft_wrap=True)  # log lines stay whole in files and CI logs
    try:
        spec = load_spec(config, set_ or [])
    except SpecError as exc:
        raise fail(str(exc)) from exc
    spec.out_dir = out or spec.out_dir
    spec.study_name = study_name or spec.study_name
    runner: TrialRunner
    if ray is not None:
        from runtime.evaluation.tuning.ray_backend import RayRunner

        try:
            ray_runner = RayRunner(ray, spec.ray.cpus_per_trial)
        except (ImportError, ConnectionError, RuntimeError, ValueError) as exc:
            raise fail(f"--ray {ray}: {exc}") from exc
        in_flight = concurrency or max(1, int(ray_runner.cluster_cpus() // spec.ray.cpus_per_trial))
        runner = ray_runner
    else:
        in_flight = concurrency or spec.concurrency
        runner = LocalRunner(in_flight)
    console.print(f"study {spec.study_name}: {spec.evaluation.mode}, {len(spec.search)} key(s), "
                  f"{in_flight} trial(s) at once{' on Ray ' + ray if ray else ''}; storage "
                  f"{study_dir(spec) / 'study.db'}", highlight=False)
    budget_s = timeout_s if timeout_s is not None else spec.budget.timeout_s
    try:
        outcome = run_study(spec, runner, trials=spec.budget.trials if trials is None else trials,
                            timeout_s=budget_s,
                            concurrency=in_flight, console=console)
    except SpecError as exc:  # the stored study does not fit this spec: nothing ran
        runner.close()
        raise fail(str(exc)) from exc
    report = write_report(outcome.study, spec, outcome.out_dir)
    console.print(f"{outcome.ran} trial(s) ran in this run" + (
        f"; no new trial started after {budget_s:g} s (time budget)"
        if outcome.stopped_by_time else ""), highlight=False)
    if outcome.interrupted:
        console.print("interrupted: finished trials are kept; run the same command again to carry on")
    if report.best is None:
        console.print("no trial completed yet, so there is no best config")
    else:
        console.print(report.diff or "the best config is the base config", highlight=False, markup=False)
        console.print(f"best: trial {report.best.number} ({', '.join(f'{v:.4g}' for v in report.best.values)}) "
                      f"-> {report.best_yaml}", highlight=False)
    console.print("wrote " + ", ".join(str(path) for path in report.files), highlight=False)
    if outcome.interrupted:
        raise typer.Exit(130)
