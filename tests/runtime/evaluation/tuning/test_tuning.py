"""`edgeloop tune`: real Optuna studies whose trials run the real loop against the sim controller (or plan on a
real recording), in child processes; a local Ray instance runs trials side by side."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import optuna
import pytest
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from runtime.cli.app import app
from runtime.config import load_config
from runtime.evaluation.tuning.local_backend import LocalRunner
from runtime.evaluation.tuning.open_loop import score_recordings
from runtime.evaluation.tuning.spec import SpecError, load_spec

pytest.importorskip("mujoco")
ROOT = Path(__file__).resolve().parents[4]
RECORDING = "data/demo_feed.mcap"


def write_spec(tmp_path: Path, name: str = "study", **sections: Any) -> Path:
    spec: dict[str, Any] = {"base_config": "configs/demo.yaml", "out_dir": str(tmp_path / "out"),
                            "search": {"planner.samples": {"int": [16, 64], "log": True}}}
    spec.update(sections)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def open_loop(**extra: Any) -> dict[str, Any]:
    # stride 60 plans from 4 frames of the 200-frame feed: a trial in about a second plus process start-up.
    return {"mode": "open_loop", "recordings": [RECORDING], "stride": 60, **extra}


def tune(*args: str) -> Any:
    return CliRunner().invoke(app, ["tune", *args])


def load(tmp_path: Path, name: str = "study") -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'out' / name / 'study.db'}"
    return optuna.load_study(study_name=name, storage=storage)


# -- the search space is checked before anything runs -----------------------------------------------------------------

@pytest.mark.parametrize(("search", "named", "reason"), [
    ({"planner.sampels": {"int": [8, 64]}}, "planner.sampels", "unknown key"),
    ({"planner.samples": {"int": [64, 8]}}, "planner.samples", "must be below high"),
    ({"planner.cem.init_std": {"float": [0.0, 1.0], "log": True}}, "planner.cem.init_std", "low > 0"),
    ({"planner.optimizer": {"choices": []}}, "planner.optimizer", "'choices' is empty"),
    ({"planner.optimizer": {"choices": ["cem", "newton"]}}, "planner.optimizer", "'newton'"),
    ({"planner.samples": {"int": [1, 64]}}, "planner.samples", "greater than or equal to 4"),
    ({"loop.rate_hz": {"float": [10, 60]}}, "loop.rate_hz", "only planner keys"),
    ({"planner.mppi.temperature": {"float": [0.1, 1.0]}}, "planner.mppi.temperature", "has no effect"),
])
def test_invalid_search_spaces_are_refused_with_reasons(tmp_path: Path, search: dict[str, Any], named: str,
                                                        reason: str) -> None:
    path = write_spec(tmp_path, search=search)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert named in str(error.value) and reason in str(error.value)
    result = tune("--config", str(path))
    assert result.exit_code == 2
    assert named in result.output
    assert not (tmp_path / "out").exists(), "a refused spec must not start a study"


def test_objective_metrics_must_belong_to_the_evaluation_mode(tmp_path: Path) -> None:
    path = write_spec(tmp_path, objective={"weights": {"success_rate": 1.0}}, evaluation=open_loop())
    with pytest.raises(SpecError, match="'success_rate' is not a open_loop metric"):
        load_spec(path)


@pytest.mark.parametrize("weight", [math.inf, math.nan, 0.0, -1.0])
def test_objective_weights_must_be_finite_and_positive(tmp_path: Path, weight: float) -> None:
    # An infinite weight makes every trial's value infinite: no trial could be told from another.
    path = write_spec(tmp_path, evaluation=open_loop(), objective={"weights": {"action_error": weight}})
    assert ".inf" in path.read_text() or not math.isinf(weight)  # YAML's own spelling reaches the spec
    with pytest.raises(SpecError, match=r"objective: weights must be finite and > 0 .*\['action_error'\]"):
        load_spec(path)


def test_an_invalid_search_entry_is_not_also_reported_as_an_empty_search(tmp_path: Path) -> None:
    path = write_spec(tmp_path, search={"planner.samples": {"int": [64, 8]}})
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert str(error.value) == f"{path}: search.planner.samples: low (64) must be below high (8); fix a value with " \
                               "evaluation.overrides"
    with pytest.raises(SpecError, match="search: empty"):  # a search with no entries at all still is
        load_spec(write_spec(tmp_path, search={}))


def test_a_model_manifest_the_trials_cannot_read_is_refused_before_any_trial(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from another directory: the base config's relative model path resolves there, as in every trial.
    path = write_spec(tmp_path, base_config=str(ROOT / "configs/demo.yaml"),
                      evaluation=open_loop(recordings=[str(ROOT / RECORDING)]),
                      objective={"weights": {"action_error": 1.0}})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert "base_config: " + str(ROOT / "configs/demo.yaml") + ": model.manifest: models/demo/manifest.json: " \
           "cannot read the manifest" in message and str(tmp_path) in message
    result = tune("--config", str(path))
    assert result.exit_code == 2 and "model.manifest" in result.output
    assert not (tmp_path / "out").exists(), "no trial may run on a model it cannot load"

    # A manifest that reads but names model files that are not there.
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "manifest.json").write_text((ROOT / "models/demo/manifest.json").read_text())
    base = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    base["model"]["manifest"] = str(tmp_path / "model" / "manifest.json")
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = write_spec(tmp_path, base_config=str(tmp_path / "base.yaml"))
    with pytest.raises(SpecError, match=r"model.manifest: encoder.file: .*encoder.onnx does not exist"):
        load_spec(path)


# -- a study improves on a deliberately bad start ----------------------------------------------------------------------

@pytest.mark.slow
def test_small_closed_loop_study_finds_a_config_better_than_a_bad_start(tmp_path: Path) -> None:
    # The bad start: a huge pull towards hold-still, so the arm barely moves and reaches no goal.
    base = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    base["planner"].update(samples=16, iterations=1, cem={"elites": 4},
                           cost={**base["planner"]["cost"], "action_magnitude": {"weight": 50.0}})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(base))
    path = write_spec(tmp_path, base_config=str(tmp_path / "bad.yaml"),
                      search={"planner.cost.action_magnitude.weight": {"float": [0.0, 1.0]},
                              "planner.samples": {"int": [16, 128], "log": True}},
                      objective={"weights": {"success_rate": 1.0, "time_to_goal": 0.05}},
                      evaluation={"goals": 2, "goal_timeout_s": 2.5}, budget={"trials": 4},
                      sampler={"name": "tpe", "seed": 0, "startup_trials": 3})
    result = tune("--config", str(path))
    assert result.exit_code == 0, result.output

    study = load(tmp_path)
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    first = trials[0]
    assert first.user_attrs["base"] is True  # trial 0 is the base config as it is
    assert first.user_attrs["outside_space"] == {"planner.cost.action_magnitude.weight": 50.0}
    assert first.user_attrs["metrics"]["success_rate"] == 0.0
    best = study.best_trial
    assert best.user_attrs["metrics"]["success_rate"] >= 0.5
    assert best.value < first.value - 0.4  # at least one more goal in two, not noise

    out = tmp_path / "out" / "study"
    tuned = load_config(out / "best.yaml")
    weight = best.params["planner.cost.action_magnitude.weight"]
    assert tuned.planner.cost.action_magnitude.weight == pytest.approx(weight)
    assert tuned.planner.samples == best.params["planner.samples"]
    assert tuned.model == load_config(tmp_path / "bad.yaml").model  # the rest of the base config is kept
    diff = (out / "best.diff").read_text()
    assert "-      weight: 50.0" in diff.splitlines() and "-  samples: 16" in diff.splitlines()
    assert diff in result.output  # the diff against the base is printed
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("number,state,base,value,")
    summary = json.loads((out / "results.json").read_text())
    assert summary["best"]["number"] == best.number and len(summary["trials"]) == 4
    for plot in ("history", "importance", "tradeoff"):
        image = cv2.imread(str(out / "plots" / f"{plot}.png"))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 300
    # Every trial ran in its own run directory, with its own sim controller.
    assert len({t.user_attrs["details"]["seeds"][0]["run_dir"] for t in trials}) == 4


# -- resuming, interruption and failed trials (open loop on the shipped recording: fast) -------------------------------

def test_a_second_run_resumes_the_study_to_its_total_budget(tmp_path: Path) -> None:
    path = write_spec(tmp_path, evaluation=open_loop(), objective={"weights": {"action_error": 1.0}})
    assert tune("--config", str(path), "--trials", "2").exit_code == 0
    before = [(t.number, t.params, t.value) for t in load(tmp_path).trials]
    assert len(before) == 2
    result = tune("--config", str(path), "--trials", "4", "--timeout-s", "0")  # the time budget is spent at once
    assert result.exit_code == 0 and "0 trial(s) ran" in result.output and "no new trial started" in result.output
    assert len(load(tmp_path).trials) == 2

    result = tune("--config", str(path), "--trials", "4")
    assert result.exit_code == 0, result.output
    after = load(tmp_path).trials
    assert len(after) == 4 and all(t.state == TrialState.COMPLETE for t in after)
    assert [(t.number, t.params, t.value) for t in after[:2]] == before
    assert sum(bool(t.user_attrs.get("base")) for t in after) == 1  # the base config is evaluated once
    # New trials are new draws, not the first run's random values again.
    assert after[2].params != after[0].params or after[3].params != after[1].params


def test_ctrl_c_keeps_finished_trials_and_the_next_run_carries_on(tmp_path: Path,
                                                                  wait_until: Callable[..., bool]) -> None:
    path = write_spec(tmp_path, evaluation=open_loop(), objective={"weights": {"action_error": 1.0}})
    command = [sys.executable, "-m", "runtime.cli", "tune", "--config", str(path), "--trials", "8"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = tmp_path / "out" / "study" / "study.db"

    def finished() -> int:
        # Read-only SQL: opening the study through Optuna while the run creates it would race its schema setup.
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
                return int(connection.execute("SELECT COUNT(*) FROM trials WHERE state = 'COMPLETE'").fetchone()[0])
        except sqlite3.Error:
            return 0

    assert wait_until(lambda: finished() >= 1, timeout_s=120)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    trials = load(tmp_path).trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert complete and all(t.state != TrialState.RUNNING for t in trials)
    cut = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs["reason"] == "interrupted" for t in cut)
    assert (tmp_path / "out" / "study" / "results.csv").is_file()  # outputs cover the finished trials

    result = tune("--config", str(path), "--trials", str(len(complete) + 1))
    assert result.exit_code == 0, result.output
    resumed = load(tmp_path).trials
    assert [t.params for t in resumed[:len(trials)]] == [t.params for t in trials]  # nothing lost or redone
    assert len([t for t in resumed if t.state == TrialState.COMPLETE]) == len(complete) + 1


def test_crashed_and_timed_out_trials_are_recorded_as_failed_and_the_study_goes_on(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(b"not an mcap file")
    path = write_spec(tmp_path, name="crash", evaluation=open_loop(recordings=[str(broken)]),
                      objective={"weights": {"action_error": 1.0}}, budget={"trials": 2})
    result = tune("--config", str(path))
    assert result.exit_code == 0, result.output
    trials = load(tmp_path, "crash").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2  # both ran: the first failure did not stop the study
    assert all("exited with status 1" in t.user_attrs["reason"] and "broken.mcap" in t.user_attrs["reason"]
               for t in trials)
    assert "no trial completed yet" in result.output

    path = write_spec(tmp_path, name="slow", evaluation={"goals": 1, "trial_timeout_s": 1.0}, budget={"trials": 2})
    started = time.monotonic()
    result = tune("--config", str(path))
    assert result.exit_code == 0, result.output
    trials = load(tmp_path, "slow").trials
    assert [t.state for t in trials] == [TrialState.FAIL] * 2
    assert all(t.user_attrs["reason"].startswith("timed out after 1 s") for t in trials)
    assert time.monotonic() - started < 30  # killed at the timeout, not left to drive to its goal


def test_multi_objective_study_keeps_a_pareto_front_and_refuses_another_objective_on_resume(tmp_path: Path) -> None:
    path = write_spec(tmp_path, evaluation=open_loop(), objective={"metrics": ["action_error", "plan_ms"]},
                      budget={"trials": 3})
    result = tune("--config", str(path))
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "study" / "results.json").read_text())
    study = load(tmp_path)
    assert summary["directions"] == ["minimize", "minimize"]
    assert sorted(summary["pareto"]) == sorted(t.number for t in study.best_trials)
    best = summary["best"]["values"]
    # best.yaml is the Pareto trial with the lowest action error.
    assert best[0] == min(t.values[0] for t in study.best_trials)
    assert load_config(tmp_path / "out" / "study" / "best.yaml").planner.samples == summary["best"]["params"][
        "planner.samples"]

    changed = write_spec(tmp_path, evaluation=open_loop(), objective={"weights": {"action_error": 1.0}})
    result = tune("--config", str(changed), "--trials", "4")
    assert result.exit_code == 2
    assert "was run with objective" in result.output and "--study-name" in result.output
    assert len(load(tmp_path).trials) == 3


def test_resuming_refuses_another_base_config_or_evaluation_settings(tmp_path: Path) -> None:
    path = write_spec(tmp_path, evaluation=open_loop(), objective={"weights": {"action_error": 1.0}})
    assert tune("--config", str(path), "--trials", "1").exit_code == 0
    recorded = load(tmp_path).user_attrs

    base = yaml.safe_load((ROOT / "configs/demo.yaml").read_text())
    base["planner"]["horizon"] = 3
    (tmp_path / "h3.yaml").write_text(yaml.safe_dump(base))
    result = tune("--config", str(path), "--trials", "2", "--set", f"base_config={tmp_path / 'h3.yaml'}")
    assert result.exit_code == 2
    assert "other evaluation settings: base_config: the study's was configs/demo.yaml" in result.output
    assert "h3.yaml" in result.output and "--study-name" in result.output
    result = tune("--config", str(path), "--trials", "2", "--set", "evaluation.stride=30")
    assert result.exit_code == 2 and "evaluation.stride: the study's was 60, the spec's is 30" in result.output
    result = tune("--config", str(path), "--trials", "2", "--set", "evaluation.seeds=[1, 2]")
    assert result.exit_code == 2 and "evaluation.seeds: the study's was [0], the spec's is [1, 2]" in result.output
    assert len(load(tmp_path).trials) == 1  # nothing ran

    # The same content by another path, and a longer trial timeout (it only decides which trials fail): resumed.
    (tmp_path / "same.yaml").write_text((ROOT / "configs/demo.yaml").read_text())
    result = tune("--config", str(path), "--trials", "2", "--set", f"base_config={tmp_path / 'same.yaml'}",
                  "--set", f"evaluation.recordings=[{ROOT / RECORDING}]", "--set", "evaluation.trial_timeout_s=600")
    assert result.exit_code == 0, result.output
    study = load(tmp_path)
    assert len(study.trials) == 2
    # Stored when the study was made, kept as it was by the resumed run.
    assert study.user_attrs == recorded and recorded["base_config"] == "configs/demo.yaml"
    assert recorded["fingerprint"]["evaluation"]["stride"] == 60


def test_a_goal_frame_outside_the_recording_is_refused_not_wrapped() -> None:
    config = load_config("configs/demo.yaml")
    for goal_frame in (200, 250, -201):  # the feed has 200 frames: 250 used to wrap around to frame 50
        with pytest.raises(ValueError, match=rf"demo_feed.mcap: evaluation.goal_frame {goal_frame} is outside the "
                                             r"recording's 200 frames \(give -200 to 199"):
            score_recordings(config, [Path(RECORDING)], goal_frame=goal_frame, stride=60)
    assert score_recordings(config, [Path(RECORDING)], goal_frame=199, stride=60)["details"]["frames"] == 4


def test_a_closed_local_runner_starts_no_more_trial_processes(tmp_path: Path) -> None:
    # Ctrl-C kills the runner's trials; a trial thread that had not yet started its child must not start it
    # after, or the driver waits for it up to the trial timeout. Cancelling first makes that order certain.
    runner = LocalRunner(1)
    runner.cancel([])
    request = {"number": 0, "workdir": str(ROOT), "base_config": "configs/demo.yaml",
               "overrides": [], "evaluation": load_spec(write_spec(tmp_path, evaluation=open_loop(), objective={
                   "weights": {"action_error": 1.0}})).evaluation.model_dump(mode="json"),
               "timeout_s": 120.0, "runs_dir": str(tmp_path / "runs")}
    handle = runner.submit(request)
    [(_, result)] = runner.wait([handle], timeout_s=60)
    runner.close()
    assert result["state"] == "failed" and result["reason"] == "not started: the runner is closing"


# -- Ray -------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_local_ray_instance_runs_closed_loop_trials_side_by_side(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    # Ray's workers run the trial function; they find the package through the venv's editable install.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        path = write_spec(tmp_path, evaluation={"goals": 1, "goal_timeout_s": 5.0}, budget={"trials": 2},
                          search={"planner.samples": {"int": [32, 64]}})
        result = tune("--config", str(path), "--ray", "local", "--concurrency", "2")
    finally:
        ray.shutdown()
    assert result.exit_code == 0, result.output
    trials = load(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    first, second = ({"start": t.user_attrs["started_at"], "end": t.user_attrs["finished_at"]} for t in trials)
    # Side by side: each started before the other ended (each with its own sim controller and ports).
    assert first["start"] < second["end"] and second["start"] < first["end"]
    assert all(t.user_attrs["metrics"]["success_rate"] == 1.0 for t in trials)
    assert os.path.isfile(tmp_path / "out" / "study" / "best.yaml")


def test_task_mode_trials_score_a_tasks_goal_set_and_the_spec_names_a_missing_task(tmp_path: Path) -> None:
    evaluation = {"mode": "task", "task": "reach", "k": 25, "goals": 2, "overrides": ["planner.iterations=1"]}
    path = write_spec(tmp_path, base_config=str(ROOT / "configs" / "tasks" / "reach.yaml"), evaluation=evaluation,
                      objective={"metrics": ["success_rate", "plan_ms"]}, budget={"trials": 2})
    result = tune("--config", str(path))
    assert result.exit_code == 0, result.output
    complete = [t for t in load(tmp_path).trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    for trial in complete:
        assert trial.user_attrs["details"]["seeds"][0]["goals"] == 2  # the first 2 goals of reach-k25
        assert 0.0 <= trial.user_attrs["metrics"]["success_rate"] <= 1.0 and trial.values[1] > 0
        assert set(trial.user_attrs["metrics"]) == {"success_rate", "mean_final_distance", "ticks", "plan_ms"}
    for broken, message in (({"task": None}, "evaluation.task: the task mode needs a task"),
                            ({"task": "push-x"}, "evaluation.task: unknown task 'push-x'"),
                            ({"k": 3}, "evaluation.k: data/goals/reach-k3.json: no such goal set")):
        bad = write_spec(tmp_path, name="bad", base_config=str(ROOT / "configs" / "tasks" / "reach.yaml"),
                         evaluation=evaluation | broken)
        refused = tune("--config", str(bad))
        assert refused.exit_code == 2 and message in refused.output, refused.output
