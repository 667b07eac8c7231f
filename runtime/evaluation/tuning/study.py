"""The study driver: an Optuna study in SQLite, trials asked, run by a TrialRunner, and told back.

The driver alone talks to the storage (ask/tell), so the same loop serves local threads and Ray tasks and
the SQLite file never has writers on other machines. `budget.trials` counts the study's finished trials in
all, so running the same command again after an interruption carries on where it stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from perception.manifest import file_sha256
from runtime.config import ConfigError, load_config
from runtime.evaluation.tuning.objective import objective_values
from runtime.evaluation.tuning.spec import OPTIMIZER_SECTIONS, Param, SpecError, TuneSpec, trial_overrides
from runtime.evaluation.tuning.trial import TrialRunner, failed

INTERRUPTED = "interrupted"


@dataclass
class StudyOutcome:
    study: optuna.Study
    out_dir: Path
    ran: int  # trials finished in this run
    interrupted: bool
    stopped_by_time: bool


def study_dir(spec: TuneSpec) -> Path:
    return spec.out_dir / str(spec.study_name)


def open_study(spec: TuneSpec) -> optuna.Study:
    """Create the study, or load it to resume; refuses one made for another objective."""
    out = study_dir(spec)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    name = str(spec.study_name)
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    previous = existing.get(name, 0)
    # A resumed study draws new random numbers: the same seed again would repeat the first trials' values.
    seed = spec.sampler.seed + previous
    sampler: optuna.samplers.BaseSampler
    if spec.sampler.name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(storage=storage, sampler=sampler, study_name=name, load_if_exists=True,
                                directions=spec.directions)
    objective = json.dumps(spec.objective.model_dump(exclude_none=True), sort_keys=True)
    recorded = study.user_attrs.get("objective")
    if recorded is not None and recorded != objective:
        raise SpecError(f"{out / 'study.db'}: study '{name}' was run with objective {recorded}, the spec now says "
                        f"{objective}; their values do not compare: give another --study-name")
    current = fingerprint(spec)
    changes = fingerprint_changes(study.user_attrs.get("fingerprint"), current)
    if changes:
        raise SpecError(f"{out / 'study.db'}: study '{name}' was run with other evaluation settings: "
                        f"{'; '.join(changes)}; their trials do not compare with new ones: give another --study-name")
    study.set_user_attr("objective", objective)
    if name not in existing or "fingerprint" not in study.user_attrs:  # made now, or by a version without one
        study.set_user_attr("fingerprint", current)
        study.set_user_attr("base_config", str(spec.base_config))
        study.set_user_attr("mode", spec.evaluation.mode)
    return study


# The evaluation settings a trial's metrics depend on, per mode; trial_timeout_s only decides which trials fail.
_COMPARED = {"closed_loop": ("mode", "seeds", "overrides", "goals", "goal_timeout_s", "tolerance_m"),
             "open_loop": ("mode", "seeds", "overrides", "recordings", "goal_frame", "stride"),
             "task": ("mode", "seeds", "overrides", "task", "k", "goals")}


def fingerprint(spec: TuneSpec) -> dict[str, Any]:
    """What every trial of the study is measured against besides its sampled values (stored when it is made).

    Files count by content, so a base config or recording named by another path (another working directory)
    still matches, and one edited in place does not.
    """
    evaluation = spec.evaluation
    settings = evaluation.model_dump(mode="json", include=set(_COMPARED[evaluation.mode]))
    if "recordings" in settings:
        settings["recordings"] = [{"path": str(path), "sha256": file_sha256(path)} for path in evaluation.recordings]
    parts = {"base_config": {"path": str(spec.base_config), "sha256": file_sha256(spec.base_config)},
             "evaluation": settings}
    return {"sha256": hashlib.sha256(json.dumps(_compared(parts), sort_keys=True).encode()).hexdigest(), **parts}


def _compared(parts: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint without the paths: only content and values decide whether trials compare."""
    settings = dict(parts["evaluation"])
    if "recordings" in settings:
        settings["recordings"] = [recording["sha256"] for recording in settings["recordings"]]
    return {"base_config": parts["base_config"]["sha256"], "evaluation": settings}


def fingerprint_changes(recorded: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What differs between a study's stored fingerprint and the spec's, one line per key (empty: nothing)."""
    if recorded is None or recorded.get("sha256") == current["sha256"]:
        return []
    was, now = _compared(recorded), _compared(current)
    changes = []
    if was["base_config"] != now["base_config"]:
        changes.append(f"base_config: the study's was {_file_text(recorded['base_config'])}, the spec's is "
                       f"{_file_text(current['base_config'])}")
    keys = sorted(was["evaluation"].keys() | now["evaluation"].keys())
    if was["evaluation"]["mode"] != now["evaluation"]["mode"]:
        keys = ["mode"]  # the other mode's settings differ by nature: naming them would only hide this one
    for key in keys:
        if was["evaluation"].get(key) != now["evaluation"].get(key):
            before, after = recorded["evaluation"].get(key), current["evaluation"].get(key)
            if key == "recordings":
                before, after = _files_text(before), _files_text(after)
            changes.append(f"evaluation.{key}: the study's was {before}, the spec's is {after}")
    return changes


def _file_text(file: dict[str, str]) -> str:
    return f"{file['path']} (sha256 {file['sha256'][:12]})"


def _files_text(files: list[dict[str, str]] | None) -> str:
    return "[" + ", ".join(_file_text(file) for file in files or []) + "]"


def counted(trial: FrozenTrial) -> bool:
    """Trials that spent budget: complete, or failed on their own (not cut short by an interruption)."""
    return trial.state == TrialState.COMPLETE or (
        trial.state == TrialState.FAIL and trial.user_attrs.get("reason") != INTERRUPTED)


def base_values(spec: TuneSpec) -> dict[str, Any]:
    """The base config's own value for every searched key that applies to its optimizer."""
    base = load_config(spec.base_config, spec.evaluation.overrides).model_dump(mode="json")
    values = {}
    for key in spec.search:
        if _applies(key, base["planner"]["optimizer"]):
            node: Any = base
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values[key] = node
    return values


def _applies(key: str, optimizer: str) -> bool:
    parts = key.split(".")
    return not (len(parts) > 2 and parts[1] in OPTIMIZER_SECTIONS and parts[1] != optimizer)


def suggest(trial: Trial, spec: TuneSpec, base: dict[str, Any]) -> dict[str, Any]:
    """Sample the trial's values (define-by-run: an optimizer's own keys only when it is chosen).

    The base trial keeps base values that lie outside the space as they are; they are recorded in its
    `outside_space` attribute instead of being told to the sampler, which only models the space.
    """
    is_base = bool(trial.user_attrs.get("base"))
    params: dict[str, Any] = {}
    outside: dict[str, Any] = {}
    optimizer = load_config(spec.base_config, spec.evaluation.overrides).planner.optimizer
    order = sorted(spec.search, key=lambda key: key != "planner.optimizer")  # the optimizer decides the rest
    for key in order:
        param = spec.search[key]
        if not _applies(key, optimizer):
            continue
        if is_base and key in base and not param.contains(base[key]):
            params[key] = outside[key] = base[key]
        else:
            params[key] = _suggest_one(trial, key, param)
        if key == "planner.optimizer":
            optimizer = params[key]
    if outside:
        trial.set_user_attr("outside_space", outside)
    return params


def _suggest_one(trial: Trial, key: str, param: Param) -> Any:
    if param.choices is not None:
        return trial.suggest_categorical(key, param.choices)
    if param.int_ is not None:
        return trial.suggest_int(key, *param.int_, step=int(param.step or 1), log=param.log)
    assert param.float_ is not None
    return trial.suggest_float(key, *param.float_, step=param.step, log=param.log)


def _needs_base(study: optuna.Study) -> bool:
    return not any(t.user_attrs.get("base") and (counted(t) or t.state == TrialState.WAITING)
                   for t in study.get_trials(deepcopy=False))


def _close_stale(study: optuna.Study) -> None:
    """Trials left RUNNING (by a driver killed outright, or cut by Ctrl-C): failed, interrupted."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        Trial(study, frozen._trial_id).set_user_attr("reason", INTERRUPTED)
        study.tell(frozen.number, state=TrialState.FAIL)


def run_study(spec: TuneSpec, runner: TrialRunner, *, trials: int, timeout_s: float | None, concurrency: int,
              console: Console | None = None) -> StudyOutcome:
    console = console or Console(stderr=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec)
    _close_stale(study)
    base = base_values(spec)
    if spec.enqueue_base and _needs_base(study):
        in_space = {key: value for key, value in base.items() if spec.search[key].contains(value)}
        study.enqueue_trial(in_space, user_attrs={"base": True})
    out = study_dir(spec)
    done = sum(counted(t) for t in study.get_trials(deepcopy=False))
    deadline = time.monotonic() + timeout_s if timeout_s is not None else float("inf")
    in_flight: dict[object, Trial] = {}
    outcome = StudyOutcome(study, out, 0, interrupted=False, stopped_by_time=False)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[best]}"))
    with Progress(*columns, console=console, transient=False) as progress, _ctrl_c_at_safe_points() as ctrl_c:
        bar = progress.add_task(f"tune {spec.study_name}", total=trials, completed=min(done, trials),
                                best=_best_text(study))
        try:
            while True:
                ctrl_c()
                while len(in_flight) < concurrency and done + len(in_flight) < trials:
                    if time.monotonic() >= deadline:
                        outcome.stopped_by_time = True
                        break
                    trial = study.ask()
                    request = _request(spec, trial, suggest(trial, spec, base), out)
                    if isinstance(request, str):  # a combination the config refuses: failed, nothing started
                        _finish(spec, study, trial, failed(request), outcome, progress.console)
                        done += 1
                        progress.update(bar, completed=min(done, trials), best=_best_text(study))
                        continue
                    in_flight[runner.submit(request)] = trial
                if not in_flight:
                    break
                for handle, result in runner.wait(list(in_flight), timeout_s=0.5):
                    _finish(spec, study, in_flight.pop(handle), result, outcome, progress.console)
                    done += 1
                    progress.update(bar, completed=min(done, trials), best=_best_text(study))
        except KeyboardInterrupt:
            outcome.interrupted = True
            runner.cancel(list(in_flight))
            # Every trial still running, also one asked but not yet submitted when Ctrl-C came (this driver
            # alone asks trials of the study).
            _close_stale(study)
        finally:
            runner.close()
    return outcome


@contextlib.contextmanager
def _ctrl_c_at_safe_points() -> Iterator[Callable[[], None]]:
    """Ctrl-C noted by a handler and raised as KeyboardInterrupt only where the study loop calls the check: left to
    Python, it can land in a garbage-collection callback (SQLAlchemy's, under Optuna), where it is ignored and the
    study runs on. The loop checks at least every 0.5 s (its wait for trials). Off the main thread: Python's own."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    pressed = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.set())

    def check() -> None:
        if pressed.is_set():
            raise KeyboardInterrupt

    try:
        yield check
    finally:
        signal.signal(signal.SIGINT, previous)


def _request(spec: TuneSpec, trial: Trial, params: dict[str, Any], out: Path) -> dict[str, Any] | str:
    overrides = [*spec.evaluation.overrides, *trial_overrides(params)]
    try:
        load_config(spec.base_config, overrides)
    except ConfigError as exc:
        return f"invalid combination: {exc}"
    trial.set_user_attr("overrides", trial_overrides(params))
    return {
        "number": trial.number,
        "workdir": str(Path.cwd()),
        "base_config": str(spec.base_config),
        "overrides": overrides,
        "evaluation": spec.evaluation.model_dump(mode="json"),
        "timeout_s": spec.evaluation.trial_timeout_s,
        "runs_dir": str((out / "trials" / f"{trial.number:04d}").resolve()),
    }


def _finish(spec: TuneSpec, study: optuna.Study, trial: Trial, result: dict[str, Any], outcome: StudyOutcome,
            console: Console) -> None:
    for key in ("metrics", "details", "started_at", "finished_at", "host"):
        trial.set_user_attr(key, result[key])
    reason = result["reason"]
    values: list[float] | None = None
    if result["state"] == "complete":
        try:
            values = objective_values(spec, result["metrics"])
        except ValueError as exc:
            reason = str(exc)
    if values is None:
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        line = f"trial {trial.number:3d} FAILED  {reason}"
    else:
        study.tell(trial, values)
        shown = " ".join(f"{name} {value:.4g}" for name, value in result["metrics"].items())
        line = f"trial {trial.number:3d} value {' '.join(f'{v:.4g}' for v in values)}  {shown}"
    outcome.ran += 1
    console.print(line + ("  (base config)" if trial.user_attrs.get("base") else ""), highlight=False)


def _best_text(study: optuna.Study) -> str:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return ""
    if len(study.directions) > 1:
        return f"pareto front: {len(study.best_trials)} trial(s)"
    best = study.best_trial
    return f"best {best.value:.4g} (trial {best.number})"
