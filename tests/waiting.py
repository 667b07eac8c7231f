"""Waiting on the runtime side of a real link, for tests (the runtime itself only ever takes the newest state)."""

from __future__ import annotations

import time

from runtime.link.protocol import State
from runtime.link.runtime_side import RuntimeLink


def wait_state(link: RuntimeLink, timeout_s: float) -> State | None:
    """The newest valid state received, waiting up to `timeout_s` for one; None if none came."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = link.latest_state()
        if state is not None or time.monotonic() >= deadline:
            return state
        time.sleep(0.001)
