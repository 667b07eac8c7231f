"""Open-loop scoring on recordings: plan from recorded frames toward a later frame, compare with what was done.

For each recording the goal is one of its frames (the last by default). From every `stride`-th frame before
it the planner plans toward that goal from a cold start, given the command recorded on the tick before
(for the action-rate term). Metrics, averaged over all planned frames:

- `action_error`: mean absolute difference between the planned first action and the recorded action, in
  normalized units (divided by half the action range), so 0 agrees and 2 is opposite bounds. Meaningful
  when the recording was driven toward its goal (teleoperation, a good controller), not for random motion.
- `goal_cost`: the planner's own cost of the sequence it chose (lower: it expects to get closer to the goal).
- `plan_ms`: median wall time of a plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from runtime.config import RunConfig
from runtime.evaluation.closed_loop import planner_for
from runtime.recording import read_episode
from runtime.world import load_world_model


def score_recordings(config: RunConfig, recordings: list[Path], *, goal_frame: int = -1,
                     stride: int = 10) -> dict[str, Any]:
    model = load_world_model(config)
    planner = planner_for(config.planner, model)
    half_range = (model.action_high - model.action_low) / 2.0
    errors: list[float] = []
    costs: list[float] = []
    plan_ms: list[float] = []
    for path in recordings:
        episode = read_episode(path)
        goal_index = _goal_index(path, goal_frame, len(episode))
        planner.set_goal(model.encode_goal_image(episode.frames[goal_index]))
        for t in range(0, goal_index, stride):
            latent = model.encode(episode.frames[t], np.concatenate([episode.q[t], episode.dq[t]]))
            planner.reset_warm_start()  # every frame is scored on its own, not after the previous plan
            previous = episode.actions[t - 1] if t > 0 else None
            result = planner.plan(latent, previous_action=previous)
            errors.append(float(np.mean(np.abs(result.action - episode.actions[t]) / half_range)))
            costs.append(result.cost)
            plan_ms.append(result.ms)
    return {
        "metrics": {"action_error": float(np.mean(errors)), "goal_cost": float(np.mean(costs)),
                    "plan_ms": float(np.median(plan_ms))},
        "details": {"frames": len(errors), "recordings": [str(p) for p in recordings]},
    }


def _goal_index(path: Path, goal_frame: int, frames: int) -> int:
    """The goal's frame index; a frame the recording does not have is refused, not wrapped around onto another."""
    if not -frames <= goal_frame < frames:
        raise ValueError(f"{path}: evaluation.goal_frame {goal_frame} is outside the recording's {frames} frames "
                         f"(give {-frames} to {frames - 1}; -1 is the last)")
    goal_index = goal_frame % frames
    if goal_index == 0:
        raise ValueError(f"{path}: goal frame {goal_frame} leaves no frame before it to plan from")
    return goal_index
