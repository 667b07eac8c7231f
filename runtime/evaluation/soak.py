"""`edgeloop bench soak`: the demo's closed loop for a long time, goals switching, to show memory and latency stay flat.

As `edgeloop demo` does, the sim controller runs as its own process (`edgeloop controller sim`) and this process
runs the runtime's ControlLoop against it with the demo config. Every `switch_s` the loop gets the next held-out
goal image, and the resident memory (RSS) of both processes is sampled. The report gives RSS at the end of the
first window (after warm-up: engine arenas, first plans) and at the end, the least-squares slope after warm-up,
and the tick p99 of the first and the last window, from the loop's own tick histogram.
"""

from __future__ import annotations

import math
import sys
from collections import deque
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.evaluation.demo import DemoError, SimControllerProcess, config_against, load_goals, run_facts
from runtime.loop import ControlLoop
from runtime.telemetry import LogHistogram

MB = 1024 * 1024


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc (Linux)."""
    status = Path("/proc") / (str(pid) if pid is not None else "self") / "status"
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError as exc:
        raise DemoError(f"{status}: cannot read the resident memory ({exc}); the soak needs Linux's /proc") from exc
    raise DemoError(f"{status}: no VmRSS line")


def run_soak(config_path: Path, minutes: float, overrides: list[str], switch_s: float = 5.0, window_s: float = 60.0,
             tolerance_m: float = 0.05, verbose: bool = True) -> dict[str, Any]:
    """Run the closed loop for `minutes`, a new goal every `switch_s`; returns the JSON-able report."""
    duration_s = minutes * 60.0
    if not 0 < switch_s <= window_s <= duration_s / 2:
        raise ValueError(f"need 0 < switch ({switch_s:g} s) <= window ({window_s:g} s) <= half the run "
                         f"({duration_s / 2:g} s)")
    controller = SimControllerProcess()
    try:
        config = config_against(controller, config_path, overrides)
        goals_file = config.model.manifest.parent / "goals" / "goals.json"
        goals = [(_read_image(goals_file.parent / goal["image"]), np.asarray(goal["ee"], dtype=np.float64))
                 for goal in load_goals(goals_file)]
        loop = ControlLoop(config)
        try:
            report = _soak(loop, controller.process.pid, goals, duration_s, switch_s, window_s, tolerance_m, verbose)
        finally:
            summary = loop.close()
    finally:
        controller.stop()
    return report | run_facts(summary) | {"platform": summary["platform"], "config": summary["config"]}


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DemoError(f"{path}: goal image missing or unreadable")
    return image


def _soak(loop: ControlLoop, controller_pid: int, goals: list[tuple[np.ndarray, np.ndarray]], duration_s: float,
          switch_s: float, window_s: float, tolerance_m: float, verbose: bool) -> dict[str, Any]:
    segments = math.ceil(duration_s / switch_s)
    # Preallocated, so the soak's own bookkeeping does not show as growth: seconds, runtime RSS, controller RSS.
    samples = np.zeros((segments, 3))
    ticks = loop.telemetry.tick_ms
    first_window: LogHistogram | None = None
    recent: deque[tuple[float, LogHistogram]] = deque(maxlen=math.ceil(window_s / switch_s) + 1)
    rss_before = rss_bytes()
    reached = 0
    started = loop.telemetry.elapsed_s()
    for segment in range(segments):
        image, target = goals[segment % len(goals)]
        loop.set_goal_image(image)
        loop.run(duration_s=min(switch_s, duration_s - (loop.telemetry.elapsed_s() - started)))
        now = loop.telemetry.elapsed_s() - started
        state = loop.state
        reached += state is not None and float(np.linalg.norm(state.ee - target)) < tolerance_m
        samples[segment] = now, rss_bytes() / MB, rss_bytes(controller_pid) / MB
        if first_window is None and now >= window_s:
            first_window = ticks.copy()
        recent.append((now, ticks.copy()))
        if verbose:
            print(f"{now / 60:6.1f} min  RSS {samples[segment, 1]:7.1f} MB (controller {samples[segment, 2]:6.1f} MB)"
                  f"  tick p99 {ticks.summary()['p99']:5.1f} ms  goals reached {reached}/{segment + 1}",
                  file=sys.stderr)
    assert first_window is not None  # window_s <= duration_s / 2
    end = samples[-1, 0]
    last_window = ticks.since(next(mark for at, mark in recent if at >= end - window_s))
    warm = samples[samples[:, 0] >= window_s]

    def slope_mb_per_hour(column: int) -> float:  # least squares over the samples after warm-up
        return float(np.polyfit(warm[:, 0] / 3600, warm[:, column], 1)[0]) if len(warm) > 1 else 0.0

    first_p99 = float(first_window.percentiles([99])[0])
    last_p99 = float(last_window.percentiles([99])[0])
    return {
        "minutes": end / 60,
        "goal_switch_s": switch_s,
        "window_s": window_s,
        "goals_switched": segments,
        "goals_reached": reached,
        "rss_mb_before_run": rss_before / MB,
        "rss_mb_after_warmup": float(warm[0, 1]),
        "rss_mb_end": float(samples[-1, 1]),
        "rss_growth_mb": float(samples[-1, 1] - warm[0, 1]),
        "rss_slope_mb_per_hour": slope_mb_per_hour(1),
        "controller_rss_mb_after_warmup": float(warm[0, 2]),
        "controller_rss_mb_end": float(samples[-1, 2]),
        "controller_rss_slope_mb_per_hour": slope_mb_per_hour(2),
        "tick_p99_ms_first_window": first_p99,
        "tick_p99_ms_last_window": last_p99,
        "tick_p99_drift_ms": last_p99 - first_p99,
        "ticks_first_window": first_window.count,
        "ticks_last_window": last_window.count,
    }
