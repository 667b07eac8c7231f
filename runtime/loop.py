"""The control loop: newest frame -> encode -> plan -> safety filter -> command, at a fixed rate."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from perception.manifest import load_manifest, manifest_sha256
from planning.planner import Planner, PlanResult
from planning.world_model import WorldModel
from runtime import protocol
from runtime.config import RunConfig, dump_config
from runtime.link import RuntimeLink
from runtime.recording import RecordingWriter
from runtime.safety import SafetyFilter
from runtime.sources import FrameSource, SourceFrame, open_source
from runtime.telemetry import Telemetry

StopCondition = Callable[[protocol.State | None], bool]


def new_run_dir(runs_dir: Path) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 100000:05d}"
    path = runs_dir / run_id
    path.mkdir(parents=True, exist_ok=False)
    return path


class ControlLoop:
    """Owns the engines, planner, source, link and telemetry of one run."""

    def __init__(self, config: RunConfig, *, source: FrameSource | None = None,
                 link: RuntimeLink | None = None) -> None:
        self.config = config
        manifest = load_manifest(config.model.manifest)
        self.model_sha256 = manifest_sha256(config.model.manifest)
        self.world_model = WorldModel(manifest, backend=config.model.backend, threads=config.model.threads)
        self.planner = Planner(config.planner, self.world_model.predict, manifest.latent_dim, manifest.visual_dim,
                               self.world_model.action_low, self.world_model.action_high)
        if config.goal.image is not None:
            self.planner.set_goal(self.world_model.load_goal_image(config.goal.image))
        self.safety = SafetyFilter(self.world_model.action_low, self.world_model.action_high,
                                   config.safety.max_rate, config.loop.period_s)
        self.telemetry = Telemetry()
        self.stop_requested = threading.Event()
        self.source = source or open_source(config.source.uri, pace=config.source.pace, loop=config.source.loop)
        self.link = link or RuntimeLink(config.link.command_endpoint, config.link.state_endpoint)
        self.run_dir = new_run_dir(config.runs_dir)
        self.recording = RecordingWriter(self.run_dir / "run.mcap") if config.record else None
        self.plan_ms: list[float] = []
        self.last_plan: PlanResult | None = None
        self.frame: SourceFrame | None = None
        self.state: protocol.State | None = None
        self._frame_seen = 0.0
        self._state_seen = 0.0
        self._stopped = True
        self._last_status = 0.0
        self._status = config.loop.status_line and sys.stderr.isatty()

    # -- goals --------------------------------------------------------------------------------------------
    def set_goal_image(self, image: np.ndarray) -> None:
        self.planner.set_goal(self.world_model.encode_goal_image(image))
        self.planner.reset_warm_start()

    # -- one tick -----------------------------------------------------------------------------------------
    def _proprio(self, state: protocol.State) -> np.ndarray:
        return np.concatenate([state.q, state.dq]).astype(np.float32)

    def _send_stop(self, reason: str) -> None:
        self.link.send_stop(reason)
        self.telemetry.counters["stops"] += 1
        if not self._stopped:
            self.safety.reset()
            self.planner.reset_warm_start()
            self._stopped = True

    def tick(self) -> None:
        counters = self.telemetry.counters
        now = time.perf_counter()
        with self.telemetry.stage("source"):
            frame = self.source.read_latest(0.0)
        if frame is not None:
            self.frame, self._frame_seen = frame, now
            counters["frames"] += 1
        with self.telemetry.stage("state"):
            state = self.link.latest_state()
        if state is not None:
            self.state, self._state_seen = state, now

        if self.frame is None or (now - self._frame_seen) * 1000 > self.config.source.frame_timeout_ms:
            counters["stale_frames"] += 1
            self._send_stop("no fresh frame")
        elif self.state is None or (now - self._state_seen) * 1000 > self.config.link.state_timeout_ms:
            counters["missing_state"] += 1
            self._send_stop("no controller state")
        else:
            self._act(self.frame, self.state)
        counters["drops"] = self.source.dropped
        counters["bad_messages"] = self.link.counters.get("bad_messages", 0) + getattr(self.source, "bad_messages", 0)

    def _act(self, frame: SourceFrame, state: protocol.State) -> None:
        with self.telemetry.stage("encode"):
            latent = self.world_model.encode(frame.image, self._proprio(state))
        with self.telemetry.stage("plan"):
            plan = self.planner.plan(latent)
        self.last_plan = plan
        self.plan_ms.append(plan.ms)
        verdict = self.safety(plan.action)
        counters = self.telemetry.counters
        counters["clipped"] += verdict.clipped
        counters["rate_limited"] += verdict.rate_limited
        if verdict.action is None:
            self._send_stop(verdict.reason)
            return
        with self.telemetry.stage("send"):
            seq = self.link.send_command(verdict.action, frame.stamp_ns, self.config.link.command_ttl_ms)
        counters["commands"] += 1
        self._stopped = False
        if self.recording is not None:
            with self.telemetry.stage("record"):
                self._record(seq, frame, state, latent, plan, verdict.action)

    def _record(self, seq: int, frame: SourceFrame, state: protocol.State, latent: np.ndarray, plan: PlanResult,
                action: np.ndarray) -> None:
        assert self.recording is not None
        stamp = protocol.now_ns()
        self.recording.write_image(frame.image, frame.stamp_ns, seq)
        self.recording.write_json("/robot/state", {"seq": state.seq, "q": state.q.tolist(), "dq": state.dq.tolist(),
                                                   "ee": state.ee.tolist()}, stamp, seq)
        self.recording.write_json("/model/latent", {"latent": latent.tolist()}, stamp, seq)
        self.recording.write_json("/planner/plan", {"sequence": plan.sequence.tolist(), "cost": plan.cost,
                                                    "iterations": plan.iterations, "ms": plan.ms,
                                                    "best_cost_per_iteration": plan.best_cost_per_iteration},
                                  stamp, seq)
        self.recording.write_json("/robot/command", {"seq": seq, "action": action.tolist()}, stamp, seq)

    # -- scheduling ---------------------------------------------------------------------------------------
    def run(self, duration_s: float | None = None, until: StopCondition | None = None) -> None:
        """Tick at the configured rate until stopped, `duration_s` passes or `until(state)` is true."""
        period = self.config.loop.period_s
        deadline = self.config.loop.deadline_s
        duration_s = duration_s if duration_s is not None else self.config.loop.duration_s
        started = time.perf_counter()
        next_tick = started
        while not self.stop_requested.is_set():
            tick_start = time.perf_counter()
            self.tick()
            tick_end = time.perf_counter()
            tick_s = tick_end - tick_start
            self.telemetry.tick_ms.add(tick_s * 1000)
            self.telemetry.counters["ticks"] += 1
            if tick_s > deadline:
                self.telemetry.counters["deadline_misses"] += 1
            self._show_status(tick_end)
            if until is not None and until(self.state):
                break
            if duration_s is not None and tick_end - started >= duration_s:
                break
            next_tick += period
            if next_tick < tick_end:
                # Overran: do not try to catch up; the next tick starts now and takes the newest frame.
                next_tick = tick_end
            else:
                self.stop_requested.wait(next_tick - tick_end)

    def _show_status(self, now: float) -> None:
        if self._status and now - self._last_status > 0.5:
            self._last_status = now
            print("\r" + self.telemetry.status_line(), end="", file=sys.stderr, flush=True)

    # -- shutdown -----------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        summary = self.telemetry.summary()
        plan_ms = np.asarray(self.plan_ms) if self.plan_ms else np.zeros(1)
        summary |= {
            "model_sha256": self.model_sha256,
            "backend": self.world_model.backend,
            "planner": {"plans": len(self.plan_ms), "plan_ms_p50": float(np.percentile(plan_ms, 50)),
                        "plan_ms_p99": float(np.percentile(plan_ms, 99))},
            "run_dir": str(self.run_dir),
            "config": json.loads(self.config.model_dump_json()),
        }
        return summary

    def close(self) -> dict[str, Any]:
        """Send stop, close sockets and source, flush the recording, write summary.json; returns the summary."""
        try:
            self._send_stop("runtime exiting")
        finally:
            self.link.close()
            self.source.close()
            if self.recording is not None:
                self.recording.close()
        if self._status:
            print(file=sys.stderr)
        summary = self.summary()
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
