"""`edgeloop bench soak`: a short run of the real closed loop (sim controller process, ZeroMQ, ONNX Runtime) gives
every field of the report. What the figures are is for the 30-minute run (docs/reliability.md), not for a test."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _soak(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtime.cli", "bench", "soak", "--set",
                           f"runs_dir={tmp_path / 'runs'}", "--set", "loop.status_line=false", *arguments],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=os.environ | {"MUJOCO_GL": "egl"})


def test_a_short_soak_reports_memory_and_tick_drift(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    result = _soak(tmp_path, "--minutes", str(20 / 60), "--switch-s", "2", "--window-s", "6", "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["goals_switched"] == 10 and 0 <= report["goals_reached"] <= 10
    assert report["minutes"] >= 19 / 60
    for key in ("rss_mb_before_run", "rss_mb_after_warmup", "rss_mb_end", "controller_rss_mb_after_warmup",
                "controller_rss_mb_end"):
        assert report[key] > 10, key  # a Python process with numpy, in MB
    assert report["rss_growth_mb"] == report["rss_mb_end"] - report["rss_mb_after_warmup"]
    assert math.isfinite(report["rss_slope_mb_per_hour"]) and math.isfinite(report["controller_rss_slope_mb_per_hour"])
    assert report["tick_p99_ms_first_window"] > 0 and report["tick_p99_ms_last_window"] > 0
    assert report["tick_p99_drift_ms"] == report["tick_p99_ms_last_window"] - report["tick_p99_ms_first_window"]
    # Each window holds about its share of the run's ticks (30 Hz), and together no more than all of them.
    ticks = report["counters"]["ticks"]
    assert 0 < report["ticks_first_window"] < ticks / 2 and 0 < report["ticks_last_window"] < ticks / 2
    assert report["counters"]["commands"] > 0 and len(report["model_id"]) == 64
    assert "RSS" in result.stderr and "goals reached" in result.stderr  # progress as it runs
    assert "MB/h" in result.stdout and "tick p99" in result.stdout


def test_a_window_longer_than_half_the_run_is_refused(tmp_path: Path) -> None:
    result = _soak(tmp_path, "--minutes", "1", "--window-s", "40")
    assert result.returncode == 2
    assert "window (40 s) <= half the run (30 s)" in result.stderr
