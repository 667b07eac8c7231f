"""What a study leaves behind: best.yaml (+ best.diff), results.csv / results.json and the plots.

best.yaml is the base config with the best trial's values applied, dumped complete (every key) and read back
through load_config, so it is a valid run config as written. The diff compares the resolved base config with
it, so only the keys the study changed show up, not formatting or comments.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from runtime.config import dump_config, load_config
from runtime.evaluation.tuning import plots
from runtime.evaluation.tuning.spec import TuneSpec


@dataclass
class Report:
    best: FrozenTrial | None
    best_yaml: Path | None
    diff: str
    files: list[Path]


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial; multi-objective: the Pareto trial best on the first metric, then the next."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    if len(study.directions) == 1:
        return study.best_trial
    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    return min(study.best_trials, key=lambda t: [s * v for s, v in zip(signs, t.values, strict=True)])


def rows(study: optuna.Study, spec: TuneSpec) -> list[dict[str, Any]]:
    """One flat row per trial: state, value(s), searched keys, metrics, timing and the failure reason."""
    value_names = ["value"] if spec.objective.weights is not None else spec.objective.names
    out = []
    for trial in study.get_trials(deepcopy=False):
        started, finished = trial.user_attrs.get("started_at"), trial.user_attrs.get("finished_at")
        row: dict[str, Any] = {"number": trial.number, "state": trial.state.name.lower(),
                               "base": bool(trial.user_attrs.get("base"))}
        row.update(dict(zip(value_names, trial.values or [None] * len(value_names), strict=True)))
        row.update({key: trial.params.get(key, trial.user_attrs.get("outside_space", {}).get(key))
                    for key in spec.search})
        row.update({f"metric.{k}": v for k, v in trial.user_attrs.get("metrics", {}).items()})
        row.update({"duration_s": finished - started if started and finished else None, "started_at": started,
                    "finished_at": finished, "host": trial.user_attrs.get("host"),
                    "reason": trial.user_attrs.get("reason")})
        out.append(row)
    return out


def write_report(study: optuna.Study, spec: TuneSpec, out: Path) -> Report:
    table = rows(study, spec)
    files = [_write_csv(table, out / "results.csv")]
    best = best_trial(study)
    summary: dict[str, Any] = {
        "study": study.study_name, "storage": str(out / "study.db"), "base_config": str(spec.base_config),
        "mode": spec.evaluation.mode, "objective": spec.objective.model_dump(exclude_none=True),
        "directions": [d.name.lower() for d in study.directions],
        "best": None if best is None else {"number": best.number, "values": best.values, "params": best.params,
                                           "metrics": best.user_attrs.get("metrics", {})},
        "pareto": [t.number for t in study.best_trials] if best is not None and len(study.directions) > 1 else None,
        "trials": table,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    files.append(out / "results.json")
    files += _plots(study, spec, table, best, out / "plots")
    if best is None:
        return Report(None, None, "", files)
    best_yaml, diff = _write_best(spec, best, out)
    return Report(best, best_yaml, diff, [best_yaml, out / "best.diff", *files])


def _write_csv(table: list[dict[str, Any]], path: Path) -> Path:
    columns = list(dict.fromkeys(key for row in table for key in row))
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(table)
    return path


def _write_best(spec: TuneSpec, best: FrozenTrial, out: Path) -> tuple[Path, str]:
    config = load_config(spec.base_config, best.user_attrs.get("overrides", []))
    values = ", ".join(f"{v:.4g}" for v in best.values)
    path = out / "best.yaml"
    path.write_text(f"# edgeloop tune: study {spec.study_name}, trial {best.number}, objective {values}\n"
                    f"# = {spec.base_config} with: {' '.join(best.user_attrs.get('overrides', [])) or 'nothing'}\n"
                    + dump_config(config))
    load_config(path)  # what we wrote must be a valid config as it stands
    base_text = dump_config(load_config(spec.base_config)).splitlines(keepends=True)
    diff = "".join(difflib.unified_diff(base_text, dump_config(config).splitlines(keepends=True),
                                        fromfile=str(spec.base_config), tofile=str(path)))
    (out / "best.diff").write_text(diff)
    return path, diff


def _plots(study: optuna.Study, spec: TuneSpec, table: list[dict[str, Any]], best: FrozenTrial | None,
           out: Path) -> list[Path]:
    first = "value" if spec.objective.weights is not None else spec.objective.names[0]
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    base = next((row["number"] for row in table if row["base"]), None)
    history = plots.plot_history([row["number"] for row in table],
                                 [row[first] if row["state"] == "complete" else None for row in table],
                                 base, maximize, first, out / "history.png")
    try:
        with warnings.catch_warnings():  # "few trials per regime" on small studies: the plot is a sketch then
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(
                study, target=(lambda t: t.values[0]) if len(study.directions) > 1 else None)
        note = ""
    except (RuntimeError, ValueError) as exc:  # too few complete trials, or no parameter varied yet
        importances, note = {}, f"not available yet: {exc}"
    if not importances and not note:
        note = "not available yet: no parameter varied across complete trials"
    importance = plots.plot_importances(importances, note[:90], out / "importance.png")
    quality = "action_error" if spec.evaluation.mode == "open_loop" else "success_rate"
    points = [(row["metric.plan_ms"], row[f"metric.{quality}"], row["number"]) for row in table
              if row["state"] == "complete" and all(math.isfinite(row.get(f"metric.{k}", math.nan))
                                                    for k in ("plan_ms", quality))]
    tradeoff = plots.plot_tradeoff(points, best.number if best else None, base, "plan ms (p50)", quality,
                                   out / "tradeoff.png", (0.0, 1.0) if quality == "success_rate" else None)
    return [history, importance, tradeoff]
