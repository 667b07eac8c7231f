"""Training data from a task: episodes of the task's expert, mixed with exploration, recorded as MCAP.

The expert (the task's `data_expert`) makes the states worth predicting (the T pushed, the door crossed, the
wall hit); segments of random actions in between show the model what actions the planner's samples will
try, so it is not trained on expert actions alone. Episodes are stepped in-process, faster than real time,
one control period per tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runtime.recording import RecordingWriter
from runtime.sim.tasks import open_task

RANDOM_SHARE = 0.3  # share of segments with uniformly random actions instead of the expert's
SEGMENT_TICKS = (5, 25)


def record_task_episodes(task_name: str, out_dir: Path, *, episodes: int, steps: int, seed: int,
                         name: str = "episode", image_size: int | None = None,
                         on_episode: Callable[[], None] | None = None) -> list[Path]:
    """Record `episodes` MCAP files of `steps` ticks each in the task's scene (`on_episode` after each); returns
    their paths."""
    if episodes < 1 or steps < 1:
        raise ValueError(f"record: episodes ({episodes}) and steps ({steps}) must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    task, scene = open_task(task_name, image_size=None if image_size is None else (image_size, image_size))
    period_ns = round(scene.spec.control_period_s * 1e9)
    paths = []
    try:
        for episode in range(episodes):
            rng = np.random.default_rng([seed, episode])
            task.reset(scene, rng)
            expert = task.data_expert(rng)
            random_ticks, segment_left = 0, 0
            path = out_dir / (f"{name}.mcap" if episodes == 1 else f"{name}_{episode:03d}.mcap")
            start_ns = time.time_ns()
            with RecordingWriter(path) as writer:
                for tick in range(steps):
                    if segment_left == 0:
                        segment_left = int(rng.integers(*SEGMENT_TICKS, endpoint=True))
                        random_ticks = segment_left if rng.random() < RANDOM_SHARE else 0
                    segment_left -= 1
                    expert_action = expert(scene)  # the expert keeps its own state through random segments
                    action = rng.uniform(scene.action_low, scene.action_high) if random_ticks > 0 else expert_action
                    random_ticks = max(0, random_ticks - 1)
                    q, dq = scene.proprio()
                    writer.write_tick(tick, start_ns + tick * period_ns, scene.render(), q, dq, action,
                                      task.visual_state(scene.qpos()))
                    scene.apply(action)
                    scene.step_control()
            paths.append(path)
            if on_episode is not None:
                on_episode()
    finally:
        scene.close()
    return paths
