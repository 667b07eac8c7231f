"""docs/examples/controller.c, written from docs/protocol.md alone, works with the runtime's link.

It is compiled with gcc against the system libzmq and msgpack-c (`make sysdeps` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from waiting import drive_until, wait_state

from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink
from runtime.link.security import LinkSecurity

SOURCE = Path(__file__).resolve().parents[3] / "docs" / "examples" / "controller.c"
ANY_PORT = "tcp://127.0.0.1:*"
WATCHDOG_MS = 200


@pytest.fixture(scope="module")
def controller_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: run `make sysdeps` (installs gcc, libzmq3-dev, libmsgpack-dev)")
    binary = tmp_path_factory.mktemp("foreign") / "controller"
    build = subprocess.run(
        [
            "gcc",
            "-std=c11",
            "-O2",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
            str(binary),
            str(SOURCE),
            "-lzmq",
            "-lmsgpackc",
            "-lm",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if build.returncode != 0:
        hint = ""
        if "zmq.h" in build.stderr or "msgpack.h" in build.stderr or "cannot find -l" in build.stderr:
            hint = "libzmq or msgpack-c development files are missing: run `make sysdeps`.\n"
        pytest.fail(f"{hint}gcc could not build {SOURCE}:\n{build.stderr}")
    return binary


@contextmanager
def _started(binary: Path, env: dict[str, str] | None = None) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    process = subprocess.Popen(
        [str(binary), ANY_PORT, ANY_PORT, str(WATCHDOG_MS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=None if env is None else os.environ | env,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready", ready
        yield process, ready
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture
def running(controller_binary: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    with _started(controller_binary) as started:
        yield started


def _stop(process: subprocess.Popen[str]) -> tuple[dict[str, Any], str]:
    """SIGTERM; the counters of its exit line and what it said on stderr."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    exit_line = json.loads(out.strip().splitlines()[-1])
    assert exit_line["event"] == "exit"
    counters: dict[str, Any] = exit_line["counters"]
    return counters, err


def test_c_controller_follows_commands_stops_and_watchdog(
    running: tuple[subprocess.Popen[str], dict[str, str]],
) -> None:
    process, endpoints = running
    with RuntimeLink(endpoints["command"], endpoints["state"]) as runtime:
        first = drive_until(runtime, lambda s: True)
        assert first.stopped and first.last_command_seq == -1
        np.testing.assert_array_equal(first.q, [0.0, 0.0])

        moving = drive_until(runtime, lambda s: s.q[0] > 0.1 and s.q[1] < -0.05, action=[1.0, -0.5])
        assert not moving.stopped and moving.last_command_seq >= 0
        np.testing.assert_array_equal(moving.dq, [1.0, -0.5])

        runtime.send_stop("test")
        held = drive_until(runtime, lambda s: s.stopped)
        later = drive_until(runtime, lambda s: s.seq > held.seq + 3)
        assert later.stopped and np.array_equal(later.q, held.q) and np.array_equal(later.dq, [0.0, 0.0])

        drive_until(runtime, lambda s: not s.stopped and s.q[0] > held.q[0], action=[1.0, 0.0])
        silent = drive_until(runtime, lambda s: s.stopped)  # no more commands: the watchdog holds it still
        assert silent.last_command_seq > moving.last_command_seq
        assert runtime.counters["bad_messages"] == 0  # everything the C side published decoded

    counters, _ = _stop(process)
    assert counters["stops"] == 1 and counters["watchdog_stops"] == 1
    assert counters["commands"] >= 2 and counters["bad_messages"] == 0
    assert counters["states_sent"] > 0


def test_c_controller_drops_and_counts_what_the_protocol_says_to_drop(
    running: tuple[subprocess.Popen[str], dict[str, str]], zmq_context: zmq.Context
) -> None:
    process, endpoints = running
    publisher = command_publisher(zmq_context, endpoints)
    with RuntimeLink("tcp://127.0.0.1:9", endpoints["state"]) as runtime:
        seq = send_until(publisher, runtime, lambda s: s.last_command_seq >= 0)
        bad = [
            b"garbage",
            msgpack.packb([1, 2]),
            command(90, v=2),
            command(91, v=True),
            command(92, ttl_ms=0),
            command(94, action="fast"),
            command(95, type="teleport"),
            protocol.encode(
                protocol.State(
                    seq=0, stamp=0, q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(0), stopped=True, last_command_seq=-1
                )
            ),
        ]
        wrong_dim = [command(96, action=[0.5]), command(97, action=[0.5, 0.5, 0.5])]
        expired = [command(98, stamp_send=protocol.now_ns() - 10**10)]
        stale = [command(0)]
        for payload in bad + wrong_dim + expired + stale:
            publisher.send(payload)
        publisher.send(command(99))  # a marker: once it is applied, everything before it was seen
        marked = drive_until(runtime, lambda s: s.last_command_seq == 99)
        assert not marked.stopped

    counters, _ = _stop(process)
    assert counters["bad_messages"] == len(bad)
    assert counters["wrong_dim"] == len(wrong_dim)
    assert counters["expired"] == len(expired)
    assert counters["stale_seq"] == len(stale)
    assert 2 <= counters["commands"] <= seq + 1  # those sent before the connection existed are lost


def command(seq: int, session: str | None = None, **changes: object) -> bytes:
    body = {
        "v": 1,
        "type": "command",
        "seq": seq,
        "action": [0.5, 0.5],
        "stamp_capture": 0,
        "stamp_send": protocol.now_ns(),
        "ttl_ms": 1000.0,
    }
    if session is not None:
        body["session"] = session
    return msgpack.packb(body | changes, use_bin_type=True)


def command_publisher(zmq_context: zmq.Context, endpoints: dict[str, str]) -> zmq.Socket:
    """A PUB connected to the controller's command socket, as a runtime's, without the runtime's checks."""
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(endpoints["command"])
    return publisher


def send_until(publisher: zmq.Socket, runtime: RuntimeLink, condition: Callable[[protocol.State], bool],
               session: str | None = None) -> int:
    """Commands seq 0, 1, ... until a state meets `condition` (PUB/SUB: the first are lost until the connection
    exists); returns the next seq."""
    seq = 0
    while not condition(drive_until(runtime, lambda s: True)):
        publisher.send(command(seq, session))
        seq += 1
    return seq


def test_c_controller_obeys_only_newer_commands_and_the_newest_session(
    running: tuple[subprocess.Popen[str], dict[str, str]], zmq_context: zmq.Context
) -> None:
    """seq 1000, then 3 and 1000 again: dropped. A new session starts again at 0 and the old one is refused."""
    process, endpoints = running
    publisher = command_publisher(zmq_context, endpoints)
    with RuntimeLink("tcp://127.0.0.1:9", endpoints["state"]) as runtime:
        send_until(publisher, runtime, lambda s: s.last_command_seq >= 0, "run-a")
        for payload in (command(1000, "run-a"), command(3, "run-a"), command(1000, "run-a")):
            publisher.send(payload)
        drive_until(runtime, lambda s: s.last_command_seq == 1000)
        publisher.send(command(0, "run-b"))
        drive_until(runtime, lambda s: s.last_command_seq == 0)
        publisher.send(command(2000, "run-a"))
        publisher.send(command(1, "run-b"))
        assert drive_until(runtime, lambda s: s.last_command_seq != 0).last_command_seq == 1
    counters, said = _stop(process)
    assert counters["stale_seq"] == 2 and counters["retired_session"] == 1
    assert "run-b" in said  # the change of session is logged


def test_c_controller_holds_still_at_once_on_a_non_finite_command(
    running: tuple[subprocess.Popen[str], dict[str, str]], zmq_context: zmq.Context
) -> None:
    """Not left to the watchdog: the robot is stopped when the command arrives, so the watchdog never fires."""
    process, endpoints = running
    publisher = command_publisher(zmq_context, endpoints)
    with RuntimeLink("tcp://127.0.0.1:9", endpoints["state"]) as runtime:
        seq = send_until(publisher, runtime, lambda s: not s.stopped, "run-a")  # connected and moving
        publisher.send(command(seq, "run-a", action=[0.5, float("nan")]))
        held = drive_until(runtime, lambda s: s.stopped)
        assert np.array_equal(held.dq, [0.0, 0.0])
        time.sleep(WATCHDOG_MS * 2 / 1000)  # long past the watchdog
    counters, _ = _stop(process)
    assert counters["non_finite"] == 1 and counters["watchdog_stops"] == 0 and counters["bad_messages"] == 0


def test_c_controller_with_curve_admits_only_its_allowlisted_runtime(controller_binary: Path) -> None:
    """Keys as Z85 text in the environment: the allowlisted runtime drives it; a stranger and a plaintext peer
    get nothing, and the stranger's key is counted."""
    controller_public, controller_secret = zmq.curve_keypair()
    runtime_public, runtime_secret = zmq.curve_keypair()
    stranger_public, stranger_secret = zmq.curve_keypair()
    env = {"EDGELOOP_CURVE_SECRET_KEY": controller_secret.decode(), "EDGELOOP_CURVE_CLIENTS":
           f"{zmq.curve_keypair()[0].decode()},{runtime_public.decode()}"}  # the second key on the list admits
    with _started(controller_binary, env) as (process, endpoints):
        secured = LinkSecurity(runtime_public, runtime_secret, server_key=controller_public)
        with RuntimeLink(endpoints["command"], endpoints["state"], security=secured) as runtime:
            moving = drive_until(runtime, lambda s: s.q[0] > 0.1, action=[1.0, 0.0])
            assert not moving.stopped
        stranger = LinkSecurity(stranger_public, stranger_secret, server_key=controller_public)
        for security in (stranger, None):
            with RuntimeLink(endpoints["command"], endpoints["state"], security=security) as outsider:
                for _ in range(50):  # a second of commands and listening: nothing gets through either way
                    outsider.send_command(np.array([-1.0, 0.0]), protocol.now_ns(), ttl_ms=500.0)
                    assert wait_state(outsider, 0.02) is None
        counters, said = _stop(process)
    assert counters["refused_unknown_key"] >= 1 and counters["commands"] >= 1 and counters["bad_messages"] == 0
    assert said.count(stranger_public.decode()) == 1, said  # logged once, however often it was refused
