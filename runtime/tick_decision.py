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
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


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


def decide(view: TickView, *, frame_timeout_ms: float, state_timeout_ms: float) -> Decision:
    state_missing = view.state_fits and (view.state_age_ms is None or view.state_age_ms > state_timeout_ms)
    missing_state = Decision(Act.STOP, view.state_trouble or "no controller state", "missing_state")
    if not frame_is_fresh(view.frame_age_ms, frame_timeout_ms):
        # No state either: the controller is gone (it may be the camera too), not only the camera.
        return missing_state if state_missing else Decision(Act.STOP, "no fresh frame", "stale_frames")
    if not view.state_fits:  # counted as wrong_state_dim when each such state arrives
        return Decision(Act.STOP, "controller state does not fit the model")
    if state_missing:
        return missing_state
    if view.state_stamp_age_ms is not None and view.state_stamp_age_ms > state_timeout_ms:
        return Decision(Act.STOP, f"controller state stamped {view.state_stamp_age_ms:.0f} ms ago, more than the "
                                  f"{state_timeout_ms:g} ms state timeout (a delayed link, or clocks out of sync)",
                        "stale_state")
    if not view.has_goal:
        return Decision(Act.STOP, "no goal", "no_goal")
    return Decision(Act.PLAN if view.chunk_left == 0 else Act.SEND_NEXT)


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
