"""What `edgeloop config validate` checks beyond the schema, without starting an engine or a socket.

The files a config names (model manifest and the files it lists, goal image or recording frame, camera
calibration, the link's CURVE key files) and the values that must fit the model (goal joint state, pinned
actions). Every problem is named by its config key; all are reported, not only the first.
"""

from __future__ import annotations

import numpy as np

from calibration.undistort import Undistorter
from perception.manifest import ManifestError, load_manifest
from planning.planner import check_pins
from planning.world_model import goal_state_problem
from runtime.config import RunConfig
from runtime.goals import GoalError, read_goal_image, recording_frame
from runtime.link.security import SecurityError


def preflight(config: RunConfig) -> list[str]:
    """Every problem `edgeloop run` would meet at start-up with this config's files and model; [] if none."""
    problems: list[str] = []
    try:
        config.link.load_security()
    except SecurityError as exc:
        problems.extend(str(exc).splitlines())
    goal = config.goal
    try:
        if goal.image is not None:
            read_goal_image(goal.image)
        elif goal.recording is not None and goal.frame is not None:
            recording_frame(goal.recording, goal.frame)
    except GoalError as exc:
        problems.append(str(exc))
    if config.calibration.camera is not None:
        try:
            Undistorter.from_file(config.calibration.camera)
        except (ValueError, OSError) as exc:
            problems.append(f"calibration.camera: {exc}")
    try:
        manifest = load_manifest(config.model.manifest)
    except ManifestError as exc:
        problems.append(f"model.manifest: {exc}")
        return problems  # the rest is checked against the model
    state_problem = None if goal.state is None else goal_state_problem(manifest.proprio_dim, len(goal.state))
    if state_problem is not None:
        problems.append(f"goal.state: {state_problem}")
    try:
        check_pins(config.planner.pinned, np.asarray(manifest.action_low), np.asarray(manifest.action_high))
    except ValueError as exc:
        problems.append(str(exc))
    return problems
