"""Any scene as a controller process: a Scene (runtime/sim/scene.py) behind a ControllerLink, in real time.

It behaves like a real controller: it binds the protocol's sockets and passes the newest valid command through
the controller-side safety filter (runtime/link/safety_filter.py: the scene's action bounds, refused beyond
them; a rate limit of max_rate; stops and the watchdog) to the scene's actuators (each as its mode says). It
holds still on a stop or a refused command until the next command, holds still (and says so in its state) when
no valid command arrived for watchdog_ms, and streams state (the scene's proprio joints as q and dq, its sites
as ee) and rendered camera frames.
"""

from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np

from runtime.link import protocol
from runtime.link.controller_side import ControllerLink
from runtime.link.safety_filter import ActionLimits, ControllerSafety
from runtime.link.security import LinkSecurity
from runtime.sim.scene import Scene
from runtime.sim.scene_file import load_scene

# ~200 Hz loop: commands are picked up within 5 ms, and the process sleeps in between (shared 2-core box).
LOOP_PERIOD_S = 0.005
# After a stall (process paused, machine overloaded) physics skips ahead instead of replaying the backlog.
MAX_CATCH_UP_S = 0.1


@dataclass
class SimControllerSettings:
    command_endpoint: str = protocol.DEFAULT_COMMAND_ENDPOINT
    state_endpoint: str = protocol.DEFAULT_STATE_ENDPOINT
    frame_endpoint: str = protocol.DEFAULT_FRAME_ENDPOINT
    state_hz: float = 100.0
    frame_hz: float = 30.0
    scene: str = "planar-arm"  # a shipped scene's name or a scene file (docs/tasks.md)
    image_size: int | None = None  # square camera images of this side; None: the scene's camera size
    watchdog_ms: float = 300.0
    # Largest change of the applied action per second (action units/s): a backstop four times the runtime's default
    # safety.max_rate, so it only acts on a runtime that does not limit its own rate.
    max_rate: float = 160.0
    initial_q: tuple[float, ...] | None = None  # the proprio joints' positions at start; None: the scene's
    security: LinkSecurity | None = None  # CURVE key pair and client allowlist (docs/security.md); None: plaintext
    # True: physics follows the wall clock. False: each loop iteration advances physics by exactly one
    # loop period, so a slow iteration never makes the arm jump (simulated time then lags the wall clock).
    realtime: bool = True


class SimHandle:
    """In-process access to a running sim controller's scene, for the tools that stage and judge episodes
    (`edgeloop demo --task`): jobs run on the controller's thread between physics steps, and the newest
    physics positions are read without touching the scene. Robots have no such side channel; the link
    stays the protocol's."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[Scene], None], threading.Event]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._qpos: np.ndarray | None = None

    def run(self, job: Callable[[Scene], None], timeout_s: float = 10.0) -> None:
        """Run `job(scene)` on the controller's thread and wait for it."""
        done = threading.Event()
        self._jobs.put((job, done))
        if not done.wait(timeout_s):
            raise TimeoutError(f"the sim controller did not run a job within {timeout_s:g} s")

    def qpos(self) -> np.ndarray:
        """The scene's physics positions after the controller's last step (a copy)."""
        with self._lock:
            if self._qpos is None:
                raise RuntimeError("the sim controller has not stepped yet")
            return self._qpos.copy()

    def _serve(self, scene: Scene) -> None:
        while not self._jobs.empty():
            job, done = self._jobs.get()
            job(scene)
            done.set()
        with self._lock:
            self._qpos = scene.qpos()


class _Rate:
    """Fires at `hz` on the monotonic clock; after falling behind it restarts rather than bursting."""

    def __init__(self, hz: float, start: float) -> None:
        if not hz > 0:
            raise ValueError(f"rate must be positive, got {hz} Hz")
        self.period = 1.0 / hz
        self.next = start

    def due(self, now: float) -> bool:
        if now < self.next:
            return False
        self.next = max(self.next + self.period, now)
        return True


@contextmanager
def _stop_on_signals(stop_event: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set stop_event while inside; only the main thread may install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda _signum, _frame: stop_event.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Robot:
    """The scene as a controller drives it: the safety filter decides its actuator targets from commands and stops."""

    def __init__(self, arm: Scene, settings: SimControllerSettings) -> None:
        self.arm = arm
        self.settings = settings
        limits = ActionLimits(arm.action_low, arm.action_high, f"scene {settings.scene}: action bounds")
        self.safety = ControllerSafety(limits, settings.max_rate, settings.watchdog_ms)
        self.sim_origin = time.monotonic()  # wall time that corresponds to simulated time 0

    def apply(self, message: protocol.Command | protocol.Stop | None) -> None:
        actuation = self.safety.update(message)
        if actuation is None:
            return
        if actuation.action is None:
            self.arm.hold_still()
        else:
            self.arm.apply(actuation.action)

    def advance(self, now: float) -> None:
        """Step physics up to wall time `now` (realtime) or by one loop period."""
        if not self.settings.realtime:
            self.arm.step(LOOP_PERIOD_S)
            return
        behind = (now - self.sim_origin) - self.arm.time
        if behind > MAX_CATCH_UP_S:
            self.sim_origin += behind - MAX_CATCH_UP_S
            behind = MAX_CATCH_UP_S
        steps = int(behind / self.arm.timestep)
        if steps > 0:
            self.arm.step(steps * self.arm.timestep)


def run_sim_controller(
    settings: SimControllerSettings,
    stop_event: threading.Event | None = None,
    on_ready: Callable[[dict[str, str]], None] | None = None,
    handle: SimHandle | None = None,
) -> dict[str, int]:
    """Run until stop_event is set (or SIGINT/SIGTERM in the main thread); return the counters. With `handle`,
    its jobs run between physics steps and it holds the newest physics positions."""
    stop_event = stop_event or threading.Event()
    start = time.monotonic()
    state_rate, frame_rate = _Rate(settings.state_hz, start), _Rate(settings.frame_hz, start)
    with ExitStack() as cleanup:
        size = None if settings.image_size is None else (settings.image_size, settings.image_size)
        arm = Scene(load_scene(settings.scene), size)
        cleanup.callback(arm.close)
        if settings.initial_q is not None:
            arm.set_proprio_q(np.asarray(settings.initial_q, dtype=np.float64))
        robot = _Robot(arm, settings)
        link = ControllerLink(
            action_dim=arm.action_dim,
            command_endpoint=settings.command_endpoint,
            state_endpoint=settings.state_endpoint,
            frame_endpoint=settings.frame_endpoint,
            security=settings.security,
        )
        cleanup.callback(link.close)
        cleanup.enter_context(_stop_on_signals(stop_event))
        if on_ready is not None:
            on_ready({"command": link.command_endpoint, "state": link.state_endpoint,
                      "frame": link.frame_endpoint or ""})
        while not stop_event.is_set():
            robot.apply(link.poll(timeout_ms=LOOP_PERIOD_S * 1000))  # the poll is the loop's sleep
            now = time.monotonic()
            robot.advance(now)
            if handle is not None:
                handle._serve(arm)
            if state_rate.due(now):
                q, dq = arm.proprio()
                link.publish_state(q, dq, arm.site_positions(), not robot.safety.moving,
                                   robot.safety.last_command_seq)
            if frame_rate.due(now):
                stamp = protocol.now_ns()  # the capture instant is the physics state, before rendering
                link.publish_frame(arm.render(), stamp)
        return {**link.counters, **robot.safety.counters}
