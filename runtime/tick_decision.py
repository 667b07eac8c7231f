"""What one control tick does, decided from what it saw: stop (and why), plan, or send the chunk's next action.

Pure: no I/O and no clock, so every rule is tested on its own (tests/runtime/test_tick_decision.py). The loop
(runtime/loop.py) reads the source, the link and the goal socket, builds a `TickView`, and carries out the
`Decision`. The rules of `decide`, first match wins: no fresh frame (counted as missing state when there is no
fresh state either: a controller that is also the camera has gone), a controller state that does not fit the
model, no fresh state by arrival (the reason says what the state stream carried instead, when it carried
anything), a state too old by its own stamp, no goal: stop with that reason; otherwise plan when the action
chunk is used up, else send its next action. After a plan, `judge_model_output` stops when the model's input
or output was not finite (the first such stage is named) and otherwise sends the new chunk's first action:
a plan that could only fall back to holding still is never sent as a command.

With asynchronous planning (runtime/async_control.py) the planner thread decides with `decide` whether to plan,
and the command thread decides each command with `decide_command`: the same state rules first, then the
planner's own stop if its newest verdict was one, then no plan yet or a plan older than `loop.max_plan_age_ms`
(counted as `stale_plans`); otherwise send the plan's action for now.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Protocol


class Act(enum.Enum):
    STOP = "stop"
    PLAN = "plan"  # plan from this tick's frame and state, then send the new chunk's first action
    SEND_NEXT = "send_next"  # send the next action of the chunk being executed, without planning


@dataclass(frozen=True)
class TickView:
    frame_age_ms: float | None  # since the newest frame arrived; None: no frame yet
    state_fits: bool  # the newest controller state has the model's proprio size
    state_age_ms: float | None  # since the newest fitting state arrived; None: none yet
    state_stamp_age_ms: float | None  # now minus that state's stamp, on this clock (< 0: the controller's is ahead)
    state_trouble: str | None  # what the state stream carried instead of a state since the last one, if anything
    has_goal: bool
    chunk_left: int  # planned actions not sent yet (0: none, or the chunk is used up)


class StateView(Protocol):
    """What a decision reads about the controller's state (a TickView or a CommandView)."""

    @property
    def state_fits(self) -> bool: ...
    @property
    def state_age_ms(self) -> float | None: ...
    @property
    def state_stamp_age_ms(self) -> float | None: ...
    @property
    def state_trouble(self) -> str | None: ...


@dataclass(frozen=True)
class CommandView:
    """What the command thread of asynchronous planning saw before one command."""

    state_fits: bool
    state_age_ms: float | None
    state_stamp_age_ms: float | None
    state_trouble: str | None
    planner_stop: Decision | None  # the planner thread's newest verdict when it was a stop (then no plan is newer)
    plan_age_ms: float | None  # since the newest plan's capture; None: no plan (since the last stop)


@dataclass(frozen=True)
class ModelOutput:
    """What a plan's model stages produced; a stage after a non-finite one does not run (None)."""

    input_finite: bool  # the proprio input [q, dq] is finite as float32 (a finite float64 state may not be)
    latent_finite: bool | None  # the encoder's latent
    plan_cost: float | None  # the best sampled plan's cost (inf: no candidate had a finite one)


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str = ""  # the stop's reason, sent to the controller
    counter: str | None = None  # the telemetry counter the stop adds one to


def frame_is_fresh(frame_age_ms: float | None, frame_timeout_ms: float) -> bool:
    return frame_age_ms is not None and frame_age_ms <= frame_timeout_ms


def _state_missing(view: StateView, state_timeout_ms: float) -> bool:
    return view.state_fits and (view.state_age_ms is None or view.state_age_ms > state_timeout_ms)


def _missing_state(view: StateView) -> Decision:
    return Decision(Act.STOP, view.state_trouble or "no controller state", "missing_state")


def _state_stop(view: StateView, state_timeout_ms: float) -> Decision | None:
    """The stop a state that does not fit, is missing or is stamped too long ago calls for; None: the state is fine."""
    if not view.state_fits:  # counted as wrong_state_dim when each such state arrives
        return Decision(Act.STOP, "controller state does not fit the model")
    if _state_missing(view, state_timeout_ms):
        return _missing_state(view)
    if view.state_stamp_age_ms is not None and view.state_stamp_age_ms > state_timeout_ms:
        return Decision(Act.STOP, f"controller state stamped {view.state_stamp_age_ms:.0f} ms ago, more than the "
                                  f"{state_timeout_ms:g} ms state timeout (a delayed link, or clocks out of sync)",
                        "stale_state")
    return None


def decide(view: TickView, *, frame_timeout_ms: float, state_timeout_ms: float) -> Decision:
    if not frame_is_fresh(view.frame_age_ms, frame_timeout_ms):
        # No state either: the controller is gone (it may be the camera too), not only the camera.
        return _missing_state(view) if _state_missing(view, state_timeout_ms) \
            else Decision(Act.STOP, "no fresh frame", "stale_frames")
    stop = _state_stop(view, state_timeout_ms)
    if stop is not None:
        return stop
    if not view.has_goal:
        return Decision(Act.STOP, "no goal", "no_goal")
    return Decision(Act.PLAN if view.chunk_left == 0 else Act.SEND_NEXT)


def decide_command(view: CommandView, *, state_timeout_ms: float, max_plan_age_ms: float) -> Decision:
    """Asynchronous planning: stop, or send the newest plan's action for now (SEND_NEXT)."""
    stop = _state_stop(view, state_timeout_ms)
    if stop is not None:
        return stop
    if view.planner_stop is not None:
        return view.planner_stop
    if view.plan_age_ms is None:
        return Decision(Act.STOP, "waiting for a plan")
    if view.plan_age_ms > max_plan_age_ms:
        return Decision(Act.STOP, f"newest plan captured {view.plan_age_ms:.0f} ms ago, more than "
                                  f"loop.max_plan_age_ms ({max_plan_age_ms:g} ms): the planner is late",
                        "stale_plans")
    return Decision(Act.SEND_NEXT)


def judge_model_output(output: ModelOutput) -> Decision:
    if not output.input_finite:
        return Decision(Act.STOP, "model input not finite: the controller state is beyond float32 range",
                        "non_finite_model")
    if output.latent_finite is False:
        return Decision(Act.STOP, "model output not finite: the encoder's latent", "non_finite_model")
    if output.plan_cost is not None and not math.isfinite(output.plan_cost):
        return Decision(Act.STOP, "model output not finite: no sampled plan has a finite cost (the predictor's "
                                  "latents)", "non_finite_model")
    return Decision(Act.SEND_NEXT)
