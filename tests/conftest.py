"""Shared fixtures: real ZeroMQ on loopback with ephemeral ports, and waiting on asynchronous outcomes."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import zmq

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    """A private context; every socket left open is closed without lingering at teardown."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    """wait_until(condition, timeout_s=5.0): poll `condition` until it holds; False if it never did.

    For asynchronous outcomes (a message crossing a socket): the bound is generous and only limits a
    failing test; nothing is asserted about how long it took.
    """

    def wait(condition: Callable[[], object], timeout_s: float = 5.0, interval_s: float = 0.01) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            if condition():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval_s)

    return wait
