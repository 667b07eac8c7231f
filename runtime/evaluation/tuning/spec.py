"""The tuning spec (configs/tune.yaml): what to search, how to score a trial, what to evaluate on, the budget.

Every searched key is checked against the run config schema before any trial runs: its bounds and choices are
applied to the base config and validated, so a space the config would reject is refused with the key named.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perception.manifest import ManifestError, load_manifest
from runtime.config import ConfigError, RunConfig, apply_override, load_config

# The metrics a trial reports, per evaluation mode, and which way is better.
Direction = Literal["minimize", "maximize"]
CLOSED_LOOP_METRICS: dict[str, Direction] = {
    "success_rate": "maximize", "mean_final_distance": "minimize", "time_to_goal": "minimize", "plan_ms": "minimize"}
OPEN_LOOP_METRICS: dict[str, Direction] = {"action_error": "minimize", "goal_cost": "minimize", "plan_ms": "minimize"}
TASK_METRICS: dict[str, Direction] = {
    "success_rate": "maximize", "mean_final_distance": "minimize", "ticks": "minimize", "plan_ms": "minimize"}
# Only the chosen optimizer's subsection is read (docs/planner.md), so its keys are searched only with it.
OPTIMIZER_SECTIONS = ("cem", "icem", "mppi", "predictive_sampling")


class SpecError(ValueError):
    """A tuning spec that cannot be used; each line names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One searched key: an integer range, a float range, or a list of choices."""

    int_: tuple[int, int] | None = Field(None, alias="int", description="Integer range [low, high], inclusive.")
    float_: tuple[float, float] | None = Field(None, alias="float", description="Float range [low, high].")
    choices: list[Any] | None = Field(None, description="Values to choose from (any YAML scalars).")
    log: bool = Field(False, description="Sample the range on a log scale (low must be > 0).")
    step: float | None = Field(None, gt=0, description="Range only: sample on this grid from low.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> Param:
        kinds = [k for k, v in (("int", self.int_), ("float", self.float_), ("choices", self.choices)) if v is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of 'int', 'float' or 'choices' (got {kinds or 'none'})")
        if self.choices is not None:
            if not self.choices:
                raise ValueError("'choices' is empty")
            if self.log or self.step is not None:
                raise ValueError("'log' and 'step' apply to ranges, not to 'choices'")
            if not all(choice is None or isinstance(choice, (bool, int, float, str)) for choice in self.choices):
                raise ValueError("choices must be scalars (numbers, strings, booleans or null)")
            return self
        low, high = self.int_ or self.float_  # type: ignore[misc]
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("range bounds must be finite")
        if low >= high:
            raise ValueError(f"low ({low}) must be below high ({high}); fix a value with evaluation.overrides")
        if self.log and low <= 0:
            raise ValueError(f"'log: true' needs low > 0 (got {low})")
        if self.log and self.step is not None:
            raise ValueError("'log' and 'step' cannot be combined")
        if self.int_ is not None and self.step is not None and self.step != int(self.step):
            raise ValueError(f"an integer range needs an integer step (got {self.step})")
        return self

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        low, high = self.int_ or self.float_  # type: ignore[misc]
        return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high

    def probe_values(self) -> list[Any]:
        """The values whose validity stands for the whole space: both bounds, or every choice."""
        if self.choices is not None:
            return list(self.choices)
        return list(self.int_ or self.float_)  # type: ignore[arg-type]


class Objective(_Strict):
    """Weighted (one value to minimize) or multi-objective (one direction per metric, a Pareto front)."""

    weights: dict[str, float] | None = Field(
        None, description="metric -> weight > 0; the trial's value = sum of weight x metric, signed so that "
                          "lower is better (maximized metrics count negatively).")
    metrics: list[str] | None = Field(
        None, min_length=2, description="Multi-objective: these metrics each in their own direction.")

    @model_validator(mode="after")
    def _one_kind(self) -> Objective:
        if (self.weights is None) == (self.metrics is None):
            raise ValueError("give either 'weights' (one weighted objective) or 'metrics' (multi-objective)")
        if self.weights is not None:
            if not self.weights:
                raise ValueError("'weights' is empty")
            # NaN fails `> 0`; infinity would make every trial's value infinite, so no trial could beat another.
            bad = [name for name, weight in self.weights.items() if not (weight > 0 and math.isfinite(weight))]
            if bad:
                raise ValueError(f"weights must be finite and > 0 (the metric's direction gives the sign): {bad}")
        if self.metrics is not None and len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"'metrics' lists a metric twice: {self.metrics}")
        return self

    @property
    def names(self) -> list[str]:
        return list(self.weights) if self.weights is not None else list(self.metrics or [])


class Evaluation(_Strict):
    mode: Literal["closed_loop", "open_loop", "task"] = Field(
        "closed_loop", description="closed_loop: the real loop against a sim controller process, to held-out "
                                   "goals; open_loop: plan on recorded frames, compared with the recorded actions; "
                                   "task: a task's goal set in the in-process sim, as edgeloop eval.")
    goals: int = Field(5, ge=1, description="closed_loop: the first N held-out goals of the model's goal set; "
                                            "task: the first N goals of the task's goal set.")
    task: str | None = Field(None, description="task: the task (edgeloop task list).")
    k: int = Field(25, ge=1, description="task: its goal set data/goals/TASK-kK.json.")
    goal_timeout_s: float = Field(6.0, gt=0, description="closed_loop: give up on a goal after this long.")
    tolerance_m: float = Field(0.05, gt=0, description="closed_loop: end-effector distance that counts as reached.")
    recordings: list[Path] = Field(default_factory=list, description="open_loop: MCAP episode recordings.")
    goal_frame: int = Field(-1, description="open_loop: the goal is this frame of each recording (-1: the last).")
    stride: int = Field(10, ge=1, description="open_loop: plan from every stride-th frame before the goal frame.")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="planner.seed values; each trial runs once per seed, metrics averaged.")
    overrides: list[str] = Field(default_factory=list,
                                 description="dotted.key=value applied to every trial (not to best.yaml).")
    trial_timeout_s: float = Field(300.0, gt=0, description="A trial still running after this long is killed "
                                                             "and recorded as failed.")

    @property
    def metrics(self) -> dict[str, Direction]:
        return {"closed_loop": CLOSED_LOOP_METRICS, "open_loop": OPEN_LOOP_METRICS, "task": TASK_METRICS}[self.mode]


class Budget(_Strict):
    trials: int = Field(20, ge=1, description="Finished trials the study holds in all (resumed runs count on).")
    timeout_s: float | None = Field(None, gt=0, description="Start no new trial after this long (this run).")


class Sampler(_Strict):
    name: Literal["tpe", "random"] = Field("tpe", description="Optuna sampler.")
    seed: int = Field(0, description="Sampler seed.")
    startup_trials: int = Field(5, ge=0, description="TPE: random trials before it models the space.")


class RaySection(_Strict):
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs Ray reserves per trial task.")


class TuneSpec(_Strict):
    base_config: Path = Field(description="The run config the trials start from (and best.yaml is built on).")
    study_name: str | None = Field(None, description="Study name (default: the spec file's stem).")
    out_dir: Path = Field(Path("runs/tune"), description="Outputs go to OUT_DIR/STUDY_NAME/.")
    search: dict[str, Param] = Field(description="Dotted planner key -> range or choices.")
    objective: Objective = Field(default_factory=lambda: Objective(weights={"success_rate": 1.0}))
    evaluation: Evaluation = Field(default_factory=Evaluation)
    budget: Budget = Field(default_factory=Budget)
    sampler: Sampler = Field(default_factory=Sampler)
    enqueue_base: bool = Field(True, description="Trial 0 evaluates the base config's own values.")
    concurrency: int = Field(1, ge=1, description="Trials in flight at once.")
    ray: RaySection = Field(default_factory=RaySection)

    @property
    def directions(self) -> list[Direction]:
        if self.objective.weights is not None:
            return ["minimize"]
        return [self.evaluation.metrics[name] for name in self.objective.names]


def load_spec(path: str | Path, overrides: list[str] | None = None) -> TuneSpec:
    """Read and validate a tuning spec, then check its search space against the run config schema."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: tuning spec not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping")
    try:
        for assignment in overrides or []:
            apply_override(data, assignment)
    except ConfigError as exc:
        raise SpecError(str(exc)) from exc
    # Each searched key is validated on its own, so one bad range does not hide the others' reasons.
    problems: list[str] = []
    refused: list[str] = []
    search = data.get("search")
    if isinstance(search, dict):
        for key, param in list(search.items()):
            try:
                Param.model_validate(param)
            except ValidationError as exc:
                problems += _messages(exc, f"search.{key}")
                refused.append(key)
                del search[key]
    try:
        spec = TuneSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError("\n".join(f"{path}: {line}" for line in [*problems, *_messages(exc)])) from exc
    if spec.study_name is None:
        spec.study_name = path.stem
    problems += check_spec(spec, refused=refused)
    if problems:
        raise SpecError("\n".join(f"{path}: {problem}" for problem in problems))
    return spec


def _messages(error: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for item in error.errors():
        where = ".".join([prefix, *(str(p) for p in item["loc"])] if prefix else [str(p) for p in item["loc"]])
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}" if where else message)
    return lines


def check_spec(spec: TuneSpec, refused: list[str] | None = None) -> list[str]:
    """Every reason the spec cannot run, each naming its key (empty: it can).

    `refused`: search keys already refused (and taken out of `spec.search`) by the caller; a search left empty
    by them is not also reported as empty.
    """
    try:
        base = load_config(spec.base_config, spec.evaluation.overrides)
    except ConfigError as exc:
        return [f"base_config: {line}" for line in str(exc).splitlines()]
    raw = yaml.safe_load(spec.base_config.read_text()) or {}
    problems = [f"search.{key}: {reason}" for key, param in spec.search.items()
                for reason in _key_problems(key, param, raw, spec.evaluation.overrides, base, spec.search)]
    if not spec.search and not refused:
        problems.append("search: empty; name at least one planner key to search")
    problems += _model_problems(spec.base_config, base)
    known = spec.evaluation.metrics
    problems += [f"objective: '{name}' is not a {spec.evaluation.mode} metric (one of {', '.join(known)})"
                 for name in spec.objective.names if name not in known]
    if spec.evaluation.mode == "task":
        problems += _task_problems(spec.evaluation)
    if spec.evaluation.mode == "open_loop":
        if not spec.evaluation.recordings:
            problems.append("evaluation.recordings: open_loop needs at least one MCAP recording")
        problems += [f"evaluation.recordings: {rec}: not found" for rec in spec.evaluation.recordings
                     if not rec.is_file()]
    return problems


def _task_problems(evaluation: Evaluation) -> list[str]:
    from runtime.sim.goal_sets import shipped_goal_set
    from runtime.sim.tasks import TASKS

    if evaluation.task is None:
        return ["evaluation.task: the task mode needs a task (edgeloop task list)"]
    if evaluation.task not in TASKS:
        return [f"evaluation.task: unknown task {evaluation.task!r}; expected one of {', '.join(TASKS)}"]
    goal_set = shipped_goal_set(evaluation.task, evaluation.k)
    return [] if goal_set.is_file() else [f"evaluation.k: {goal_set}: no such goal set (edgeloop task goals)"]


def _model_problems(base_config: Path, base: RunConfig) -> list[str]:
    """Why the base config's model cannot load in a trial; without this, every trial fails on it, budget spent.

    The trial's child process runs in this working directory (study.py: `workdir`), so a relative manifest
    path resolves here exactly as it will there. Cheap: the manifest is parsed and its files looked for,
    but no model is loaded and no checksum computed.
    """
    where = f"base_config: {base_config}: model.manifest"
    try:
        manifest = load_manifest(base.model.manifest, verify=False)
    except ManifestError as exc:
        hint = "" if base.model.manifest.is_absolute() else f" (relative to {Path.cwd()}, where trials run)"
        return [f"{where}: {exc}{hint}"]
    parts = {"encoder": manifest.encoder, "predictor": manifest.predictor, "reference": manifest.reference}
    return [f"{where}: {key}.file: {manifest.path_of(part)} does not exist" for key, part in parts.items()
            if part is not None and not manifest.path_of(part).is_file()]


def _key_problems(key: str, param: Param, raw: dict[str, Any], overrides: list[str], base: RunConfig,
                  search: dict[str, Param]) -> list[str]:
    parts = key.split(".")
    if parts[0] != "planner" or len(parts) < 2:
        return ["only planner keys are searched (planner.*); fix other keys in the base config"]
    if len(parts) > 2 and parts[1] in OPTIMIZER_SECTIONS and "planner.optimizer" not in search \
            and base.planner.optimizer != parts[1]:
        return [f"has no effect: the optimizer is {base.planner.optimizer} and planner.optimizer is not searched"]
    probes = param.probe_values()
    reasons = [(value, _value_problem(key, value, raw, overrides)) for value in probes]
    failing = [(value, reason) for value, reason in reasons if reason is not None]
    if len(probes) > 1 and len(failing) == len(probes) and len({reason for _, reason in failing}) == 1:
        return [str(failing[0][1])]  # the key itself is wrong (unknown, not a section), whatever the value
    return [f"value {value!r}: {reason}" for value, reason in failing]


def _value_problem(key: str, value: Any, raw: dict[str, Any], overrides: list[str]) -> str | None:
    """Why the base config with `key` set to `value` is invalid at that key itself (None: it is valid there).

    Errors between keys (cem.elites above samples, execute_steps above horizon) depend on the other sampled
    values; those combinations fail their own trial (recorded with the reason) instead of refusing the space.
    """
    data = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy that apply_override may change
    try:
        for assignment in [*overrides, *trial_overrides({key: value})]:
            apply_override(data, assignment)
        RunConfig.model_validate(data)
    except ConfigError as exc:
        return str(exc)
    except ValidationError as exc:
        at_key = [e for e in exc.errors() if ".".join(str(p) for p in e["loc"]).startswith(key)]
        if at_key:
            return "; ".join("unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
                             for e in at_key)
    return None


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """A trial's sampled values as `--set` overrides (JSON is YAML, so every value type survives)."""
    return [f"{key}={json.dumps(value)}" for key, value in params.items()]
