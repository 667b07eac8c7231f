"""Training data from the simulated arm: scripted exploration episodes (MCAP) and held-out goal images.

The arm is stepped in-process, faster than real time. The exploration policy switches every few ticks
between behaviours so the recorded actions look both like smooth motions and like the jumpy samples a
sampling planner tries, and so the whole joint range is visited, including pushing against the limits.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from runtime.recording import RecordingWriter
from runtime.sim.arm import VELOCITY_LIMIT, SimArm

# Segment behaviours and how often each is chosen.
_MODES = ("reach", "wander", "jitter", "hold")
_MODE_WEIGHTS = np.array([0.45, 0.25, 0.2, 0.1])
_SEGMENT_TICKS = (8, 40)
# Reach targets may lie this far beyond a joint limit, so some reaches end pushing against it.
_TARGET_OVERSHOOT = 0.3


class ExplorationPolicy:
    """Joint-velocity commands from a random mix of reaching, smooth wandering, jitter and holding."""

    def __init__(self, rng: np.random.Generator, joint_limits: np.ndarray, control_period_s: float) -> None:
        self.rng = rng
        self.limits = np.asarray(joint_limits, dtype=np.float64)
        self.period = control_period_s
        self.ticks_left = 0
        self.mode = "hold"
        self.target = np.zeros(2)
        self.gain = 1.0
        self.noise = 0.0
        self.velocity = np.zeros(2)

    def _new_segment(self) -> None:
        self.mode = str(self.rng.choice(_MODES, p=_MODE_WEIGHTS))
        self.ticks_left = int(self.rng.integers(*_SEGMENT_TICKS, endpoint=True))
        low, high = self.limits[:, 0] - _TARGET_OVERSHOOT, self.limits[:, 1] + _TARGET_OVERSHOOT
        self.target = self.rng.uniform(low, high)
        self.gain = float(self.rng.uniform(1.5, 8.0))
        self.noise = float(self.rng.uniform(0.0, 0.6))
        self.velocity = self.rng.uniform(-VELOCITY_LIMIT, VELOCITY_LIMIT, size=2)

    def __call__(self, q: np.ndarray) -> np.ndarray:
        if self.ticks_left <= 0:
            self._new_segment()
        self.ticks_left -= 1
        if self.mode == "reach":
            action = self.gain * (self.target - q) + self.noise * self.rng.standard_normal(2)
        elif self.mode == "wander":
            # Ornstein-Uhlenbeck velocity: smooth, mean-reverting random motion (time constant ~0.5 s).
            theta = self.period / 0.5
            self.velocity += -theta * self.velocity + 1.2 * np.sqrt(theta) * self.rng.standard_normal(2)
            action = self.velocity
        elif self.mode == "jitter":
            action = self.rng.uniform(-VELOCITY_LIMIT, VELOCITY_LIMIT, size=2)
        else:
            action = 0.1 * self.noise * self.rng.standard_normal(2)
        return np.clip(action, -VELOCITY_LIMIT, VELOCITY_LIMIT)


def record_episodes(out_dir: Path, episodes: int, steps: int, seed: int, image_size: int = 64,
                    control_period_s: float = 0.05, name: str = "episode",
                    on_episode: Callable[[], None] | None = None) -> list[Path]:
    """Record `episodes` MCAP files of `steps` ticks each (`on_episode` after each); returns their paths.

    One file is `out_dir/<name>.mcap`; several are `out_dir/<name>_000.mcap`, ... Each tick holds the
    frame, the state measured with it and the action applied for the following control period.
    """
    if episodes < 1 or steps < 1:
        raise ValueError(f"record_episodes: episodes ({episodes}) and steps ({steps}) must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arm = SimArm(image_size=(image_size, image_size))
    period_ns = round(control_period_s * 1e9)
    paths: list[Path] = []
    try:
        for episode in range(episodes):
            path = out_dir / (f"{name}.mcap" if episodes == 1 else f"{name}_{episode:03d}.mcap")
            policy = ExplorationPolicy(rng, arm.joint_limits, control_period_s)
            arm.reset_to(arm.sample_configuration(rng, margin=0.0))
            start_ns = time.time_ns()
            with RecordingWriter(path) as writer:
                for tick in range(steps):
                    state = arm.state()
                    image = arm.render()
                    action = policy(state.q)
                    writer.write_tick(tick, start_ns + tick * period_ns, image, state.q, state.dq, action)
                    arm.command_velocity(action)
                    arm.step(control_period_s)
            paths.append(path)
            if on_episode is not None:
                on_episode()
    finally:
        arm.close()
    return paths


def make_goal_set(out_dir: Path, count: int, seed: int, image_size: int = 64) -> Path:
    """Render `count` goal configurations (arm at rest) to goal_NNN.png plus goals.json; returns the json path."""
    if count < 1:
        raise ValueError(f"make_goal_set: count ({count}) must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arm = SimArm(image_size=(image_size, image_size))
    goals = []
    try:
        for index in range(count):
            arm.reset_to(arm.sample_configuration(rng))
            state = arm.state()
            image_name = f"goal_{index:03d}.png"
            if not cv2.imwrite(str(out_dir / image_name), arm.render()):
                raise OSError(f"{out_dir / image_name}: could not write the goal image")
            goals.append({"image": image_name, "q": state.q.tolist(), "ee": state.ee.tolist()})
    finally:
        arm.close()
    goals_file = out_dir / "goals.json"
    goals_file.write_text(json.dumps({"image_size": image_size, "goals": goals}, indent=2) + "\n")
    return goals_file
