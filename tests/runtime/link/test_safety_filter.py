"""The controller's own safety between poll and the actuators: bounds refused, rate limited, stops and watchdog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.link import protocol
from runtime.link.safety_filter import MAX_RATE_INTERVAL_S, ActionLimits, Actuation, ControllerSafety

ROOT = Path(__file__).resolve().parents[3]
LIMITS = ActionLimits(np.array([-2.0, -1.0]), np.array([2.0, 1.0]))


def command(seq: int, *action: float) -> protocol.Command:
    return protocol.Command(seq=seq, action=np.array(action), stamp_capture=0, stamp_send=protocol.now_ns(),
                            ttl_ms=200.0)


def safety(max_rate: float = 1000.0) -> ControllerSafety:
    return ControllerSafety(LIMITS, max_rate=max_rate, watchdog_ms=100.0)


def test_a_command_within_the_limits_is_applied_as_it_is() -> None:
    filter_ = safety()
    actuation = filter_.update(command(0, 1.5, -0.5), now=10.0)
    assert isinstance(actuation, Actuation) and actuation.action is not None
    np.testing.assert_array_equal(actuation.action, [1.5, -0.5])
    assert filter_.moving and filter_.last_command_seq == 0 and filter_.counters["commands_applied"] == 1
    assert filter_.update(None, now=10.01) is None  # nothing new: what is in force stays


@pytest.mark.parametrize("action", [(2.5, 0.0), (0.0, -1.01), (float("nan"), 0.0), (0.0, float("inf"))])
def test_a_command_beyond_the_limits_is_refused_and_the_robot_holds_still_at_once(
        action: tuple[float, float], caplog: pytest.LogCaptureFixture) -> None:
    """Refused, not clipped: a sender that disagrees about the limits may disagree about the units too."""
    filter_ = safety()
    filter_.update(command(0, 1.0, 0.5), now=10.0)
    held = filter_.update(command(1, *action), now=10.03)
    assert held is not None and held.action is None and "command 1" in held.reason and "outside" in held.reason
    assert not filter_.moving and filter_.counters["out_of_bounds"] == 1
    assert filter_.last_command_seq == 0  # the refused command was never applied
    filter_.update(command(2, *action), now=10.06)
    assert sum("out_of_bounds" in record.getMessage() for record in caplog.records) == 1  # logged once
    resumed = filter_.update(command(3, 0.1, 0.1), now=10.09)
    assert resumed is not None and resumed.action is not None and filter_.moving


def test_float32_rounding_of_a_bound_is_clipped_not_refused() -> None:
    """A runtime that clipped to float32(-0.1) sends -0.10000000149: within the tolerance, applied at the bound."""
    filter_ = ControllerSafety(ActionLimits(np.array([-0.1]), np.array([0.1])), max_rate=1000.0, watchdog_ms=100.0)
    actuation = filter_.update(command(0, float(np.float32(-0.1))), now=10.0)
    assert actuation is not None and actuation.action is not None
    assert actuation.action[0] == -0.1 and filter_.counters["out_of_bounds"] == 0


def test_the_applied_action_changes_at_most_max_rate_times_the_time_between_commands() -> None:
    filter_ = safety(max_rate=10.0)
    first = filter_.update(command(0, 2.0, -1.0), now=10.0)  # from rest: at most 10 * 0.1 s
    assert first is not None and first.action is not None
    np.testing.assert_allclose(first.action, [10.0 * MAX_RATE_INTERVAL_S, -1.0])
    second = filter_.update(command(1, 2.0, -1.0), now=10.05)
    assert second is not None and second.action is not None
    np.testing.assert_allclose(second.action, [1.5, -1.0])
    third = filter_.update(command(2, -1.0, 1.0), now=10.06)
    assert third is not None and third.action is not None
    np.testing.assert_allclose(third.action, [1.4, -0.9])
    assert filter_.counters["rate_limited"] == 3 and filter_.counters["commands_applied"] == 3
    filter_.update(protocol.Stop(seq=3, stamp_send=0, reason="test"), now=10.07)
    after_stop = filter_.update(command(4, 0.05, 0.0), now=10.08)  # from rest again, within 10 * 0.01 s
    assert after_stop is not None and after_stop.action is not None
    np.testing.assert_allclose(after_stop.action, [0.05, 0.0])


def test_stops_hold_still_at_once_and_the_watchdog_after_silence_once() -> None:
    filter_ = safety()
    filter_.update(command(0, 1.0, 0.0), now=10.0)
    stopped = filter_.update(protocol.Stop(seq=1, stamp_send=0, reason="operator"), now=10.01)
    assert stopped is not None and stopped.action is None and stopped.reason == "stop: operator"
    assert filter_.counters["stops_applied"] == 1 and not filter_.moving
    filter_.update(command(2, 1.0, 0.0), now=10.02)
    assert filter_.update(None, now=10.1) is None  # 80 ms of silence: within the 100 ms watchdog
    silence = filter_.update(None, now=10.13)
    assert silence is not None and silence.action is None and "watchdog" in silence.reason
    assert filter_.update(None, now=10.5) is None  # already holding still: counted once per silence
    assert filter_.counters["watchdog_stops"] == 1


def test_limits_are_checked_and_read_from_a_manifest(tmp_path: Path) -> None:
    limits = ActionLimits.from_manifest(ROOT / "models" / "demo" / "manifest.json")
    np.testing.assert_array_equal(limits.low, [-2.0, -2.0])
    np.testing.assert_array_equal(limits.high, [2.0, 2.0])
    with pytest.raises(ValueError, match=r"where: high must exceed low at indices \[1\]"):
        ActionLimits(np.array([0.0, 1.0]), np.array([1.0, 1.0]), where="where")
    with pytest.raises(ValueError, match="where: low and high must be finite"):
        ActionLimits(np.array([-np.inf]), np.array([1.0]), where="where")
    with pytest.raises(ValueError, match=r"where: low has shape \(2,\), high \(1,\)"):
        ActionLimits(np.zeros(2), np.ones(1), where="where")
    with pytest.raises(ValueError, match="max_rate"):
        ControllerSafety(LIMITS, max_rate=0.0, watchdog_ms=100.0)
    broken = tmp_path / "model"
    shutil.copytree(ROOT / "models" / "demo", broken, ignore=shutil.ignore_patterns("*.onnx", "*.pt", "goals"))
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["action_high"] = [2.0]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"manifest\.json: action_high: expected 2 entries"):
        ActionLimits.from_manifest(broken / "manifest.json")


def test_a_command_of_another_dimension_is_refused() -> None:
    filter_ = safety()
    held = filter_.update(command(0, 0.1, 0.1, 0.1), now=10.0)
    assert held is not None and held.action is None and "3 values" in held.reason
    assert filter_.counters["out_of_bounds"] == 1
