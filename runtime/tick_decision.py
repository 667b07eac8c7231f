"""What one control tick does, decided from what it saw: stop (and why), plan, or send the chunk's next action.

Pure: no I/O and no clock, so every rule is tested on its own (tests/runtime/test_tick_decision.py). The loop
(runtime/loop.py) reads the source, the link and the goal socket, builds a `TickView`, and carries out the
`Decision`. The rules, first match wins: no fresh frame, a controller state that does not fit the model, no
fresh state, no goal: stop with that reason; otherwise plan when the action chunk is used up, else send its
next action.
"""

from __future__ import annotations

import enum
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
    has_goal: bool
    chunk_left: int  # planned actions not sent yet (0: none, or the chunk is used up)


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str = ""  # the stop's reason, sent to the controller
    counter: str | None = None  # the telemetry counter the stop adds one to


def frame_is_fresh(frame_age_ms: float | None, frame_timeout_ms: float) -> bool:
    return frame_age_ms is not None and frame_age_ms <= frame_timeout_ms


def decide(view: TickView, *, frame_timeout_ms: float, state_timeout_ms: float) -> Decision:
    if not frame_is_fresh(view.frame_age_ms, frame_timeout_ms):
        return Decision(Act.STOP, "no fresh frame", "stale_frames")
    if not view.state_fits:  # counted as wrong_state_dim when each such state arrives
        return Decision(Act.STOP, "controller state does not fit the model")
    if view.state_age_ms is None or view.state_age_ms > state_timeout_ms:
        return Decision(Act.STOP, "no controller state", "missing_state")
    if not view.has_goal:
        return Decision(Act.STOP, "no goal", "no_goal")
    return Decision(Act.PLAN if view.chunk_left == 0 else Act.SEND_NEXT)
