"""Asynchronous planning: the planner in a thread of its own, commands at their own rate from the newest plan.

Two threads share one ControlLoop (runtime/loop.py), each with its own sockets:
- the planner thread reads the newest frame, takes goal messages and config edits, decides with `decide`
  (runtime/tick_decision.py) from that frame and the newest state the command thread saw whether to plan,
  encodes and plans, and hands over a `TimedPlan` or its stop, at most `loop.rate_hz` times a second;
- the command thread (the one that calls `run`) reads the controller's state and sends one message every
  1 / `link.command_hz`: the newest plan's action for the time since that plan's capture, through the safety
  filter, or a stop (`decide_command`: the state's rules, the planner's stop, no plan, or a plan older than
  `loop.max_plan_age_ms`).
The handoff is one assignment of an immutable object, so no lock is held while planning. ONNX Runtime releases the
GIL while it runs; the interpreter's switch interval is shortened while both threads run so that the command
thread, on waking, gets the GIL within about GIL_SWITCH_S from the planner's NumPy work.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from planning.planner import PlanResult
from planning.settings import PlannerSettings
from runtime.link import protocol
from runtime.sources import SourceFrame
from runtime.telemetry import LogHistogram
from runtime.tick_decision import Act, CommandView, Decision, TickView, decide, decide_command

if TYPE_CHECKING:
    from runtime.loop import ControlLoop, StopCondition

Interpolation = Literal["hold", "linear"]

# The most a thread that holds the GIL runs on while the command thread waits for it (Python's default is 5 ms).
GIL_SWITCH_S = 0.0005


@dataclass(frozen=True)
class TimedPlan:
    """One plan as the command thread uses it; never changed after the planner thread hands it over."""

    plan_id: int  # from 0, in the order the planner made them
    actions: np.ndarray  # (steps, A) physical, read-only: action k is for [k, k + 1) steps after the capture
    step_s: float  # how long each action lasts: the model's control period
    captured_at: float  # time.perf_counter() when the planner took its frame and state
    stamp_capture: int  # the frame's capture stamp (ns since the epoch), carried by every command from this plan
    frame: SourceFrame  # what the plan came from, for the recording
    state: protocol.State
    latent: np.ndarray
    result: PlanResult

    def action_at(self, now: float, interpolation: Interpolation) -> np.ndarray:
        """The action for `now`: the step it falls in (hold), or blended towards the next step's (linear); past the
        plan's end, its last action."""
        position = max(0.0, (now - self.captured_at) / self.step_s)
        last = len(self.actions) - 1
        index = min(int(position), last)
        if interpolation == "hold" or index == last:
            return self.actions[index]
        share = position - index
        return (1.0 - share) * self.actions[index] + share * self.actions[index + 1]


@dataclass(frozen=True)
class StateSeen:
    """The command thread's newest controller state, as the planner thread reads it."""

    state: protocol.State | None  # None: none yet, or the newest does not fit the model
    seen_at: float  # time.perf_counter() when it arrived
    fits: bool
    trouble: str | None  # the link's state_trouble() then


def check_plan_lasts(settings: PlannerSettings, step_s: float, max_plan_age_ms: float) -> None:
    """ValueError when a plan with these settings ends before loop.max_plan_age_ms: commands would run past it."""
    lasts_ms = settings.horizon * settings.action_block * step_s * 1000
    if max_plan_age_ms > lasts_ms:
        raise ValueError(f"loop.max_plan_age_ms: {max_plan_age_ms:g} ms is longer than a plan lasts ({lasts_ms:g} ms: "
                         f"planner.horizon x planner.action_block x the model's control_period_s); commands would "
                         f"run past its end")


Scheduling = tuple[int, int]  # a thread's scheduling policy and priority


def raise_priority(priority: int | None) -> Scheduling | None:
    """Put the calling thread under SCHED_FIFO at `priority` (None: leave it); its scheduling before. A wake-up on a
    busy machine then waits for no ordinary thread (docs/planner.md, Asynchronous planning)."""
    if priority is None:
        return None
    if not hasattr(os, "sched_setscheduler"):
        raise ValueError("loop.control_priority: real-time priorities need Linux (os.sched_setscheduler)")
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as exc:
        raise ValueError(f"loop.control_priority: SCHED_FIFO priority {priority} is not permitted to this process "
                         f"({exc.strerror}); it needs CAP_SYS_NICE or a real-time priority limit (ulimit -r, "
                         f"/etc/security/limits.conf rtprio) of at least {priority}") from exc
    return before


def restore_priority(before: Scheduling | None) -> None:
    if before is not None:
        os.sched_setscheduler(0, before[0], os.sched_param(before[1]))


class AsyncControl:
    """Runs a ControlLoop with asynchronous planning (`loop.planning: async`)."""

    def __init__(self, loop: ControlLoop) -> None:
        config = loop.config
        check_plan_lasts(config.planner, loop.planner.control_period_s, config.loop.max_plan_age_ms)
        if config.loop.control_cpu is not None and hasattr(os, "sched_getaffinity") \
                and config.loop.control_cpu not in os.sched_getaffinity(0):
            raise ValueError(f"loop.control_cpu: CPU {config.loop.control_cpu} is not one this process may run on "
                             f"({sorted(os.sched_getaffinity(0))})")
        if config.loop.control_priority is not None:
            restore_priority(raise_priority(config.loop.control_priority))  # refused now rather than mid-run
        self.loop = loop
        self._newest: TimedPlan | Decision | None = None  # the handoff: replaced whole, never changed
        self._state_for_planner = StateSeen(None, 0.0, True, None)  # the other way: replaced whole
        self._plan_ids = itertools.count()
        self._finished = threading.Event()  # tells the planner thread to end
        self._failure: BaseException | None = None  # what ended the planner thread, raised by run
        self.plan_age_ms = LogHistogram()  # at each command sent: since its plan's capture
        self.send_interval_ms = LogHistogram()  # between consecutive messages (commands or stops)
        self.jitter_ms = LogHistogram()  # |interval - 1 / command_hz|
        self.commands_per_plan = LogHistogram()  # for each plan commands were sent from, when the next took over
        self.plans_made = 0
        self.run_s = 0.0  # time spent in run, all calls
        self._plan_in_use: int | None = None
        self._commands_from_plan = 0
        self._last_send: float | None = None
        self.planner_cpus: set[int] | None = None  # where the planner thread ran, with loop.control_cpu

    # -- the command thread -------------------------------------------------------------------------------
    def run(self, duration_s: float | None, until: StopCondition | None) -> None:
        """Plan in a thread and command in this one until stopped, `duration_s` passes or `until(state)` is true."""
        loop = self.loop
        period = 1.0 / loop.config.link.command_hz
        deadline = loop.config.loop.deadline_s if loop.config.loop.deadline_ms is not None else period
        self._newest, self._failure, self._last_send = None, None, None
        self._finished.clear()
        # The CPUs this thread may use before it pins itself: a thread it starts inherits its set, so the planner
        # thread takes "all but the control CPU" from this, not from its own.
        allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        planner = threading.Thread(target=self._plan_until_finished, args=(allowed,), name="edgeloop-planner",
                                   daemon=True)
        switch_interval = sys.getswitchinterval()
        affinity = self._pin(loop.config.loop.control_cpu, allowed, alone=True)
        sys.setswitchinterval(GIL_SWITCH_S)
        started = time.perf_counter()
        planner.start()  # before the priority is raised: a new thread takes its creator's scheduling policy
        priority = None
        try:
            priority = raise_priority(loop.config.loop.control_priority)
            loop.schedule(self._command, period, deadline, duration_s, until, running=lambda: self._failure is None)
        finally:
            self._finished.set()
            planner.join()
            sys.setswitchinterval(switch_interval)
            restore_priority(priority)
            if affinity is not None:
                os.sched_setaffinity(0, affinity)
            self.run_s += time.perf_counter() - started
            self._flush_plan_use()
            loop._copy_source_counters()
            loop._copy_link_counters()
        if self._failure is not None:
            loop._stop_for(Decision(Act.STOP, f"the planner thread failed: {self._failure}"))
            raise self._failure

    def _command(self) -> None:
        """Read the state; send the newest plan's action for now, or a stop."""
        loop = self.loop
        now = time.perf_counter()
        loop._read_state(now)
        state = loop.state
        state_age_ms = None if state is None else (now - loop._state_seen) * 1000
        loop._note_outage(state_age_ms, now)
        trouble = loop.link.state_trouble()
        fits = loop._wrong_state_shape is None
        self._state_for_planner = StateSeen(state, loop._state_seen, fits, trouble)
        newest = self._newest
        plan = newest if isinstance(newest, TimedPlan) else None
        view = CommandView(state_fits=fits, state_age_ms=state_age_ms,
                           state_stamp_age_ms=None if state is None else (protocol.now_ns() - state.stamp) / 1e6,
                           state_trouble=trouble, planner_stop=newest if isinstance(newest, Decision) else None,
                           plan_age_ms=None if plan is None else (now - plan.captured_at) * 1000)
        decision = decide_command(view, state_timeout_ms=loop.config.link.state_timeout_ms,
                                  max_plan_age_ms=loop.config.loop.max_plan_age_ms)
        if decision.act is Act.STOP:
            # The plan in use stays so: commands from it after a brief stop count to it, and it is not recorded
            # a second time.
            loop._stop_for(decision)
        else:
            assert plan is not None and view.plan_age_ms is not None  # decide_command stops without one
            sent = loop._send_action(plan.action_at(now, loop.config.loop.interpolation), plan.stamp_capture)
            if sent is not None:
                self.plan_age_ms.add(view.plan_age_ms)
                first_use = plan.plan_id != self._plan_in_use
                self._count_plan_use(plan.plan_id)
                if loop.writers:
                    self._record(sent[0], plan, sent[1], first_use)
        self._note_send(time.perf_counter(), 1.0 / loop.config.link.command_hz)
        loop._copy_link_counters()

    def _count_plan_use(self, plan_id: int) -> None:
        """One more command from `plan_id`; a plan's count is kept when another takes over."""
        if plan_id != self._plan_in_use:
            self._flush_plan_use()
            self._plan_in_use = plan_id
        self._commands_from_plan += 1

    def _flush_plan_use(self) -> None:
        """Keep the count of the plan in use (another takes over, or the run ends)."""
        if self._plan_in_use is not None:
            self.commands_per_plan.add(self._commands_from_plan)
        self._plan_in_use, self._commands_from_plan = None, 0

    def _note_send(self, sent_at: float, period: float) -> None:
        if self._last_send is not None:
            interval_ms = (sent_at - self._last_send) * 1000
            self.send_interval_ms.add(interval_ms)
            self.jitter_ms.add(abs(interval_ms - period * 1000))
        self._last_send = sent_at

    def _record(self, seq: int, plan: TimedPlan, action: np.ndarray, first_use: bool) -> None:
        """The command; with the first command from a plan also what the plan came from (one sequence number)."""
        loop = self.loop
        with loop.telemetry.stage("record"), loop._record_lock:
            if first_use:
                loop._record_plan(seq, plan.frame, plan.state, (plan.latent, plan.result),
                                  {"plan_id": plan.plan_id, "planning": "async"})
            loop._record_command(seq, action)

    @staticmethod
    def _pin(cpu: int | None, allowed: set[int] | None, *, alone: bool) -> set[int] | None:
        """Pin the calling thread to `cpu` (alone) or to every CPU of `allowed` but it; the affinity it had before."""
        if cpu is None or allowed is None:
            return None
        before = os.sched_getaffinity(0)
        others = allowed - {cpu}
        os.sched_setaffinity(0, {cpu} if alone or not others else others)
        return before

    # -- the planner thread -------------------------------------------------------------------------------
    def _plan_until_finished(self, allowed: set[int] | None) -> None:
        loop = self.loop
        try:
            self._pin(loop.config.loop.control_cpu, allowed, alone=False)
            self.planner_cpus = os.sched_getaffinity(0) if allowed is not None else None
            next_plan = time.perf_counter()
            while not self._finished.is_set():
                wait = next_plan - time.perf_counter()
                if wait > 0 and self._finished.wait(wait):
                    break
                started = time.perf_counter()
                next_plan = max(next_plan + loop.config.loop.period_s, started)
                self._newest = self._plan(started)
                # Here, not in the command thread: a new frame's JPEG for the viewers costs milliseconds.
                loop._show_live_view()
        except BaseException as exc:  # raised by run() in the command thread, which stops the robot first
            self._failure = exc

    def _plan(self, now: float) -> TimedPlan | Decision:
        """Read the newest frame, take goals and config edits, and plan from that frame and the newest state."""
        loop = self.loop
        loop._read_frame(now)
        frame_age_ms = None if loop.frame is None else (now - loop._frame_seen) * 1000
        loop._take_goal_and_config(frame_age_ms)
        loop._copy_source_counters()
        seen = self._state_for_planner
        state = seen.state
        view = TickView(frame_age_ms=frame_age_ms, state_fits=seen.fits,
                        state_age_ms=None if state is None else (now - seen.seen_at) * 1000,
                        state_stamp_age_ms=None if state is None else (protocol.now_ns() - state.stamp) / 1e6,
                        state_trouble=seen.trouble, has_goal=loop.goal is not None, chunk_left=0)
        decision = decide(view, frame_timeout_ms=loop.config.source.frame_timeout_ms,
                          state_timeout_ms=loop.config.link.state_timeout_ms)
        if decision.act is Act.STOP:
            return decision
        frame = loop.frame
        assert frame is not None and state is not None  # decide() stops without either
        decision, planned = loop._plan(frame, state, loop._previous_action)
        if planned is None:
            return decision
        latent, result = planned
        actions = result.sequence.copy()
        actions.flags.writeable = False
        self.plans_made += 1
        return TimedPlan(next(self._plan_ids), actions, loop.planner.control_period_s, now, frame.stamp_ns, frame,
                         state, latent, result)

    # -- the run's summary --------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        config = self.loop.config
        commands_per_plan = self.commands_per_plan.summary()
        return {
            "command_hz": config.link.command_hz,
            "max_plan_age_ms": config.loop.max_plan_age_ms,
            "interpolation": config.loop.interpolation,
            "control_cpu": config.loop.control_cpu,
            "control_priority": config.loop.control_priority,
            "plans_per_s": self.plans_made / self.run_s if self.run_s > 0 else 0.0,
            "commands_per_s": self.loop.telemetry.counters["commands"] / self.run_s if self.run_s > 0 else 0.0,
            "plan_age_ms": self.plan_age_ms.summary(),
            "send_interval_ms": self.send_interval_ms.summary(),
            "jitter_ms": self.jitter_ms.summary(),
            "commands_per_plan": {"mean": self.commands_per_plan.mean, **commands_per_plan},
        }
