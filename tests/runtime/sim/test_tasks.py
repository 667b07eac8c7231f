"""Each task's success and distance on hand-placed states, and experts that move what the task is about."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mujoco")

from runtime.sim.tasks import TASKS, open_task
from runtime.sim.tasks.push_t import TABLE_SIDE_M, PushT


def placed(task_name: str, **joints: float) -> tuple[object, np.ndarray]:
    task, scene = open_task(task_name)
    qpos = scene.qpos()
    for joint, value in joints.items():
        qpos[task.qpos_index(joint)] = value
    scene.close()
    return task, qpos


def moved(task: object, qpos: np.ndarray, **changes: float) -> np.ndarray:
    other = qpos.copy()
    for joint, change in changes.items():
        other[task.qpos_index(joint)] += change  # type: ignore[attr-defined]
    return other


def test_push_t_success_needs_pusher_position_and_angle_within_tolerance() -> None:
    task, goal = placed("push-t", t_x=0.03, t_y=-0.02, t_angle=0.4, pusher_x=-0.1, pusher_y=0.1)
    assert isinstance(task, PushT)
    tolerance_m = 20 / 512 * TABLE_SIDE_M
    assert task.success(goal, goal) and task.distance(goal, goal) == 0.0
    assert task.success(moved(task, goal, t_angle=math.pi / 10), goal)  # within π/9
    assert not task.success(moved(task, goal, t_angle=math.pi / 8), goal)  # 22.5° is beyond π/9 (20°)
    assert not task.success(moved(task, goal, t_angle=math.pi / 6), goal)
    assert not task.success(moved(task, goal, t_angle=-math.pi / 6), goal)
    assert task.success(moved(task, goal, t_angle=2 * math.pi), goal)  # angles wrap
    assert task.success(moved(task, goal, t_x=0.99 * tolerance_m), goal)
    assert not task.success(moved(task, goal, t_x=1.01 * tolerance_m), goal)
    assert not task.success(moved(task, goal, pusher_y=1.01 * tolerance_m), goal)
    assert task.distance(moved(task, goal, t_x=0.05), goal) == pytest.approx(0.05 / TABLE_SIDE_M)


def test_push_t_coverage_is_the_share_of_the_goal_t_covered() -> None:
    task, goal = placed("push-t", t_x=0.0, t_y=0.0, t_angle=0.7)
    assert isinstance(task, PushT)
    assert task.coverage(goal, goal) == pytest.approx(1.0)
    # Along the bar (x in the T's frame) by 1 cm: bar 11 of 12 cm and stem 2 of 3 cm still overlap.
    shift = 0.01 * np.array([math.cos(0.7), math.sin(0.7)])
    shifted = moved(task, goal, t_x=float(shift[0]), t_y=float(shift[1]))
    expected = (0.11 * 0.03 + 0.02 * 0.09) / (0.12 * 0.03 + 0.03 * 0.09)
    assert task.coverage(shifted, goal) == pytest.approx(expected, abs=0.01)
    # Turned half round about the bar's centre: only the bar covers the goal's bar.
    assert task.coverage(moved(task, goal, t_angle=math.pi), goal) == pytest.approx(0.0036 / 0.0063, abs=0.01)
    metrics = task.metrics(goal, goal)
    assert metrics == {"coverage": pytest.approx(1.0), "coverage_success": 1.0}


def test_reach_every_joint_within_005_rad_or_the_end_effector_within_5_cm() -> None:
    task, goal = placed("reach", shoulder=0.5, elbow=-1.0)
    assert task.success(moved(task, goal, shoulder=0.049, elbow=-0.049), goal)  # type: ignore[attr-defined]
    assert not task.success(moved(task, goal, shoulder=0.051), goal)  # type: ignore[attr-defined]
    assert task.distance(moved(task, goal, elbow=0.03), goal) == pytest.approx(0.03)  # type: ignore[attr-defined]
    by_hand, scene = open_task("reach", {"criterion": "end_effector"})
    scene.close()
    # 0.1 rad at the elbow moves the hand 0.25 m x 0.1 = 2.5 cm: within 5 cm, though not within 0.05 rad.
    assert by_hand.success(moved(by_hand, goal, elbow=0.1), goal)
    assert by_hand.distance(moved(by_hand, goal, elbow=0.1), goal) == pytest.approx(0.025, abs=0.001)
    assert not by_hand.success(moved(by_hand, goal, elbow=0.25), goal)


def test_two_room_success_within_16_of_224_of_the_side() -> None:
    task, goal = placed("two-room", agent_x=0.3, agent_y=-0.2)
    assert task.success(moved(task, goal, agent_x=0.99 * 16 / 224), goal)  # type: ignore[attr-defined]
    assert not task.success(moved(task, goal, agent_y=1.01 * 16 / 224), goal)  # type: ignore[attr-defined]


def test_arm_push_success_with_the_puck_within_2_cm() -> None:
    task, goal = placed("arm-push", puck_x=0.3, puck_y=0.1, shoulder=1.0)
    assert task.success(moved(task, goal, puck_x=0.019, shoulder=-1.0), goal)  # type: ignore[attr-defined]
    assert not task.success(moved(task, goal, puck_y=0.021), goal)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_experts_move_what_the_task_judges_and_resets_are_seeded(name: str) -> None:
    task, scene = open_task(name)
    distances = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        task.reset(scene, rng)
        start = scene.qpos()
        again = np.random.default_rng(seed)
        task.reset(scene, again)
        np.testing.assert_array_equal(scene.qpos(), start)  # the same seed, the same start
        expert = task.expert(rng)
        for _ in range(25):
            scene.apply(expert(scene))
            scene.step_control()
        distances.append(task.distance(scene.qpos(), start))
    scene.close()
    assert np.median(distances) > 0.0 and max(distances) > {"reach": 0.05, "two-room": 16 / 224,
                                                             "push-t": 0.04, "arm-push": 0.02}[name]


def test_an_unknown_task_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown task 'push-x'; expected one of reach, two-room, push-t"):
        open_task("push-x")


def test_two_room_training_data_shows_the_wall_stopping_the_agent_and_goal_experts_never_hit_it() -> None:
    task, scene = open_task("two-room")
    at_wall = {}
    for kind in ("expert", "data_expert"):
        rng = np.random.default_rng(5)
        task.reset(scene, rng)
        expert = getattr(task, kind)(rng)
        touching = 0
        for _ in range(400):
            action = expert(scene)
            scene.apply(action)
            scene.step_control()
            x, y = scene.qpos()[task.agent]  # type: ignore[attr-defined]
            # Against the wall (half thickness 0.02 + agent radius 0.04), away from the door, pushing into it.
            touching += abs(x) < 0.065 and abs(y) > 0.12 and x * action[0] < 0
        at_wall[kind] = touching
    scene.close()
    assert at_wall["data_expert"] > 10 and at_wall["expert"] < at_wall["data_expert"] / 3


def test_push_t_visual_state_has_no_seam_at_the_half_turn_and_arm_push_shows_the_puck() -> None:
    task, state = placed("push-t", t_x=0.03, t_y=-0.02, t_angle=math.pi - 1e-6, pusher_x=-0.1, pusher_y=0.1)
    across = moved(task, state, t_angle=-2 * math.pi + 2e-6)
    np.testing.assert_allclose(task.visual_state(state), task.visual_state(across), atol=1e-5)  # type: ignore[attr-defined]
    np.testing.assert_allclose(task.visual_state(state)[:4], [-0.1, 0.1, 0.03, -0.02])  # type: ignore[attr-defined]
    arm, qpos = placed("arm-push", puck_x=0.3, puck_y=0.1, shoulder=1.0, elbow=-0.5)
    np.testing.assert_allclose(arm.visual_state(qpos), [1.0, -0.5, 0.3, 0.1])  # type: ignore[attr-defined]
    reach, qpos = placed("reach")
    assert reach.visual_state(qpos) is None  # type: ignore[attr-defined]
