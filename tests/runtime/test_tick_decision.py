"""The tick's decision on its own: every rule, and which wins when several apply."""

from __future__ import annotations

import dataclasses

import pytest

from runtime.tick_decision import (
    Act,
    CommandView,
    Decision,
    ModelOutput,
    TickView,
    decide,
    decide_command,
    judge_model_output,
)

TIMEOUTS = {"frame_timeout_ms": 200.0, "state_timeout_ms": 100.0}
READY = TickView(frame_age_ms=10.0, state_fits=True, state_age_ms=5.0, state_stamp_age_ms=6.0, state_trouble=None,
                 has_goal=True, chunk_left=0)
STAMP_STALE = "controller state stamped 100 ms ago, more than the 100 ms state timeout (a delayed link, or clocks " \
              "out of sync)"


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
    ({"state_age_ms": None, "state_trouble": "state messages malformed: 3 since 12:00:00.000"},
     "state messages malformed: 3 since 12:00:00.000", "missing_state"),
    ({"state_stamp_age_ms": 100.4}, STAMP_STALE, "stale_state"),
    ({"has_goal": False}, "no goal", "no_goal"),
])
def test_each_missing_input_stops_with_its_reason_and_counter(change: dict[str, object], reason: str,
                                                              counter: str | None) -> None:
    for chunk_left in (0, 2):  # a chunk in progress never overrides a stop
        view = dataclasses.replace(READY, chunk_left=chunk_left, **change)  # type: ignore[arg-type]
        assert decide(view, **TIMEOUTS) == Decision(Act.STOP, reason, counter)


def test_ages_at_the_timeout_still_count_as_fresh() -> None:
    view = dataclasses.replace(READY, frame_age_ms=200.0, state_age_ms=100.0, state_stamp_age_ms=100.0)
    assert decide(view, **TIMEOUTS).act is Act.PLAN


def test_a_state_stamped_ahead_of_this_clock_is_fresh_by_its_stamp() -> None:
    """The link drops states stamped further ahead than the timeout; within it, a clock ahead is no staleness."""
    assert decide(dataclasses.replace(READY, state_stamp_age_ms=-90.0), **TIMEOUTS).act is Act.PLAN


def test_what_the_state_stream_carried_only_matters_without_a_fresh_state() -> None:
    view = dataclasses.replace(READY, state_trouble="heartbeats but no state: 2 since 12:00:00.000")
    assert decide(view, **TIMEOUTS).act is Act.PLAN


def test_the_first_rule_that_applies_wins() -> None:
    nothing = TickView(frame_age_ms=None, state_fits=False, state_age_ms=None, state_stamp_age_ms=None,
                       state_trouble=None, has_goal=False, chunk_left=0)
    assert decide(nothing, **TIMEOUTS).reason == "no fresh frame"
    assert decide(dataclasses.replace(nothing, frame_age_ms=1.0), **TIMEOUTS).reason == \
        "controller state does not fit the model"
    fits = dataclasses.replace(nothing, frame_age_ms=1.0, state_fits=True)
    assert decide(fits, **TIMEOUTS).reason == "no controller state"
    stale = dataclasses.replace(fits, state_age_ms=1.0, state_stamp_age_ms=500.0)
    assert decide(stale, **TIMEOUTS).counter == "stale_state"
    assert decide(dataclasses.replace(stale, state_stamp_age_ms=1.0), **TIMEOUTS).reason == "no goal"


FINE = ModelOutput(input_finite=True, latent_finite=True, plan_cost=3.5)


def test_a_plan_from_finite_model_output_sends_its_first_action() -> None:
    assert judge_model_output(FINE) == Decision(Act.SEND_NEXT)


@pytest.mark.parametrize(("output", "reason"), [
    (ModelOutput(input_finite=False, latent_finite=None, plan_cost=None),
     "model input not finite: the controller state is beyond float32 range"),
    (ModelOutput(input_finite=True, latent_finite=False, plan_cost=None),
     "model output not finite: the encoder's latent"),
    (ModelOutput(input_finite=True, latent_finite=True, plan_cost=float("inf")),
     "model output not finite: no sampled plan has a finite cost (the predictor's latents)"),
    (ModelOutput(input_finite=True, latent_finite=True, plan_cost=float("nan")),
     "model output not finite: no sampled plan has a finite cost (the predictor's latents)"),
])
def test_non_finite_model_input_or_output_stops_with_its_own_reason(output: ModelOutput, reason: str) -> None:
    """Never a hold-still plan sent as a command: a stop, counted as non_finite_model."""
    assert judge_model_output(output) == Decision(Act.STOP, reason, "non_finite_model")


def test_the_first_non_finite_stage_is_the_one_named() -> None:
    everything = ModelOutput(input_finite=False, latent_finite=False, plan_cost=float("inf"))
    assert "input" in judge_model_output(everything).reason
    assert "encoder" in judge_model_output(dataclasses.replace(everything, input_finite=True)).reason


@pytest.mark.parametrize("trouble", [None, "heartbeats but no state: 2 since 12:00:00.000"])
def test_a_silent_controller_that_is_also_the_camera_is_missing_state_not_stale_frames(trouble: str | None) -> None:
    """Frames and states both gone: the controller is, so say that, not a camera fault."""
    gone = dataclasses.replace(READY, frame_age_ms=300.0, state_age_ms=150.0, state_trouble=trouble)
    assert decide(gone, **TIMEOUTS) == Decision(Act.STOP, trouble or "no controller state", "missing_state")
    never = dataclasses.replace(gone, frame_age_ms=None, state_age_ms=None, state_stamp_age_ms=None)
    assert decide(never, **TIMEOUTS).counter == "missing_state"
    assert decide(dataclasses.replace(gone, state_age_ms=5.0), **TIMEOUTS).counter == "stale_frames"


COMMAND_LIMITS = {"state_timeout_ms": 100.0, "max_plan_age_ms": 150.0}
FRESH_PLAN = CommandView(state_fits=True, state_age_ms=5.0, state_stamp_age_ms=6.0, state_trouble=None,
                         planner_stop=None, plan_age_ms=40.0)


def test_asynchronous_commands_go_out_from_a_fresh_plan_until_it_is_older_than_the_limit() -> None:
    assert decide_command(FRESH_PLAN, **COMMAND_LIMITS) == Decision(Act.SEND_NEXT)
    assert decide_command(dataclasses.replace(FRESH_PLAN, plan_age_ms=150.0), **COMMAND_LIMITS).act is Act.SEND_NEXT
    late = decide_command(dataclasses.replace(FRESH_PLAN, plan_age_ms=150.4), **COMMAND_LIMITS)
    assert late == Decision(Act.STOP, "newest plan captured 150 ms ago, more than loop.max_plan_age_ms (150 ms): "
                                      "the planner is late", "stale_plans")
    assert decide_command(dataclasses.replace(FRESH_PLAN, plan_age_ms=None), **COMMAND_LIMITS) == \
        Decision(Act.STOP, "waiting for a plan")


@pytest.mark.parametrize(("change", "reason", "counter"), [
    ({"state_fits": False}, "controller state does not fit the model", None),
    ({"state_age_ms": None}, "no controller state", "missing_state"),
    ({"state_age_ms": 100.1, "state_trouble": "heartbeats but no state: 2 since 12:00:00.000"},
     "heartbeats but no state: 2 since 12:00:00.000", "missing_state"),
    ({"state_stamp_age_ms": 100.4}, STAMP_STALE, "stale_state"),
])
def test_asynchronous_commands_stop_on_the_state_first_whatever_the_plan(change: dict[str, object], reason: str,
                                                                         counter: str | None) -> None:
    for plan in ({}, {"plan_age_ms": 500.0}, {"planner_stop": Decision(Act.STOP, "no goal", "no_goal")}):
        view = dataclasses.replace(FRESH_PLAN, **change, **plan)  # type: ignore[arg-type]
        assert decide_command(view, **COMMAND_LIMITS) == Decision(Act.STOP, reason, counter)


def test_the_planner_threads_stop_is_sent_as_it_said_it() -> None:
    said = Decision(Act.STOP, "no fresh frame", "stale_frames")
    assert decide_command(dataclasses.replace(FRESH_PLAN, planner_stop=said, plan_age_ms=None),
                          **COMMAND_LIMITS) == said
