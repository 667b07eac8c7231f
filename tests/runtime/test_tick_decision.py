"""The tick's decision on its own: every rule, and which wins when several apply."""

from __future__ import annotations

import dataclasses

import pytest

from runtime.tick_decision import Act, Decision, TickView, decide

TIMEOUTS = {"frame_timeout_ms": 200.0, "state_timeout_ms": 100.0}
READY = TickView(frame_age_ms=10.0, state_fits=True, state_age_ms=5.0, has_goal=True, chunk_left=0)


def test_everything_in_place_plans_when_no_chunk_is_left() -> None:
    assert decide(READY, **TIMEOUTS) == Decision(Act.PLAN)


@pytest.mark.parametrize("left", [1, 3])
def test_a_chunk_with_actions_left_sends_the_next_one_without_planning(left: int) -> None:
    assert decide(dataclasses.replace(READY, chunk_left=left), **TIMEOUTS) == Decision(Act.SEND_NEXT)


@pytest.mark.parametrize(("change", "reason", "counter"), [
    ({"frame_age_ms": None}, "no fresh frame", "stale_frames"),
    ({"frame_age_ms": 200.1}, "no fresh frame", "stale_frames"),
    ({"state_fits": False}, "controller state does not fit the model", None),
    ({"state_age_ms": None}, "no controller state", "missing_state"),
    ({"state_age_ms": 100.1}, "no controller state", "missing_state"),
    ({"has_goal": False}, "no goal", "no_goal"),
])
def test_each_missing_input_stops_with_its_reason_and_counter(change: dict[str, object], reason: str,
                                                              counter: str | None) -> None:
    for chunk_left in (0, 2):  # a chunk in progress never overrides a stop
        view = dataclasses.replace(READY, chunk_left=chunk_left, **change)  # type: ignore[arg-type]
        assert decide(view, **TIMEOUTS) == Decision(Act.STOP, reason, counter)


def test_ages_at_the_timeout_still_count_as_fresh() -> None:
    view = dataclasses.replace(READY, frame_age_ms=200.0, state_age_ms=100.0)
    assert decide(view, **TIMEOUTS).act is Act.PLAN


def test_the_first_rule_that_applies_wins() -> None:
    nothing = TickView(frame_age_ms=None, state_fits=False, state_age_ms=None, has_goal=False, chunk_left=0)
    assert decide(nothing, **TIMEOUTS).reason == "no fresh frame"
    assert decide(dataclasses.replace(nothing, frame_age_ms=1.0), **TIMEOUTS).reason == \
        "controller state does not fit the model"
    fits = dataclasses.replace(nothing, frame_age_ms=1.0, state_fits=True)
    assert decide(fits, **TIMEOUTS).reason == "no controller state"
    assert decide(dataclasses.replace(fits, state_age_ms=1.0), **TIMEOUTS).reason == "no goal"
