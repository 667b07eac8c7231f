"""Socket-level fuzzing (`edgeloop bench fuzz`, docs/reliability.md "Fuzzing"): malformed messages at every socket
the link listens on, each one counted, nothing derived from them, valid traffic afterwards.

The runtime's receiving sockets are fuzzed through the very classes the runtime's loop owns: its state SUB
(RuntimeLink) and frame SUB (ZmqFrameSource) connect, so a fake controller binds a PUB where they connect; its goal
PULL (GoalServer) binds, so a client PUSHes to it. The simulated controller runs as it does for a run (its scene,
its safety filter) and its command SUB is fuzzed by a PUB that connects. The conflating SUBs keep only the newest
message, so each malformed message is sent once the previous one was counted; the PUSH and the command PUB are
sent in batches that the receiver drains before the next.

Malformed messages are near-valid: a valid body of a type that belongs on the socket, changed (keys dropped,
values of the wrong type, NaN, infinities, integers beyond 64 bits or negative, a wrong version, extra keys and
containers, arrays of the wrong length, bytes truncated or changed), kept only when the decoder refuses it under
the socket's limit, plus messages over 8 MiB (and, on the connecting sockets, over ZeroMQ's own 64 MiB limit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import zmq

from runtime.goals import GoalServer
from runtime.link import protocol
from runtime.link.runtime_side import RuntimeLink
from runtime.sim.controller import SimControllerSettings, run_sim_controller
from runtime.sources.zmq_frames import ZmqFrameSource

ANY = "tcp://127.0.0.1:*"
_WAIT_S = 2.0  # for one message to be counted; longer, and it is reported as not counted
_OVERSIZED_WAIT_S = 15.0  # for one of 8 or 64 MiB, which a loaded machine can take seconds to carry
_BATCH = 200  # messages per batch on the non-conflating sockets
_WEIRD: list[Any] = [None, True, False, float("nan"), float("inf"), -float("inf"), -1, 2**63 - 1, 2**64 - 1,
                     -(2**63), 1e39, "", "x" * 5000, b"\x00" * 7, [], [0.5] * 2000, [[1]], [["a", None]],
                     {"k": [1, 2]}, {"image": {"width": 1}}, 1.5]


def _valid_bodies(stamp: int) -> dict[str, dict[str, Any]]:
    image = {"width": 4, "height": 4, "encoding": "bgr8", "data": bytes(48)}
    common = {"v": protocol.PROTOCOL_VERSION, "seq": 1}
    return {
        "command": common | {"type": "command", "action": [0.1, -0.1], "stamp_capture": stamp, "stamp_send": stamp,
                             "ttl_ms": 200.0, "session": "fuzz"},
        "stop": common | {"type": "stop", "stamp_send": stamp, "reason": "fuzz", "session": "fuzz"},
        "heartbeat": common | {"type": "heartbeat", "stamp_send": stamp, "sender": "fuzz"},
        "state": common | {"type": "state", "stamp": stamp, "q": [0.0, 0.0], "dq": [0.0, 0.0], "ee": [0.0, 0.0],
                           "stopped": True, "last_command_seq": -1},
        "frame": common | {"type": "frame", "stamp": stamp} | image,
        "goal": common | {"type": "goal", "stamp_send": stamp, "state": [0.1, 0.2], "image": image},
    }


def near_valid(kinds: tuple[str, ...], seed: int = 0) -> Iterator[bytes]:
    """Endless valid bodies of `kinds`, each changed a little: some still valid, most not."""
    rng = np.random.default_rng(seed)
    bodies = _valid_bodies(protocol.now_ns())
    while True:
        body = dict(bodies[kinds[rng.integers(len(kinds))]])
        for _ in range(rng.integers(1, 4)):
            change, keys = rng.integers(5), sorted(body)
            if change == 0:
                del body[keys[rng.integers(len(keys))]]
            elif change <= 2:
                body[keys[rng.integers(len(keys))]] = _WEIRD[rng.integers(len(_WEIRD))]
            elif change == 3:
                body[["extra", "v", "type", "capture", "image"][rng.integers(5)]] = _WEIRD[rng.integers(len(_WEIRD))]
            else:
                arrays = [key for key in keys if isinstance(body[key], list)]
                if arrays:
                    body[arrays[rng.integers(len(arrays))]] = [0.25] * int(rng.integers(0, 1500))
        payload = msgpack.packb(body, use_bin_type=True)
        damage = rng.integers(4)
        if damage == 1:
            payload = payload[: rng.integers(len(payload))]
        elif damage == 2:
            at = rng.integers(len(payload))
            payload = payload[:at] + bytes([rng.integers(256)]) + payload[at + 1:]
        yield payload


def malformed(kinds: tuple[str, ...], count: int, max_bytes: int, seed: int = 0) -> Iterator[bytes]:
    """`count` near-valid messages of `kinds` that the decoder refuses under `max_bytes`."""
    made = 0
    for payload in near_valid(kinds, seed):
        if made == count:
            return
        try:
            protocol.decode(payload, max_bytes)
        except protocol.ProtocolError:
            made += 1
            yield payload


def _oversized(transport: bool) -> list[bytes]:
    sizes = [protocol.MAX_MESSAGE_BYTES + 1] + ([protocol.TRANSPORT_MAX_BYTES + 1] if transport else [])
    return [b"\x00" * size for size in sizes]


def _wait(condition: Callable[[], bool], timeout_s: float = _WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
    return True


def _drain(receive: Callable[[], object | None], quiet_s: float = 0.2) -> None:
    """Receive until nothing has come for `quiet_s`."""
    last = time.monotonic()
    while time.monotonic() - last < quiet_s:
        if receive() is not None:
            last = time.monotonic()


def _receive_until(receive: Callable[[], object | None], counted: Callable[[], int], target: int,
                   wait_s: float = _WAIT_S) -> int:
    """Receive until counted() reaches target (or `wait_s` passes); how many receives handed a message out."""
    handed_out = 0
    deadline = time.monotonic() + wait_s
    while counted() < target and time.monotonic() < deadline:
        handed_out += receive() is not None
    return handed_out


def _report(name: str, sent: int, counted: int, seconds: float, derived: int, resumed: bool,
            counters: dict[str, int], uncounted: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"socket": name, "sent": sent, "counted": counted, "seconds": round(seconds, 1),
            "derived_from_bad_data": derived, "valid_traffic_resumed": resumed, "counters": counters,
            "uncounted": uncounted or []}


def _describe(index: int, payload: bytes) -> dict[str, Any]:
    """A message not counted in time, enough to replay it."""
    return {"index": index, "bytes": len(payload), "head": payload[:64].hex()}


def _publisher(context: zmq.Context[zmq.Socket[bytes]]) -> tuple[zmq.Socket[bytes], str]:
    publisher = context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(ANY)
    return publisher, publisher.getsockopt_string(zmq.LAST_ENDPOINT)


def _fuzz_conflating(name: str, publisher: zmq.Socket[bytes], valid: Callable[[], bytes],
                     receive: Callable[[], object | None], counted: Callable[[], int], count: int,
                     counters: Callable[[], dict[str, int]]) -> dict[str, Any]:
    """One message at a time (the socket keeps only the newest): sent, then received until counted."""
    if not _wait(lambda: (publisher.send(valid()), receive())[1] is not None, 10.0):
        raise RuntimeError(f"{name}: the fuzzed socket never connected")
    _drain(receive)  # valid messages still in flight from the connect check would count as derived
    payloads = [*malformed(("state", "heartbeat", "frame", "goal", "stop"), count, protocol.MAX_MESSAGE_BYTES),
                *_oversized(transport=True)]
    started, derived, first, held_back, uncounted = time.monotonic(), 0, counted(), 0, []
    for index, payload in enumerate(payloads):
        before = counted()  # per message: one lost would not hold up the rest
        wait_s = _WAIT_S if len(payload) <= protocol.MAX_MESSAGE_BYTES else _OVERSIZED_WAIT_S
        for attempt in range(2):
            # The second send releases a message ZeroMQ's conflating pipe held back and replaces it with the same
            # bytes (docs/reliability.md, "Fuzzing"); one not counted after both is reported.
            publisher.send(payload)
            derived += _receive_until(receive, counted, before + 1, wait_s)
            if counted() > before:
                held_back += attempt
                break
        else:
            uncounted.append(_describe(index, payload))
    seconds = time.monotonic() - started
    resumed = _wait(lambda: (publisher.send(valid()), receive())[1] is not None, 10.0)
    report = _report(name, len(payloads), counted() - first, seconds, derived, resumed, counters(), uncounted)
    return report | {"held_back_by_zeromq": held_back}


@contextmanager
def _sim_controller() -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    """The sim controller on its own thread, as `edgeloop controller sim` runs it; its counters when it ends."""
    stop, ready = threading.Event(), threading.Event()
    bound: dict[str, str] = {}
    result: dict[str, int] = {}

    def on_ready(endpoints: dict[str, str]) -> None:
        bound.update(endpoints)
        ready.set()

    def target() -> None:
        result.update(run_sim_controller(SimControllerSettings(command_endpoint=ANY, state_endpoint=ANY,
                                                               frame_endpoint=ANY), stop, on_ready))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    if not ready.wait(60):
        raise RuntimeError("the sim controller did not start")
    try:
        yield bound, result
    finally:
        stop.set()
        thread.join(30)


def _applied_seq(runtime: RuntimeLink) -> int:
    """The newest state's last_command_seq (-1 when none applied, or no state yet)."""
    deadline = time.monotonic() + _WAIT_S
    while time.monotonic() < deadline:
        state = runtime.latest_state()
        if state is not None:
            return state.last_command_seq
    return -1


def fuzz_sim_controller(count: int) -> dict[str, Any]:
    """The sim controller's command SUB: `count` malformed messages and one over 8 MiB, then valid commands."""
    with _sim_controller() as (endpoints, result), zmq.Context() as context:
        publisher = context.socket(zmq.PUB)
        publisher.setsockopt(zmq.LINGER, 0)
        publisher.connect(endpoints["command"])
        runtime = RuntimeLink(endpoints["command"], endpoints["state"], context=context)  # to read its state
        try:
            if not _wait(lambda: runtime.latest_state() is not None, 20.0):
                raise RuntimeError("sim controller: no state")
            time.sleep(0.5)  # the fuzzing PUB's connection is made by now
            payloads = [*malformed(("command", "stop", "heartbeat", "state"), count, protocol.MAX_CONTROL_BYTES),
                        *_oversized(transport=False)]
            started = time.monotonic()
            for first in range(0, len(payloads), _BATCH):
                for payload in payloads[first:first + _BATCH]:
                    publisher.send(payload)
                time.sleep(0.02)  # the controller drains a batch within a few of its 5 ms cycles
            seconds = time.monotonic() - started
            time.sleep(0.5)
            derived = int(_applied_seq(runtime) >= 0)  # a command applied since the start: from bad data
            resumed = _wait(lambda: (runtime.send_command(np.array([0.05, 0.0]), protocol.now_ns(), 200.0),
                                     _applied_seq(runtime))[1] >= 0, 10.0)
        finally:
            runtime.close()
            publisher.close()
    counted = result.get("bad_messages", 0) + result.get("non_finite", 0)
    counters = {key: result.get(key, 0) for key in ("bad_messages", "non_finite", "commands", "commands_applied")}
    return _report("sim controller command SUB", len(payloads), counted, seconds, derived, resumed, counters)


def fuzz_runtime(count: int) -> list[dict[str, Any]]:
    """The runtime's state SUB, frame SUB and goal PULL: `count` malformed messages each, and oversized ones."""
    reports = []
    with zmq.Context() as context:
        publisher, endpoint = _publisher(context)

        def valid_state() -> bytes:
            return protocol.encode(protocol.State(seq=0, stamp=protocol.now_ns(), q=np.zeros(2), dq=np.zeros(2),
                                                  ee=np.zeros(0), stopped=True, last_command_seq=-1))

        with RuntimeLink("tcp://127.0.0.1:9", endpoint, context=context) as link:
            reports.append(_fuzz_conflating(
                "runtime state SUB", publisher, valid_state, link.latest_state,
                lambda: link.counters["bad_messages"] + link.counters["state_reconnects"], count,
                lambda: {key: link.counters[key] for key in ("bad_messages", "state_reconnects", "states")}))
        publisher.close()

        publisher, endpoint = _publisher(context)
        frame = protocol.encode(protocol.Frame(seq=0, stamp=1, image=np.zeros((64, 64, 3), np.uint8)))
        source = ZmqFrameSource("zmq://fuzz", endpoint, context=context, min_image_size=(64, 64))
        try:
            reports.append(_fuzz_conflating(
                "runtime frame SUB", publisher, lambda: frame, lambda: source.read_latest(0.0),
                lambda: source.counters["bad_messages"] + source.counters["frame_reconnects"], count,
                lambda: dict(source.counters)))
        finally:
            source.close()
            publisher.close()
        reports.append(_fuzz_goals(context, count))
    return reports


def _fuzz_goals(context: zmq.Context[zmq.Socket[bytes]], count: int) -> dict[str, Any]:
    server = GoalServer(ANY, min_image_size=(4, 4))
    client = context.socket(zmq.PUSH)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(server.endpoint)
    valid = protocol.encode(protocol.Goal(seq=0, stamp_send=1, image=None, state=np.array([0.1, 0.2])))

    def counted() -> int:
        return server.bad_messages + server.counters["superseded_goals"]

    try:
        client.send(valid)
        if not _wait(lambda: server.receive() is not None, 10.0):
            raise RuntimeError("goal PULL: never connected")
        payloads = [*malformed(("goal", "frame", "state", "command"), count, protocol.MAX_MESSAGE_BYTES),
                    *_oversized(transport=False)]
        started, derived = time.monotonic(), 0
        for first in range(0, len(payloads), _BATCH):
            batch, before = payloads[first:first + _BATCH], counted()
            for payload in batch:
                client.send(payload)  # a PUSH waits at its high-water mark rather than dropping
            wait_s = _WAIT_S if max(map(len, batch)) <= protocol.MAX_MESSAGE_BYTES else _OVERSIZED_WAIT_S
            derived += _receive_until(server.receive, counted, before + len(batch), wait_s)
        seconds = time.monotonic() - started
        client.send(valid)
        resumed = _wait(lambda: server.receive() is not None, 10.0)
        return _report("runtime goal PULL", len(payloads), counted(), seconds, derived, resumed,
                       {"bad_goals": server.bad_messages, **server.counters})
    finally:
        client.close()
        server.close()


def run_fuzz(count: int) -> dict[str, Any]:
    """Every listening socket of the runtime and the sim controller, `count` malformed messages each."""
    started = time.monotonic()
    sockets = [*fuzz_runtime(count), fuzz_sim_controller(count)]
    return {"messages_per_socket": count, "sockets": sockets, "seconds": round(time.monotonic() - started, 1),
            "all_counted": all(entry["counted"] == entry["sent"] for entry in sockets),
            "nothing_derived": all(entry["derived_from_bad_data"] == 0 for entry in sockets),
            "all_resumed": all(entry["valid_traffic_resumed"] for entry in sockets)}
