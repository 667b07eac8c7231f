"""Waiting on the runtime side of a real link, for tests (the runtime itself only ever takes the newest state)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from runtime.link.protocol import State, now_ns
from runtime.link.runtime_side import RuntimeLink


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Whether `condition()` came true within `timeout_s` (checked every 20 ms)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_state(link: RuntimeLink, timeout_s: float) -> State | None:
    """The newest valid state received, waiting up to `timeout_s` for one; None if none came."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = link.latest_state()
        if state is not None or time.monotonic() >= deadline:
            return state
        time.sleep(0.001)


def drive_until(runtime: RuntimeLink, condition: Callable[[State], bool], action: list[float] | None = None,
                ttl_ms: float = 500.0) -> State:
    """Read states until one satisfies `condition`, sending `action` every ~20 ms as a planner would (if given)."""
    for _ in range(500):
        if action is not None:
            runtime.send_command(np.array(action), now_ns(), ttl_ms=ttl_ms)
        state = wait_state(runtime, 0.02)
        if state is not None and condition(state):
            return state
    raise AssertionError(f"no state satisfied the condition; runtime counters {runtime.counters}")


@contextlib.contextmanager
def reaped(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """The process, killed and waited for on the way out if it is still running (a test failed midway)."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def exit_line_after_sigterm(process: subprocess.Popen[str], timeout_s: float = 10.0) -> tuple[dict[str, Any], str]:
    """SIGTERM a controller process and wait for it: its exit line (stdout's last, JSON) and its stderr, having
    asserted it exited 0."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1]), err
