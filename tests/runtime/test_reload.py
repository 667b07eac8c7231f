"""Hot reload of the planner section while the loop runs: file edits (mtime) and SIGHUP."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from test_loop import SimControllerThread, loop_config

from runtime.config import RunConfig, apply_override, dump_config, load_config
from runtime.loop import ControlLoop
from runtime.reload import ConfigWatcher, ReloadRefused, config_changes


def _write(path: Path, config: RunConfig) -> None:
    path.write_text(dump_config(config))


def _edited(config: RunConfig, *overrides: str) -> RunConfig:
    """`config` with `dotted.key=value` edits, as an operator would make them in the file."""
    data = config.model_dump(mode="json")
    for assignment in overrides:
        apply_override(data, assignment)
    return RunConfig.model_validate(data)


class PredictBatches:
    """Wraps the world model's real rollout (one call per planner iteration) and notes the batch of every call."""

    def __init__(self, predict: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
        self.predict = predict
        self.batches: list[int] = []

    def __call__(self, latents: np.ndarray, actions: np.ndarray) -> np.ndarray:
        self.batches.append(len(latents))
        return self.predict(latents, actions)


def _watching_loop(controller: SimControllerThread, tmp_path: Path) -> tuple[ControlLoop, Path, RunConfig]:
    """A loop run from a config file it watches, against `controller`: (loop, the file, the config written)."""
    config_file = tmp_path / "run.yaml"
    config = loop_config(controller.endpoints, tmp_path)
    _write(config_file, config)
    return ControlLoop(load_config(config_file), config_file=config_file), config_file, config


def test_planner_edits_apply_and_bad_edits_are_refused(tmp_path: Path, wait_until: Callable[..., bool],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    controller = SimControllerThread()
    loop, config_file, config = _watching_loop(controller, tmp_path)
    assert loop.planner.rollout is not None  # the demo model has a rollout model
    batches = PredictBatches(loop.planner.rollout)
    loop.planner.rollout = batches
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 60.0}, daemon=True)
    runner.start()
    counters = loop.telemetry.counters
    try:
        assert wait_until(lambda: counters["plans"] > 2, 30)
        assert set(batches.batches) == {256}

        # A valid edit: the next plans sample 64 sequences.
        _write(config_file, _edited(config, "planner.samples=64"))
        assert wait_until(lambda: counters["reloads"] == 1, 10)
        assert loop.planner.settings.samples == 64 and loop.config.planner.samples == 64
        calls = len(batches.batches)
        assert wait_until(lambda: len(batches.batches) > calls + 10, 10)
        assert set(batches.batches[calls:]) == {64}
        assert "planner.samples: 256 -> 64" in capsys.readouterr().err

        # An invalid edit: refused with its reason, the settings in force stay.
        config_file.write_text(config_file.read_text().replace("samples: 64", "samples: 2"))
        assert wait_until(lambda: counters["reload_errors"] == 1, 10)
        assert "planner.samples" in capsys.readouterr().err
        # An edit outside the planner section needs a restart: refused too.
        _write(config_file, _edited(config, "planner.samples=32", "loop.rate_hz=25"))
        assert wait_until(lambda: counters["reload_errors"] == 2, 10)
        err = capsys.readouterr().err
        assert "restart for: loop.rate_hz: 30.0 -> 25.0" in err
        assert loop.planner.settings.samples == 64 and counters["reloads"] == 1
        calls = len(batches.batches)
        assert wait_until(lambda: len(batches.batches) > calls + 10, 10)
        assert set(batches.batches[calls:]) == {64}
    finally:
        loop.stop_requested.set()
        runner.join(10)
        summary = loop.close()
        controller.stop()
    assert (summary["counters"]["reloads"], summary["counters"]["reload_errors"]) == (1, 2)
    assert summary["config"]["planner"]["samples"] == 64


def test_sighup_rereads_the_config_file(tmp_path: Path, wait_until: Callable[..., bool]) -> None:
    """An edit the mtime poll cannot see (same size, mtime put back) is applied on SIGHUP."""
    controller = SimControllerThread()
    config_file = tmp_path / "run.yaml"
    _write(config_file, loop_config(controller.endpoints, tmp_path, "planner.execute_steps=1"))
    loop = ControlLoop(load_config(config_file), config_file=config_file)
    counters = loop.telemetry.counters
    handler_before = signal.getsignal(signal.SIGHUP)

    def operator() -> None:
        try:
            assert wait_until(lambda: counters["plans"] > 2, 30)
            before = os.stat(config_file)
            config_file.write_text(config_file.read_text().replace("execute_steps: 1", "execute_steps: 2"))
            os.utime(config_file, ns=(before.st_atime_ns, before.st_mtime_ns))
            os.kill(os.getpid(), signal.SIGHUP)
            wait_until(lambda: counters["reloads"] == 1, 10)
        finally:
            loop.stop_requested.set()

    helper = threading.Thread(target=operator, daemon=True)
    helper.start()
    try:
        loop.run(duration_s=60.0)  # in the main thread, where SIGHUP is handled
    finally:
        helper.join(10)
        loop.close()
        controller.stop()
    assert counters["reloads"] == 1 and counters["reload_errors"] == 0
    assert loop.planner.settings.execute_steps == 2
    assert signal.getsignal(signal.SIGHUP) == handler_before  # the loop put the previous handler back


def test_watcher_reports_changed_keys_and_ignores_untouched_files(tmp_path: Path) -> None:
    config_file = tmp_path / "run.yaml"
    config = load_config(None, ["planner.samples=128", "goal.image=null"])
    _write(config_file, config)
    watcher = ConfigWatcher(config_file, ["planner.seed=7"], poll_interval_s=0.0)
    in_force = load_config(config_file, ["planner.seed=7"])
    assert watcher.poll(in_force) is None  # nothing changed
    watcher.request()
    assert watcher.poll(in_force) is None  # re-read on request, still nothing to apply
    _write(config_file, _edited(config, "planner.horizon=8"))
    edit = watcher.poll(in_force)
    assert edit is not None and edit.settings.horizon == 8
    assert edit.settings.seed == 7  # the run's --set overrides are applied again
    assert edit.changes == ["planner.horizon: 5 -> 8"]
    config_file.write_text("planner: [unclosed\n")
    with pytest.raises(ReloadRefused, match="not valid YAML"):
        watcher.poll(in_force)
    assert config_changes(in_force, in_force) == []


def test_an_edit_saved_while_the_runtime_starts_is_not_missed(tmp_path: Path) -> None:
    """The config in force was loaded before the watcher existed; an edit in between shows at the first poll."""
    config_file = tmp_path / "run.yaml"
    config = load_config(None, ["goal.image=null"])
    _write(config_file, config)
    in_force = load_config(config_file)
    _write(config_file, _edited(config, "planner.iterations=2"))  # saved during start-up
    watcher = ConfigWatcher(config_file, poll_interval_s=0.0)
    edit = watcher.poll(in_force)
    assert edit is not None and edit.changes == ["planner.iterations: 3 -> 2"]
    assert watcher.poll(in_force.model_copy(update={"planner": edit.settings})) is None  # applied once


def test_more_samples_than_the_engine_takes_are_refused_until_a_restart(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    controller = SimControllerThread()
    loop, config_file, config = _watching_loop(controller, tmp_path)
    loop.world_model.predictor.max_batch = 256  # what a TensorRT predictor built for 256 samples reports
    counters = loop.telemetry.counters
    try:
        _write(config_file, _edited(config, "planner.samples=512"))
        give_up = time.monotonic() + 10
        while counters["reload_errors"] == 0 and time.monotonic() < give_up:
            loop.tick()
            time.sleep(0.02)
        assert (counters["reload_errors"], counters["reloads"]) == (1, 0)
        assert loop.planner.settings.samples == 256
        assert "planner.samples: 512 is more than the onnxruntime predictor takes (256" in capsys.readouterr().err
        _write(config_file, _edited(config, "planner.samples=128"))  # within the profile: applies
        while counters["reloads"] == 0 and time.monotonic() < give_up + 10:
            loop.tick()
            time.sleep(0.02)
        assert loop.planner.settings.samples == 128
    finally:
        loop.close()
        controller.stop()


def test_more_rollout_steps_than_the_engine_takes_are_refused_until_a_restart(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    controller = SimControllerThread()
    loop, config_file, config = _watching_loop(controller, tmp_path)
    assert loop.world_model.rollout_engine is not None
    loop.world_model.rollout_engine.max_steps = 10  # what a TensorRT rollout built for 5 steps reports
    counters = loop.telemetry.counters
    try:
        _write(config_file, _edited(config, "planner.horizon=6", "planner.action_block=2"))
        give_up = time.monotonic() + 10
        while counters["reload_errors"] == 0 and time.monotonic() < give_up:
            loop.tick()
            time.sleep(0.02)
        assert (counters["reload_errors"], counters["reloads"]) == (1, 0)
        assert (loop.planner.settings.horizon, loop.planner.settings.action_block) == (5, 1)
        assert "12 steps is more than the onnxruntime rollout takes (10" in capsys.readouterr().err
    finally:
        loop.close()
        controller.stop()
