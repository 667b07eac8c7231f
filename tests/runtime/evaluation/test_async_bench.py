"""`edgeloop bench async`: the demo's closed loop (sim controller process, real ZeroMQ) synchronous and asynchronous
on the same goals, the asynchronous rows with the command thread's own measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli.app import app

pytest.importorskip("mujoco")


def test_cli_reports_sync_and_async_on_the_same_goals(tmp_path: Path) -> None:
    out = tmp_path / "async.json"
    result = CliRunner().invoke(app, ["bench", "async", "--goals", "2", "--json", "--out", str(out),
                                      "--command-hz", "50", "--tolerance-m", "5",
                                      "--set", f"runs_dir={tmp_path / 'runs'}"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert json.loads(out.read_text()) == found
    sync, asynchronous = found["variants"]
    assert (sync["variant"], asynchronous["variant"]) == ("sync", "async")
    # Every pose is within 5 m of the goal: both reach both goals, so they agree on every one.
    assert sync["reached"] == asynchronous["reached"] == [True, True]
    assert asynchronous["disagrees_with_sync"] == []
    assert sync["seconds_per_goal"] > 0 and asynchronous["seconds_per_goal"] > 0
    assert asynchronous["config"]["loop"]["planning"] == "async" and sync["config"]["loop"]["planning"] == "sync"
    assert asynchronous["async"]["command_hz"] == 50.0
    assert 0 < asynchronous["commands_per_s"] <= 50 * 1.1
    assert asynchronous["plans_per_s"] > 0 and asynchronous["commands_per_plan"] > 0
    assert asynchronous["interval_ms_p50"] > 0 and asynchronous["interval_ms_p99"] >= asynchronous["interval_ms_p50"]
    assert "commands_per_s" not in sync and len(sync["model_id"]) == 64
    assert found["kind"] == "bench-async" and found["provenance"]["config"]["loop"]["planning"] == "sync"


def test_cli_refuses_a_command_thread_cpu_this_process_may_not_use() -> None:
    result = CliRunner().invoke(app, ["bench", "async", "--goals", "1", "--control-cpu", "4096"])
    assert result.exit_code == 2
    assert "loop.control_cpu: CPU 4096" in result.output
