"""`edgeloop bench async`: asynchronous planning against the synchronous loop on the demo's goals.

Each variant is `edgeloop demo` (the sim controller in its own process, the real runtime, ZeroMQ between them) on
the same held-out goals: the synchronous loop as configured, asynchronous planning at `command_hz`, with
`control_cpu` asynchronous planning with the command thread pinned to that CPU and the planner thread to the
others, and with `control_priority` asynchronous planning with the command thread at that SCHED_FIFO priority.
For the asynchronous variants the report takes the command thread's own measurements from the run's summary.json
(`async`): commands per second, the interval between messages and its jitter (|interval - period|), plans per
second, plan age at each command and commands per plan. Success is paired: the goals on which a variant and the
synchronous loop disagree are listed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.evaluation.demo import run_demo


def _variant(name: str, config_path: Path, goals: int, overrides: list[str], tolerance_m: float,
             verbose: bool) -> dict[str, Any]:
    result = run_demo(config_path, goals, overrides, tolerance_m=tolerance_m, verbose=verbose)
    summary = json.loads((Path(result["run_dir"]) / "summary.json").read_text())
    row: dict[str, Any] = {
        "variant": name,
        "overrides": overrides,
        "success_rate": result["success_rate"],
        "reached": [goal["reached"] for goal in result["goals"]],
        "seconds_per_goal": sum(goal["seconds"] for goal in result["goals"]) / len(result["goals"]),
        "plan_ms_p50": result["plan_ms_p50"],
        "tick_ms": result["tick_ms"],
        "counters": result["counters"],
        "model_id": result["model_id"],
        "backend": result["backend"],
        "run_dir": result["run_dir"],
        "config": summary["config"],
        "platform": summary["platform"],
    }
    if "async" in summary:
        measured = summary["async"]
        row |= {
            "commands_per_s": measured["commands_per_s"],
            "interval_ms_p50": measured["send_interval_ms"]["p50"],
            "interval_ms_p99": measured["send_interval_ms"]["p99"],
            "jitter_ms_p99": measured["jitter_ms"]["p99"],
            "plans_per_s": measured["plans_per_s"],
            "plan_age_ms_p50": measured["plan_age_ms"]["p50"],
            "plan_age_ms_p99": measured["plan_age_ms"]["p99"],
            "commands_per_plan": measured["commands_per_plan"]["mean"],
            "async": measured,
        }
    return row


def bench_async(config_path: Path, goals: int, overrides: list[str], *, command_hz: float = 100.0,
                control_cpu: int | None = None, control_priority: int | None = None, tolerance_m: float = 0.05,
                verbose: bool = True) -> dict[str, Any]:
    """The synchronous loop and asynchronous planning on `goals` goals; with `control_cpu` and `control_priority`,
    asynchronous planning with the command thread on a core of its own, and at a real-time priority."""
    async_overrides = [*overrides, "loop.planning=async", f"link.command_hz={command_hz:g}"]
    plans = [("sync", [*overrides, "loop.planning=sync"]), ("async", async_overrides)]
    if control_cpu is not None:
        plans.append((f"async, command thread on CPU {control_cpu}",
                      [*async_overrides, f"loop.control_cpu={control_cpu}"]))
    if control_priority is not None:
        plans.append((f"async, command thread SCHED_FIFO {control_priority}",
                      [*async_overrides, f"loop.control_priority={control_priority}"]))
    rows = [_variant(name, config_path, goals, variant_overrides, tolerance_m, verbose)
            for name, variant_overrides in plans]
    sync = rows[0]
    for row in rows[1:]:
        row["disagrees_with_sync"] = [index for index, (a, b) in enumerate(zip(row["reached"], sync["reached"],
                                                                               strict=True)) if a != b]
    return {"goals": goals, "command_hz": command_hz, "tolerance_m": tolerance_m, "variants": rows}
