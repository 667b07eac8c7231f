"""`edgeloop bench link`: our link's round trip (command out, state back) beside a raw pyzmq echo of the same
bytes, in one run.

An echo process holds both: our ControllerLink (decode and check each command, encode and publish a state
naming it) and a bare SUB/PUB pair with the same socket types and options that answers each message with the
same state bytes, untouched. This process sends through our RuntimeLink (encode, publish; wait, decode, check
the state) or through a bare PUB/conflating SUB with the bytes encoded once in advance. Blocks of round trips
alternate between the two, so both see the same machine load; the ratio of medians is what our protocol costs
over ZeroMQ's own transport. A reply not in within HELD_BACK_MS was held back by ZeroMQ's conflating SUB
(docs/reliability.md, Fuzzing): that round trip is sent again, left out of the times and counted per side.
"""

from __future__ import annotations

import multiprocessing
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from runtime.link import protocol
from runtime.link.controller_side import ControllerLink
from runtime.link.runtime_side import RuntimeLink

REPLY_TIMEOUT_MS = 2000
# Loopback round trips take about 0.1 ms; one not answered by then waits for a next message that never comes.
HELD_BACK_MS = 200
ACTION_DIM = 2  # the demo arm's


def _raw_echo_sockets(context: zmq.Context) -> tuple[zmq.Socket, zmq.Socket]:
    """A SUB and PUB bound on ephemeral loopback ports, optioned as ControllerLink's are."""
    commands = context.socket(zmq.SUB)
    commands.setsockopt(zmq.LINGER, 0)
    commands.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
    commands.setsockopt(zmq.SUBSCRIBE, b"")
    commands.bind("tcp://127.0.0.1:*")
    states = context.socket(zmq.PUB)
    states.setsockopt(zmq.LINGER, 0)
    states.bind("tcp://127.0.0.1:*")
    return commands, states


def _endpoint(socket: zmq.Socket) -> str:
    endpoint = socket.getsockopt(zmq.LAST_ENDPOINT)
    return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def _echo(pipe: Connection, state_bytes: bytes) -> None:
    """The controller side: answer our link's commands with states and raw messages with `state_bytes`."""
    context = zmq.Context()
    link = ControllerLink(ACTION_DIM, command_endpoint="tcp://127.0.0.1:*", state_endpoint="tcp://127.0.0.1:*",
                          context=context)
    raw_commands, raw_states = _raw_echo_sockets(context)
    pipe.send((link.command_endpoint, link.state_endpoint, _endpoint(raw_commands), _endpoint(raw_states)))
    poller = zmq.Poller()
    poller.register(link.command_socket, zmq.POLLIN)
    poller.register(raw_commands, zmq.POLLIN)
    zero = np.zeros(ACTION_DIM)
    try:
        while not pipe.poll():
            ready = dict(poller.poll(100))
            if raw_commands in ready:
                raw_commands.recv()
                raw_states.send(state_bytes)
            if link.command_socket in ready:
                command = link.poll(0, readable=True)
                if isinstance(command, protocol.Command):
                    link.publish_state(command.action, zero, None, False, command.seq)
    finally:
        raw_commands.close()
        raw_states.close()
        link.close()
        context.term()


class _Ours:
    def __init__(self, command_endpoint: str, state_endpoint: str) -> None:
        self.link = RuntimeLink(command_endpoint, state_endpoint, state_timeout_ms=REPLY_TIMEOUT_MS)
        self.action = np.full(ACTION_DIM, 0.25)
        self.seq = -1

    def send(self) -> None:
        self.seq = self.link.send_command(self.action, protocol.now_ns(), ttl_ms=REPLY_TIMEOUT_MS)

    def answered(self, timeout_ms: float) -> bool:
        """The state naming the last command arrived within `timeout_ms`."""
        deadline = time.monotonic() + timeout_ms / 1000.0
        while self.link.wait_for_state((deadline - time.monotonic()) * 1000.0):
            state = self.link.latest_state()
            if state is not None and state.last_command_seq == self.seq:
                return True
        return False

    def close(self) -> None:
        self.link.close()


class _Raw:
    def __init__(self, command_endpoint: str, state_endpoint: str, command_bytes: bytes) -> None:
        self.context = zmq.Context()
        self.commands = self.context.socket(zmq.PUB)
        self.commands.setsockopt(zmq.LINGER, 0)
        self.commands.setsockopt(zmq.IMMEDIATE, 1)
        self.commands.connect(command_endpoint)
        self.states = self.context.socket(zmq.SUB)
        self.states.setsockopt(zmq.LINGER, 0)
        self.states.setsockopt(zmq.CONFLATE, 1)
        self.states.setsockopt(zmq.MAXMSGSIZE, protocol.TRANSPORT_MAX_BYTES)
        self.states.setsockopt(zmq.SUBSCRIBE, b"")
        self.states.connect(state_endpoint)
        self.command_bytes = command_bytes

    def send(self) -> None:
        self.commands.send(self.command_bytes)

    def answered(self, timeout_ms: float) -> bool:
        if not self.states.poll(int(timeout_ms), zmq.POLLIN):
            return False
        self.states.recv()
        return True

    def close(self) -> None:
        self.commands.close()
        self.states.close()
        self.context.term()


_Side = _Ours | _Raw


def _timed_round_trip(side: _Side, name: str) -> float | None:
    """Seconds from send to reply; None when ZeroMQ held the reply back and the round trip was sent again."""
    start = time.perf_counter()
    side.send()
    if side.answered(HELD_BACK_MS):
        return time.perf_counter() - start
    side.send()
    if not side.answered(REPLY_TIMEOUT_MS):
        raise TimeoutError(f"{name}: no reply within {HELD_BACK_MS} ms, nor within {REPLY_TIMEOUT_MS} ms of "
                           f"sending again")
    return None


def _until_answered(side: _Side, timeout_s: float = 10.0) -> None:
    """PUB/SUB drops what is sent before the subscription is in place: send until an answer comes."""
    deadline = time.monotonic() + timeout_s
    while True:
        side.send()
        if side.answered(HELD_BACK_MS):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no reply within {timeout_s:g} s of sending")


def _summary_us(samples: list[float], held_back: int) -> dict[str, float]:
    values = np.asarray(samples) * 1e6
    return {"p50_us": float(np.median(values)), "p90_us": float(np.percentile(values, 90)),
            "p99_us": float(np.percentile(values, 99)), "round_trips": len(values),
            "held_back_by_zeromq": held_back}


def bench_link(round_trips: int = 5000, block: int = 250) -> dict[str, Any]:
    """Median and tail round trip of our link and of the raw echo, alternating blocks of `block` round trips."""
    state = protocol.State(seq=0, stamp=protocol.now_ns(), q=np.full(ACTION_DIM, 0.25), dq=np.zeros(ACTION_DIM),
                           ee=np.zeros(0), stopped=False, last_command_seq=0)
    command = protocol.Command(seq=0, action=np.full(ACTION_DIM, 0.25), stamp_capture=protocol.now_ns(),
                               stamp_send=protocol.now_ns(), ttl_ms=REPLY_TIMEOUT_MS, session="0" * 16)
    spawn = multiprocessing.get_context("spawn")  # no forked copy of this process's ZeroMQ context
    parent, child = spawn.Pipe()
    echo = spawn.Process(target=_echo, args=(child, protocol.encode(state)), name="link echo", daemon=True)
    echo.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the link echo process did not start within 30 s")
        link_commands, link_states, raw_commands, raw_states = parent.recv()
        sides: dict[str, _Side] = {"edgeloop": _Ours(link_commands, link_states),
                 "raw_pyzmq": _Raw(raw_commands, raw_states, protocol.encode(command))}
        try:
            times: dict[str, list[float]] = {name: [] for name in sides}
            held_back = dict.fromkeys(sides, 0)
            for name, side in sides.items():
                _until_answered(side)
                for _ in range(block):  # warm-up, not counted
                    _timed_round_trip(side, name)
            while len(times["raw_pyzmq"]) < round_trips:
                for name, side in sides.items():
                    timed = len(times[name]) + block
                    while len(times[name]) < timed:
                        if (seconds := _timed_round_trip(side, name)) is None:
                            held_back[name] += 1
                        else:
                            times[name].append(seconds)
        finally:
            for side in sides.values():
                side.close()
    finally:
        parent.send("stop")
        echo.join(10)
        if echo.is_alive():
            echo.kill()
    summary = {name: _summary_us(samples, held_back[name]) for name, samples in times.items()}
    return {
        "transport": "tcp://127.0.0.1, PUB/SUB each way, conflating state SUB (as the link)",
        "command_bytes": len(protocol.encode(command)), "state_bytes": len(protocol.encode(state)),
        "block": block, "sides": summary,
        "ratio_p50": summary["edgeloop"]["p50_us"] / summary["raw_pyzmq"]["p50_us"],
        "ratio_p99": summary["edgeloop"]["p99_us"] / summary["raw_pyzmq"]["p99_us"],
    }
