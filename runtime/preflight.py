"""What `edgeloop config validate` checks beyond the schema, without starting an engine or a socket.

The files a config names (model manifest and the files it lists, goal image or recording frame, camera
calibration) and the values that must fit the model (goal joint state, pinned actions). Every problem is
named by its config key; all are reported, not only the first.
"""

from __future__ import annotations

import numpy as np

from calibration.undistort import Undistorter
from perception.manifest import ManifestError, load_manifest
from planning.planner import check_pins
from runtime.config import RunConfig
from runtime.goals import GoalError, read_goal_image, recording_frame


def preflight(config: RunConfig) -> list[str]:
    """Every problem `edgeloop run` would meet at start-up with this config's files and model; [] if none."""
    problems: list[str] = []
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
    if goal.state is not None:
        joints = manifest.proprio_dim // 2
        if manifest.proprio_dim % 2 or len(goal.state) != joints:
            problems.append(f"goal.state: {len(goal.state)} joint positions given; the model's proprio input "
                            f"[q, dq] ({manifest.proprio_dim} values) takes {joints}")
    try:
        check_pins(config.planner.pinned, np.asarray(manifest.action_low), np.asarray(manifest.action_high))
    except ValueError as exc:
        problems.append(str(exc))
    return problems
