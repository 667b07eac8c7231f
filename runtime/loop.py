"""The control loop: newest frame -> encode -> plan -> safety filter -> command, at a fixed rate.

Each tick also takes the newest goal message (docs/goals.md) and, when the run's config file changed or
SIGHUP arrived, reloads the planner section (runtime/reload.py). Whether a tick stops, plans or sends the
next planned action is decided by `runtime.tick_decision.decide` from what the tick read, and whether a plan
may be sent by `judge_model_output` from what the model produced; this module does the reading and the
carrying out. With `planner.execute_steps` = k > 1 a plan's first k actions go out on k consecutive ticks
(an action chunk) before the next plan. With `loop.planning: async` the planner runs in a thread of its own and
commands go out at `link.command_hz` from the newest plan (runtime/async_control.py); this module's pieces
(reading, planning, sending through the safety filter, recording) serve both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from calibration.camera_file import Extrinsics, read_calibration
from perception.manifest import load_manifest, model_provenance
from planning.planner import Planner, PlanResult
from runtime import platform_info
from runtime.async_control import AsyncControl, check_plan_lasts
from runtime.channels import (
    COMMAND_TOPIC,
    GOAL_IMAGE_TOPIC,
    GOAL_TOPIC,
    LATENT_TOPIC,
    PLAN_TOPIC,
    STATE_TOPIC,
    STOP_TOPIC,
    ChannelWriter,
    state_payload,
)
from runtime.config import RunConfig, dump_config
from runtime.goals import GoalServer, GoalTarget, goal_from_config, goal_from_message
from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink
from runtime.live_view import open_live_view
from runtime.recording import RecordingWriter
from runtime.recording_thread import BackgroundRecording
from runtime.reload import ConfigWatcher, ReloadRefused
from runtime.safety import SafetyFilter
from runtime.sources import FrameSource, SourceFrame, open_source
from runtime.telemetry import LogHistogram, Telemetry
from runtime.tick_decision import Act, Decision, ModelOutput, TickView, decide, frame_is_fresh, judge_model_output
from runtime.world import load_world_model

StopCondition = Callable[[protocol.State | None], bool]

# Counters this loop adds to the telemetry's own.
LOOP_COUNTERS = ("plans", "goals", "bad_goals", "no_goal", "reloads", "reload_errors", "deadline_hits",
                 "wrong_state_dim", "stale_state", "non_finite_model", "state_outages", "stale_plans")
# The link's drop counters that the summary carries as they are (its bad_messages add to the source's).
LINK_DROP_COUNTERS = ("old_states", "future_states", "state_reconnects")


def new_run_dir(runs_dir: Path) -> Path:
    run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{time.monotonic_ns() % 100000:05d}"
    path = runs_dir / run_id
    path.mkdir(parents=True, exist_ok=False)
    return path


class ControlLoop:
    """Owns the engines, planner, goals, source, link and telemetry of one run.

    `config_file` (with the run's `overrides`) turns on hot reload of its planner section.
    """

    def __init__(self, config: RunConfig, *, source: FrameSource | None = None, link: RuntimeLink | None = None,
                 config_file: Path | None = None, overrides: Sequence[str] = ()) -> None:
        self.config = config
        security = config.link.load_security()  # first: a missing or bad key refuses the run before anything loads
        manifest = load_manifest(config.model.manifest)
        self.model = model_provenance(manifest)  # model_id and each file's sha256, for the summary
        self.platform = platform_info.collect()  # once, before the loop: its queries take up to seconds
        self.world_model = load_world_model(config, undistort=True)
        planning_async = config.loop.planning == "async"
        # Sync: each planned action is executed for one loop period, so that is how far a plan shifts per tick.
        # Async: commands follow a plan in time, each action for the model's step, as the predictor assumed.
        plan_step_s = manifest.control_period_s if planning_async else config.loop.period_s
        self.planner = Planner(config.planner, self.world_model.predict, manifest.latent_dim, manifest.visual_dim,
                               self.world_model.action_low, self.world_model.action_high, plan_step_s,
                               rollout=self.world_model.planner_rollout)
        self.async_control = AsyncControl(self) if planning_async else None  # before any socket: it checks the config
        self.goal: GoalTarget | None = None
        start_goal = goal_from_config(config.goal, self.world_model)
        if start_goal is not None:
            self.set_goal(start_goal)
        # The rate limit is per command: async commands come every 1 / link.command_hz.
        self.safety = SafetyFilter(self.world_model.action_low, self.world_model.action_high,
                                   config.safety.max_rate, 1.0 / self.tick_hz)
        self.telemetry = Telemetry()
        for name in LOOP_COUNTERS:
            self.telemetry.counters[name] = 0
        self.stop_requested = threading.Event()
        self.watcher = ConfigWatcher(config_file, overrides) if config_file is not None else None
        endpoint = config.link.goal_endpoint
        image_size = (manifest.image.height, manifest.image.width)  # smaller views over the link are refused
        self.goal_server = GoalServer(endpoint, security, image_size) if endpoint is not None else None
        # What start-up opened, closed again if a later step fails: ports freed for a retry in this process, the
        # recording finished. A source or link the caller passed in stays the caller's.
        opened = contextlib.ExitStack()
        try:
            if self.goal_server is not None:
                opened.callback(self.goal_server.close)
            self.source = source or open_source(config.source.uri, pace=config.source.pace, loop=config.source.loop,
                                                security=security, min_image_size=image_size)
            if source is None:
                opened.callback(self.source.close)
            self.link = link or RuntimeLink(config.link.command_endpoint, config.link.state_endpoint,
                                            security=security, state_timeout_ms=config.link.state_timeout_ms)
            if link is None:
                opened.callback(self.link.close)
            self.run_dir = new_run_dir(config.runs_dir)
            # Written on its own thread: encoding frames never takes time from a tick or a command.
            self.recording = BackgroundRecording(RecordingWriter(self.run_dir / "run.mcap")) if config.record \
                else None
            if self.recording is not None:
                opened.callback(self.recording.close)
            self.live_view = open_live_view(config.live_view)
            if self.live_view is not None:
                opened.callback(self.live_view.close)
            # Where each tick's messages go: the recording and the live view take the same ones, written from both
            # threads of asynchronous planning under this lock (never held during inference).
            self._record_lock = threading.Lock()
            self.writers: list[ChannelWriter] = [w for w in (self.recording, self.live_view) if w is not None]
            camera = config.calibration.camera
            extrinsics = read_calibration(camera).extrinsics if camera is not None else None
            if self.recording is not None:
                self._start_recording(self.recording, extrinsics)
            if self.live_view is not None and extrinsics is not None:
                self.live_view.set_camera_transform(extrinsics.base_T_camera)
        except BaseException:
            opened.close()
            raise
        opened.pop_all()
        # Per-plan diagnostics for the summary.
        self.plan_ms, self.plan_iterations, self.plan_spread = LogHistogram(), LogHistogram(), LogHistogram()
        # Each outage of the controller's state: from the last state before it to the first one after, ms.
        self.outage_ms = LogHistogram()
        self._outage_since: float | None = None  # perf_counter of the last state heard before the current outage
        self.last_plan: PlanResult | None = None
        self.frame: SourceFrame | None = None
        self.state: protocol.State | None = None
        self._frame_seen = 0.0
        self._state_seen = 0.0
        self._stopped = True
        # The action chunk being executed: planned actions (k, A), the next one to send, the plan's frame stamp.
        self._chunk: np.ndarray | None = None
        self._chunk_next = 0
        self._chunk_stamp = 0
        self._last_plan_at: float | None = None  # perf_counter of the plan the warm start comes from
        # After a stop the next plan starts cold; set by whichever thread sends the stop, taken by the planning one.
        self._warm_start_stale = False
        # Last command in force (0: held still); replaced, never changed in place, so another thread reads it whole.
        self._previous_action = np.zeros(self.world_model.action_dim)
        self._wrong_state_shape: tuple[int, int] | None = None  # last (q, dq) sizes reported as not fitting
        self._model_fault: str | None = None  # the non-finite model stage last said, until a plan is finite again
        self._last_status = 0.0
        self._status = config.loop.status_line and sys.stderr.isatty()

    @property
    def tick_hz(self) -> float:
        """How often `run` ticks (and `until` is asked): commands per second."""
        return self.config.link.command_hz if self.config.loop.planning == "async" else self.config.loop.rate_hz

    @property
    def goal_endpoint(self) -> str | None:
        """The goal socket's bound endpoint (ports resolved), or None without one."""
        return self.goal_server.endpoint if self.goal_server is not None else None

    # -- goals --------------------------------------------------------------------------------------------
    def set_goal(self, goal: GoalTarget) -> None:
        """Switch the planner's goal now; the next tick plans afresh towards it."""
        self.planner.set_goal(visual=goal.visual, state=goal.state)
        self.planner.reset_warm_start()
        self.goal = goal
        self._replan()

    def set_goal_image(self, image: np.ndarray) -> None:
        self.set_goal(GoalTarget(self.world_model.encode_goal_image(image), None, "goal image", image))

    def _take_goal_message(self, current_view: np.ndarray | None) -> None:
        assert self.goal_server is not None
        message = self.goal_server.receive()
        if message is not None:
            try:
                goal = goal_from_message(message, self.world_model, current_view)
                self.set_goal(goal)
            except ValueError as exc:  # a GoalError, or a latent the planner refuses
                self.goal_server.reject(str(exc))
                self._say(f"goal message dropped: {exc}")
            else:
                self.telemetry.counters["goals"] += 1
                self._say(f"goal switched: {goal.description}")
                self._record_goal(goal)
        self.telemetry.counters["bad_goals"] = self.goal_server.bad_messages
        self.telemetry.counters.update(self.goal_server.counters)

    # -- hot reload ---------------------------------------------------------------------------------------
    def _take_config_edit(self) -> None:
        assert self.watcher is not None
        counters = self.telemetry.counters
        try:
            edit = self.watcher.poll(self.config)
            if edit is None:
                return
            limit = self.world_model.predictor.max_batch
            if limit is not None and edit.settings.samples > limit:
                raise ReloadRefused(f"planner.samples: {edit.settings.samples} is more than the "
                                    f"{self.world_model.backend} predictor takes ({limit}, its engine's profile); "
                                    f"restart to build one for it")
            rollout = self.world_model.rollout_engine
            steps = edit.settings.horizon * edit.settings.action_block
            if rollout is not None and rollout.max_steps is not None and steps > rollout.max_steps:
                raise ReloadRefused(f"planner.horizon x planner.action_block: {steps} steps is more than the "
                                    f"{self.world_model.backend} rollout takes ({rollout.max_steps}, its engine's "
                                    f"profile); restart to build one for it")
            if self.async_control is not None:
                try:
                    check_plan_lasts(edit.settings, self.planner.control_period_s, self.config.loop.max_plan_age_ms)
                except ValueError as exc:
                    raise ReloadRefused(str(exc)) from exc
            self.planner.update_settings(edit.settings)
        except (ReloadRefused, ValueError) as exc:
            counters["reload_errors"] += 1
            self._say(f"config reload refused, the planner keeps its settings: {exc}")
            return
        self.config = self.config.model_copy(update={"planner": edit.settings})
        counters["reloads"] += 1
        self._replan()
        self._say("planner settings reloaded: " + "; ".join(edit.changes))

    def _say(self, message: str) -> None:
        """One line on stderr, below the status line if one is showing."""
        print(("\n" if self._status else "") + f"edgeloop: {message}", file=sys.stderr, flush=True)

    # -- one tick -----------------------------------------------------------------------------------------
    def _proprio(self, state: protocol.State) -> np.ndarray:
        """[q, dq] as the model's float32 input: inf where a finite float64 is beyond float32 range."""
        with np.errstate(over="ignore"):
            return np.concatenate([state.q, state.dq]).astype(np.float32)

    def _fits_model(self, state: protocol.State) -> bool:
        """A state whose [q, dq] is the model's proprio input; else said (once until states fit again)."""
        expected = self.world_model.manifest.proprio_dim
        if state.q.size == state.dq.size and state.q.size + state.dq.size == expected:
            return True
        shape = (state.q.size, state.dq.size)
        if shape != self._wrong_state_shape:
            self._wrong_state_shape = shape
            each = f"{expected // 2} each, " if expected % 2 == 0 else ""
            self._say(f"controller state seq {state.seq} dropped: fields 'q' and 'dq' have {shape[0]} and "
                      f"{shape[1]} values; the model's proprio input [q, dq] takes {each}{expected} values; "
                      f"the loop sends stop until states fit")
        return False

    def _replan(self) -> None:
        """Drop what is left of the action chunk: the next tick that acts plans first."""
        self._chunk = None

    def _send_stop(self, reason: str) -> None:
        seq = self.link.send_stop(reason)
        self.telemetry.counters["stops"] += 1
        if self.writers:
            with self._record_lock:
                for writer in self.writers:
                    writer.write_json(STOP_TOPIC, {"seq": seq, "reason": reason}, protocol.now_ns(), seq)
        self._replan()
        if not self._stopped:
            self.safety.reset()
            self._warm_start_stale = True
            self._previous_action = np.zeros(self.world_model.action_dim)
            self._stopped = True

    def tick(self) -> None:
        now = time.perf_counter()
        self._read_frame(now)
        self._read_state(now)
        frame_age_ms = None if self.frame is None else (now - self._frame_seen) * 1000
        state_age_ms = None if self.state is None else (now - self._state_seen) * 1000
        self._note_outage(state_age_ms, now)
        self._take_goal_and_config(frame_age_ms)
        chunk_left = 0 if self._chunk is None else len(self._chunk) - self._chunk_next
        view = TickView(frame_age_ms=frame_age_ms, state_fits=self._wrong_state_shape is None,
                        state_age_ms=state_age_ms,
                        state_stamp_age_ms=None if self.state is None else (protocol.now_ns() - self.state.stamp) / 1e6,
                        state_trouble=self.link.state_trouble(), has_goal=self.goal is not None, chunk_left=chunk_left)
        decision = decide(view, frame_timeout_ms=self.config.source.frame_timeout_ms,
                          state_timeout_ms=self.config.link.state_timeout_ms)
        planned = None
        if decision.act is Act.PLAN:
            assert self.frame is not None and self.state is not None  # decide() stops without either
            decision, planned = self._plan(self.frame, self.state, self._previous_action)
            if planned is not None:
                self._chunk = planned[1].sequence[: self.config.planner.execute_steps]
                self._chunk_next = 0
                self._chunk_stamp = self.frame.stamp_ns
        if decision.act is Act.STOP:
            self._stop_for(decision)
        else:
            assert self.frame is not None and self.state is not None
            self._send_next(self.frame, self.state, planned)
        self._copy_source_counters()
        self._copy_link_counters()
        self._show_live_view()

    def _read_frame(self, now: float) -> None:
        with self.telemetry.stage("source"):
            frame = self.source.read_latest(0.0)
        if frame is not None:
            self.frame, self._frame_seen = frame, now
            self.telemetry.counters["frames"] += 1

    def _read_state(self, now: float) -> None:
        with self.telemetry.stage("state"):
            state = self.link.latest_state()
        if state is not None:
            if self._fits_model(state):
                self.state, self._state_seen = state, now
                self._wrong_state_shape = None
            else:
                self.telemetry.counters["wrong_state_dim"] += 1
                self.state = None  # never plan from an older state once the controller sends ones that do not fit

    def _take_goal_and_config(self, frame_age_ms: float | None) -> None:
        """A goal message and a config edit, if either came (the tick that plans: they change the planner)."""
        if self.goal_server is not None:
            # After the frame is read: a capture takes the newest view, and only a fresh one.
            fresh = self.frame is not None and frame_is_fresh(frame_age_ms, self.config.source.frame_timeout_ms)
            self._take_goal_message(self.frame.image if fresh and self.frame is not None else None)
        if self.watcher is not None:
            self._take_config_edit()

    def _stop_for(self, decision: Decision) -> None:
        if decision.counter is not None:
            self.telemetry.counters[decision.counter] += 1
        self._send_stop(decision.reason)

    def _copy_source_counters(self) -> None:
        counters = self.telemetry.counters
        counters["drops"] = self.source.dropped
        for name, count in getattr(self.source, "counters", {}).items():  # a controller's frame stream
            if name != "bad_messages":  # summed with the link's in _copy_link_counters: never set to a part
                counters[name] = count

    def _copy_link_counters(self) -> None:
        counters = self.telemetry.counters
        counters["bad_messages"] = self.link.counters.get("bad_messages", 0) + getattr(self.source, "bad_messages", 0)
        for name in LINK_DROP_COUNTERS:  # no dict built per tick
            counters[name] = self.link.counters.get(name, 0)

    def _show_live_view(self) -> None:
        """The newest frame, state and goal to the live view's viewers, once per tick that sends (either mode)."""
        if self.live_view is not None:
            self.live_view.show(self.frame, self.state, self.goal)

    def _note_outage(self, state_age_ms: float | None, now: float) -> None:
        """Count each time the controller's state stops coming (its newest is older than the state timeout, whatever
        the tick's stop says first: a controller that is also the camera goes stale as frames too) and, when a state
        comes again, how long it was gone."""
        timeout_ms = self.config.link.state_timeout_ms
        if self._outage_since is None:
            if state_age_ms is not None and state_age_ms > timeout_ms:
                self._outage_since = self._state_seen
                self.telemetry.counters["state_outages"] += 1
        elif state_age_ms is not None and state_age_ms <= timeout_ms:
            self.outage_ms.add((now - self._outage_since) * 1000)
            self._outage_since = None

    def _plan(self, frame: SourceFrame, state: protocol.State,
              previous_action: np.ndarray) -> tuple[Decision, tuple[np.ndarray, PlanResult] | None]:
        """Encode and plan, each stage only when the one before gave finite numbers; whether to send the plan."""
        if self._warm_start_stale:  # a stop since the last plan
            self._warm_start_stale = False
            self.planner.reset_warm_start()
            self._last_plan_at = None
        proprio = self._proprio(state)
        if not np.all(np.isfinite(proprio)):
            return self._judged(ModelOutput(input_finite=False, latent_finite=None, plan_cost=None)), None
        with self.telemetry.stage("encode"):
            latent = self.world_model.encode(frame.image, proprio)
        if not np.all(np.isfinite(latent)):
            return self._judged(ModelOutput(input_finite=True, latent_finite=False, plan_cost=None)), None
        with self.telemetry.stage("plan"):
            started = time.perf_counter()
            elapsed = None if self._last_plan_at is None else started - self._last_plan_at
            plan = self.planner.plan(latent, previous_action=previous_action, elapsed_s=elapsed)
            self._last_plan_at = started
        self.last_plan = plan
        self.plan_ms.add(plan.ms)
        self.plan_iterations.add(plan.iterations)
        self.plan_spread.add(plan.spread)
        counters = self.telemetry.counters
        counters["plans"] += 1
        counters["deadline_hits"] += plan.deadline_hit
        decision = self._judged(ModelOutput(input_finite=True, latent_finite=True, plan_cost=plan.cost))
        if decision.act is Act.STOP:
            return decision, None
        return decision, (latent, plan)

    def _judged(self, output: ModelOutput) -> Decision:
        """`judge_model_output`, saying a non-finite stage once until a plan is finite again."""
        decision = judge_model_output(output)
        fault = decision.reason if decision.act is Act.STOP else None
        if fault is not None and fault != self._model_fault:
            self._say(f"stopping the robot: {fault}; it stays stopped while this lasts")
        self._model_fault = fault
        return decision

    def _send_next(self, frame: SourceFrame, state: protocol.State,
                   planned: tuple[np.ndarray, PlanResult] | None) -> None:
        """Send the chunk's next action; record the tick."""
        assert self._chunk is not None
        # The capture stamp is the one of the frame the plan came from, also for later actions of a chunk.
        sent = self._send_action(self._chunk[self._chunk_next], self._chunk_stamp)
        self._chunk_next += 1
        if sent is not None and self.writers:
            with self.telemetry.stage("record"), self._record_lock:
                self._record(sent[0], frame, state, planned, sent[1])

    def _send_action(self, action: np.ndarray, stamp_capture: int) -> tuple[int, np.ndarray] | None:
        """Send `action` through the safety filter, or a stop if it refuses; the command's seq and what was sent."""
        verdict = self.safety(action)
        counters = self.telemetry.counters
        counters["clipped"] += verdict.clipped
        counters["rate_limited"] += verdict.rate_limited
        if verdict.action is None:
            self._send_stop(verdict.reason)
            return None
        with self.telemetry.stage("send"):
            seq = self.link.send_command(verdict.action, stamp_capture, self.config.link.command_ttl_ms)
        counters["commands"] += 1
        self._previous_action = verdict.action
        self._stopped = False
        return seq, verdict.action

    def _record(self, seq: int, frame: SourceFrame, state: protocol.State,
                planned: tuple[np.ndarray, PlanResult] | None, action: np.ndarray) -> None:
        plan_facts = {"execute_steps": len(self._chunk) if self._chunk is not None else 0}
        self._record_plan(seq, frame, state, planned, plan_facts)
        self._record_command(seq, action)

    def _record_plan(self, seq: int, frame: SourceFrame, state: protocol.State,
                     planned: tuple[np.ndarray, PlanResult] | None, plan_facts: dict[str, Any]) -> None:
        """The frame and state a command came from and, when it planned, the latent and the plan, to every writer
        (the recording and the live view). Under `_record_lock`."""
        stamp = protocol.now_ns()
        messages = [(STATE_TOPIC, state_payload(state))]
        if planned is not None:  # ticks inside an action chunk send a planned action without planning
            latent, plan = planned
            messages += [(LATENT_TOPIC, {"latent": latent.tolist()}), (PLAN_TOPIC, plan.diagnostics() | plan_facts | {
                "optimizer": self.config.planner.optimizer})]
        for writer in self.writers:
            writer.write_image(frame.image, frame.stamp_ns, seq)
            for topic, payload in messages:
                writer.write_json(topic, payload, stamp, seq)

    def _record_command(self, seq: int, action: np.ndarray) -> None:
        for writer in self.writers:
            writer.write_json(COMMAND_TOPIC, {"seq": seq, "action": action.tolist()}, protocol.now_ns(), seq)

    def _record_goal(self, goal: GoalTarget) -> None:
        """The goal into the recording (the live view shows the current goal every tick)."""
        if self.recording is not None:
            with self._record_lock:
                stamp, seq = protocol.now_ns(), self.telemetry.counters["ticks"]
                self.recording.write_json(GOAL_TOPIC, goal.message(), stamp, seq)
                if goal.view is not None:
                    self.recording.write_image(goal.view, stamp, seq, GOAL_IMAGE_TOPIC)

    def _start_recording(self, recording: BackgroundRecording, extrinsics: Extrinsics | None) -> None:
        """What a recording starts with: the camera's pose when its calibration has one, the start goal."""
        if extrinsics is not None:
            recording.write_camera_transform(extrinsics.base_T_camera, protocol.now_ns())
        if self.goal is not None:
            self._record_goal(self.goal)

    # -- scheduling ---------------------------------------------------------------------------------------
    @contextmanager
    def _reload_on_sighup(self) -> Iterator[None]:
        """SIGHUP asks for a config re-read while the loop runs (main thread only: where handlers go)."""
        if self.watcher is None or not hasattr(signal, "SIGHUP") \
                or threading.current_thread() is not threading.main_thread():
            yield
            return
        watcher = self.watcher
        previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: watcher.request())
        try:
            yield
        finally:
            signal.signal(signal.SIGHUP, previous)

    def run(self, duration_s: float | None = None, until: StopCondition | None = None) -> None:
        """Tick at the configured rate until stopped, `duration_s` passes or `until(state)` is true."""
        duration_s = duration_s if duration_s is not None else self.config.loop.duration_s
        with self._reload_on_sighup():
            if self.async_control is not None:
                self.async_control.run(duration_s, until)
            else:
                self.schedule(self.tick, self.config.loop.period_s, self.config.loop.deadline_s, duration_s, until)

    def schedule(self, tick: Callable[[], None], period_s: float, deadline_s: float, duration_s: float | None,
                 until: StopCondition | None, running: Callable[[], bool] = lambda: True) -> None:
        """Call `tick` every `period_s` (timed, counted, a miss when longer than `deadline_s`) until stopped,
        `duration_s` passes, `until(state)` is true or `running()` is not."""
        started = time.perf_counter()
        next_tick = started
        while not self.stop_requested.is_set() and running():
            tick_start = time.perf_counter()
            tick()
            tick_end = time.perf_counter()
            tick_s = tick_end - tick_start
            self.telemetry.tick_ms.add(tick_s * 1000)
            self.telemetry.counters["ticks"] += 1
            if tick_s > deadline_s:
                self.telemetry.counters["deadline_misses"] += 1
            self._show_status(tick_end)
            if until is not None and until(self.state):
                break
            if duration_s is not None and tick_end - started >= duration_s:
                break
            next_tick += period_s
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
        plan_ms = self.plan_ms.summary()
        counters = self.telemetry.counters
        summary |= {
            **self.model,
            "backend": self.world_model.backend,
            "platform": self.platform,
            "planner": {
                "optimizer": self.config.planner.optimizer,
                "plans": counters["plans"],
                "plan_ms_p50": plan_ms["p50"],
                "plan_ms_p99": plan_ms["p99"],
                "iterations_mean": self.plan_iterations.mean,
                "deadline_hits": counters["deadline_hits"],
                "spread_mean": self.plan_spread.mean,
                "execute_steps": self.config.planner.execute_steps,
                "commands_per_plan": counters["commands"] / counters["plans"] if counters["plans"] else 0.0,
            },
            "goal": {"description": self.goal.description if self.goal is not None else None,
                     "endpoint": self.goal_endpoint},
            "link": {"session": self.link.session,  # outages: counters["state_outages"]
                     "outage_s_longest": self.outage_ms.max / 1000 if self.outage_ms.count else 0.0,
                     "outage_s_total": self.outage_ms.total / 1000},
            "run_dir": str(self.run_dir),
            "live_view": self.live_view.address if self.live_view is not None else None,
            "recording": None if self.recording is None else {
                "file": str(self.recording.path), "messages": self.recording.written,
                "dropped": self.recording.dropped},
            "config": json.loads(self.config.model_dump_json()),
        }
        if self.async_control is not None:
            summary["async"] = self.async_control.summary()
        return summary

    def close(self) -> dict[str, Any]:
        """Send stop, close sockets and source, flush the recording, write summary.json; returns the summary."""
        closers = [self.link.close, self.source.close, *(
            part.close for part in (self.goal_server, self.recording, self.live_view) if part is not None)]
        with contextlib.ExitStack() as closing:  # each closes even when one before it raises
            for close in reversed(closers):  # the stack runs them last-in first
                closing.callback(close)
            self._send_stop("runtime exiting")
        if self._status:
            print(file=sys.stderr)
        summary = self.summary()
        (self.run_dir / "config.yaml").write_text(dump_config(self.config))
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
