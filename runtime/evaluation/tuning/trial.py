"""One trial in isolation: a child process (`python -m runtime.evaluation.tuning.trial`) with its own sim
controller and ports.

The driver (or a Ray worker) calls `run_isolated(request)`; the child reads the request as JSON on stdin,
evaluates the config, and prints one JSON line with the metrics. A process per trial is what makes a crash,
a hang or a leaked socket cost one trial and not the study: a child that exits badly or outlives its timeout
is killed with its whole process group (the sim controller included) and reported as failed, with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol


class TrialRunner(Protocol):
    """Where trials run: threads on this machine (local_backend) or Ray tasks (ray_backend)."""

    def submit(self, request: dict[str, Any]) -> object:
        """Start one trial; the handle identifies it in `wait` and `cancel`."""
        ...

    def wait(self, handles: list[object], timeout_s: float) -> list[tuple[object, dict[str, Any]]]:
        """(handle, result) of the trials that finished, waiting at most timeout_s for at least one."""
        ...

    def cancel(self, handles: list[object]) -> None:
        """Kill these running trials (their results are never read)."""
        ...

    def close(self) -> None: ...


def failed(reason: str) -> dict[str, Any]:
    """The result of a trial that failed outside its child process (it could not start, its worker died)."""
    now = time.time()
    return {"state": "failed", "reason": reason, "metrics": {}, "details": {}, "started_at": now,
            "finished_at": now, "host": socket.gethostname()}


NOT_STARTED = "not started: the runner is closing"


class TrialProcesses:
    """The trial child processes one runner started, so that closing it kills every one (the Ctrl-C path).

    A child is started and registered while holding the lock that `kill_all` holds to set `closing` and kill:
    so a trial thread either started its child before `kill_all` (which then finds and kills it) or finds
    `closing` set and starts none. Without that, a thread that had not yet registered its child when
    `kill_all` ran would leave it running to its timeout, and the driver waiting for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[subprocess.Popen[str]] = set()
        self._closing = False

    def start(self, workdir: str) -> subprocess.Popen[str] | None:
        """A new trial child (registered), or None once `kill_all` has run."""
        with self._lock:
            if self._closing:
                return None
            process = subprocess.Popen(
                [sys.executable, "-m", "runtime.evaluation.tuning.trial"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir, start_new_session=True,
            )
            self._live.add(process)
            return process

    def finished(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._live.discard(process)

    def kill_all(self) -> None:
        """Kill every running child with its process group, and start no more."""
        with self._lock:
            self._closing = True
            for process in self._live:
                _kill_group(process)


def run_isolated(request: dict[str, Any], processes: TrialProcesses | None = None) -> dict[str, Any]:
    """Run one trial in a child process; never raises for the trial's own failures.

    Returns {state: complete|failed, metrics, details, reason, started_at, finished_at, host}; the stamps are
    wall-clock seconds on the machine that ran it. `processes`: the runner's registry, which `kill_all`
    closes (a Ray task has none: Ray kills its worker instead).
    """
    processes = processes or TrialProcesses()
    started = time.time()
    process = processes.start(request["workdir"])
    if process is None:
        return failed(NOT_STARTED)
    try:
        stdout, stderr = process.communicate(json.dumps(request), timeout=request["timeout_s"])
        reason = _failure(process.returncode, stdout, stderr)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        reason = f"timed out after {request['timeout_s']:g} s (killed with its sim controller)"
    finally:
        processes.finished(process)
    result: dict[str, Any] = {"state": "failed" if reason else "complete", "reason": reason, "metrics": {},
                              "details": {}, "started_at": started, "finished_at": time.time(),
                              "host": socket.gethostname()}
    if reason is None:
        result.update(json.loads(stdout.strip().splitlines()[-1]))
    return result


def _failure(returncode: int, stdout: str, stderr: str) -> str | None:
    if returncode != 0:
        name = signal.Signals(-returncode).name if returncode < 0 else f"status {returncode}"
        tail = stderr.strip().splitlines()[-3:]
        return f"exited with {name}: {' | '.join(tail) or 'no output'}"
    lines = stdout.strip().splitlines()
    try:
        payload = json.loads(lines[-1]) if lines else None
    except ValueError:
        payload = None
    if not isinstance(payload, dict) or "metrics" not in payload:
        return "exited 0 without a result line"
    return None


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.killpg(process.pid, signal.SIGKILL)


# -- the child ------------------------------------------------------------------------------------------------------

def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    """Score the request's config once per seed; metrics are the means over seeds."""
    evaluation = request["evaluation"]
    per_seed = []
    for seed in evaluation["seeds"]:
        overrides = [*request["overrides"], f"planner.seed={seed}", f"runs_dir={request['runs_dir']}",
                     "loop.status_line=false"]
        if evaluation["mode"] == "closed_loop":
            per_seed.append(_closed_loop(Path(request["base_config"]), overrides, evaluation))
        elif evaluation["mode"] == "task":
            per_seed.append(_task(Path(request["base_config"]), overrides, evaluation))
        else:
            from runtime.config import load_config
            from runtime.evaluation.tuning.open_loop import score_recordings

            config = load_config(request["base_config"], overrides)
            per_seed.append(score_recordings(config, [Path(p) for p in evaluation["recordings"]],
                                             goal_frame=evaluation["goal_frame"], stride=evaluation["stride"]))
    names = per_seed[0]["metrics"].keys()
    metrics = {name: sum(run["metrics"][name] for run in per_seed) / len(per_seed) for name in names}
    return {"metrics": metrics, "details": {"seeds": [run["details"] for run in per_seed]}}


def _closed_loop(base_config: Path, overrides: list[str], evaluation: dict[str, Any]) -> dict[str, Any]:
    from runtime.evaluation.demo import run_demo

    result = run_demo(base_config, evaluation["goals"], overrides, tolerance_m=evaluation["tolerance_m"],
                      goal_timeout_s=evaluation["goal_timeout_s"], verbose=False)
    goals = result["goals"]
    plan_ms = result["plan_ms_p50"]
    return {
        "metrics": {
            "success_rate": result["success_rate"],
            "mean_final_distance": sum(g["distance"] for g in goals) / len(goals),
            # A missed goal counts its whole timeout, so missing is never faster than reaching.
            "time_to_goal": sum(g["seconds"] for g in goals) / len(goals),
            "plan_ms": float(plan_ms) if plan_ms is not None else float("nan"),
        },
        "details": {"reached": sum(g["reached"] for g in goals), "goals": len(goals), "loop_hz": result["loop_hz"],
                    "deadline_misses": result["counters"]["deadline_misses"], "run_dir": result["run_dir"]},
    }


def _task(base_config: Path, overrides: list[str], evaluation: dict[str, Any]) -> dict[str, Any]:
    from runtime.config import load_config
    from runtime.evaluation.task_eval import evaluate_task
    from runtime.sim.goal_sets import read_goal_set, shipped_goal_set

    config = load_config(base_config, overrides)
    goal_set = read_goal_set(shipped_goal_set(evaluation["task"], evaluation["k"]))
    planner = config.planner.optimizer
    entry = evaluate_task(config, goal_set, [planner], goals=evaluation["goals"])["planners"][planner]
    return {
        "metrics": {"success_rate": entry["success_rate"], "mean_final_distance": entry["final_distance_mean"],
                    "ticks": entry["ticks_mean"], "plan_ms": entry["plan_ms_p50"]},
        "details": {"successes": entry["successes"], "goals": entry["episodes"],
                    "success_interval_95": entry["success_interval_95"]},
    }


def _exit_with_parent() -> None:
    """A Ray worker that is cancelled dies without cleaning up: take our process group (the sim) down with it."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    _exit_with_parent()
    result = evaluate(json.loads(sys.stdin.read()))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
