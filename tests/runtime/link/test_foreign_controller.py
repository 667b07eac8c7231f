"""docs/examples/controller.c, written from docs/protocol.md alone, works with the runtime's link.

It is compiled with gcc against the system libzmq and msgpack-c (`make sysdeps` installs them).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from waiting import drive_until

from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink

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


@pytest.fixture
def running(controller_binary: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    process = subprocess.Popen(
        [str(controller_binary), ANY_PORT, ANY_PORT, str(WATCHDOG_MS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
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


def _stop(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    exit_line = json.loads(out.strip().splitlines()[-1])
    assert exit_line["event"] == "exit"
    counters: dict[str, Any] = exit_line["counters"]
    return counters


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

    counters = _stop(process)
    assert counters["stops"] == 1 and counters["watchdog_stops"] == 1
    assert counters["commands"] >= 2 and counters["bad_messages"] == 0
    assert counters["states_sent"] > 0


def test_c_controller_drops_and_counts_what_the_protocol_says_to_drop(
    running: tuple[subprocess.Popen[str], dict[str, str]], zmq_context: zmq.Context
) -> None:
    process, endpoints = running
    publisher = zmq_context.socket(zmq.PUB)
    publisher.connect(endpoints["command"])

    def command(seq: int, **changes: object) -> bytes:
        body = {
            "v": 1,
            "type": "command",
            "seq": seq,
            "action": [0.5, 0.5],
            "stamp_capture": 0,
            "stamp_send": protocol.now_ns(),
            "ttl_ms": 1000.0,
        }
        return msgpack.packb(body | changes, use_bin_type=True)

    with RuntimeLink("tcp://127.0.0.1:9", endpoints["state"]) as runtime:
        seq = 0
        while drive_until(runtime, lambda s: True).last_command_seq < 0:  # PUB/SUB: send until connected
            publisher.send(command(seq))
            seq += 1
        bad = [
            b"garbage",
            msgpack.packb([1, 2]),
            command(90, v=2),
            command(91, v=True),
            command(92, ttl_ms=0),
            command(93, action=[0.5, float("nan")]),
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
        for payload in bad + wrong_dim + expired:
            publisher.send(payload)
        publisher.send(command(99))  # a marker: once it is applied, everything before it was seen
        marked = drive_until(runtime, lambda s: s.last_command_seq == 99)
        assert not marked.stopped

    counters = _stop(process)
    assert counters["bad_messages"] == len(bad)
    assert counters["wrong_dim"] == len(wrong_dim)
    assert counters["expired"] == len(expired)
    assert 2 <= counters["commands"] <= seq + 1  # those sent before the connection existed are lost
