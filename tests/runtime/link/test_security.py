"""CURVE on every socket, over real ZeroMQ on loopback: a secured pair talks; plaintext peers, unknown client keys
and clients holding the wrong server key are refused, counted and logged; bad key files refuse to start."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner
from waiting import exit_line_after_sigterm, reaped, wait_state

from runtime.cli.app import app
from runtime.goals import GoalError, GoalServer, send_goal
from runtime.link import protocol
from runtime.link.controller_side import ControllerLink
from runtime.link.runtime_side import RuntimeLink
from runtime.link.security import LinkSecurity, SecurityError, generate_keys, read_secret_key
from runtime.sources import open_source

ANY_PORT = "tcp://127.0.0.1:*"
WaitUntil = Callable[..., bool]
REFUSALS = ("refused_plaintext", "refused_unknown_key", "refused_handshake")


class Keys:
    """Key pairs written by generate_keys: the controller, the runtime, and a stranger nobody allowed."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pairs = {}
        for name in ("controller", "runtime", "stranger"):
            generate_keys(name, folder)
            self.pairs[name] = read_secret_key(folder / f"{name}.key_secret", name)

    def public(self, name: str) -> bytes:
        return self.pairs[name][0]

    def server(self, name: str, allowed: str = "runtime") -> LinkSecurity:
        """`name` binding, admitting `allowed`."""
        return LinkSecurity(*self.pairs[name], allowed_clients={self.public(allowed): allowed})

    def client(self, name: str, server: str = "controller") -> LinkSecurity:
        """`name` connecting, trusting `server`'s public key."""
        return LinkSecurity(*self.pairs[name], server_key=self.public(server))


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def controller(keys: Keys) -> Iterator[ControllerLink]:
    link = ControllerLink(action_dim=2, command_endpoint=ANY_PORT, state_endpoint=ANY_PORT, frame_endpoint=ANY_PORT,
                          security=keys.server("controller"))
    yield link
    link.close()


def _commands_arrive(runtime: RuntimeLink, controller: ControllerLink, wait_until: WaitUntil) -> bool:
    return wait_until(lambda: (runtime.send_command(np.zeros(2), 0, 1000.0), controller.poll(20))[1] is not None)


def _refusals(controller: ControllerLink) -> dict[str, int]:
    return {name: controller.counters[name] for name in REFUSALS}


def _refused_only(runtime: RuntimeLink, controller: ControllerLink, counter: str, target: int,
                  timeout_s: float = 10.0) -> None:
    """Drive the link until `counter` reaches target; nothing may get through either way meanwhile."""
    deadline = time.monotonic() + timeout_s
    while controller.counters[counter] < target and time.monotonic() < deadline:
        runtime.send_command(np.zeros(2), 0, 1000.0)
        assert controller.poll(20) is None, "a refused peer's command arrived"
        controller.publish_state(np.zeros(2), np.zeros(2), None, True, -1)
        assert runtime.latest_state() is None, "a refused peer read the controller's state"
    assert controller.counters[counter] >= target, controller.counters
    assert controller.counters["commands"] == 0


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_a_secured_pair_exchanges_commands_state_and_frames(
    controller: ControllerLink, keys: Keys, wait_until: WaitUntil
) -> None:
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint,
                     security=keys.client("runtime")) as runtime:
        assert _commands_arrive(runtime, controller, wait_until)
        seq = runtime.send_command(np.array([0.5, -0.5]), 7, 1000.0)
        polled: list[protocol.Command | protocol.Stop] = []
        assert wait_until(lambda: polled.append(m) is None if (m := controller.poll(20)) is not None else False)
        command = polled[0]
        assert isinstance(command, protocol.Command) and command.seq == seq
        np.testing.assert_array_equal(command.action, [0.5, -0.5])

        def state_arrives() -> bool:
            controller.publish_state(np.array([0.1, 0.2]), np.zeros(2), None, False, seq)
            return wait_state(runtime, 0.02) is not None

        assert wait_until(state_arrives)
    assert controller.frame_endpoint is not None
    with open_source("zmq:" + controller.frame_endpoint.removeprefix("tcp:"),
                     security=keys.client("runtime")) as frames:
        image = np.full((8, 8, 3), 7, dtype=np.uint8)

        def frame_arrives() -> bool:
            controller.publish_frame(image, protocol.now_ns())
            return frames.read_latest(0.02) is not None

        assert wait_until(frame_arrives)
    assert _refusals(controller) == dict.fromkeys(REFUSALS, 0)


def test_a_plaintext_peer_is_refused_counted_and_logged_once_per_socket(
    controller: ControllerLink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.link.security")
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint) as first:
        _refused_only(first, controller, "refused_plaintext", 2)  # one per socket at least
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint) as second:
        _refused_only(second, controller, "refused_plaintext", controller.counters["refused_plaintext"] + 2)
    said = _warnings(caplog, "without CURVE")
    assert sorted(line.split(":")[2].split(" ")[0] for line in said) == sorted(
        endpoint.rsplit(":", 1)[1] for endpoint in (controller.command_endpoint, controller.state_endpoint))
    assert controller.counters["refused_unknown_key"] == controller.counters["refused_handshake"] == 0


def test_an_unknown_client_key_is_refused_counted_and_logged_once(
    controller: ControllerLink, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.link.security")
    for _ in range(2):
        with RuntimeLink(controller.command_endpoint, controller.state_endpoint,
                         security=keys.client("stranger")) as stranger:
            _refused_only(stranger, controller, "refused_unknown_key", controller.counters["refused_unknown_key"] + 2)
    stranger_key = keys.public("stranger").decode()
    said = _warnings(caplog, stranger_key)
    assert len(said) == 1 and "not on the allowlist" in said[0] and "127.0.0.1" in said[0], said
    assert controller.counters["refused_plaintext"] == controller.counters["refused_handshake"] == 0


def test_a_client_holding_the_wrong_server_key_is_refused_and_counted(
    controller: ControllerLink, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="runtime.link.security")
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint,
                     security=keys.client("runtime", server="stranger")) as misled:
        _refused_only(misled, controller, "refused_handshake", 2)
    assert _warnings(caplog, "CURVE handshake that failed")
    assert controller.counters["refused_plaintext"] == controller.counters["refused_unknown_key"] == 0


def test_figures_ten_strangers_of_each_kind_all_refused_counted_and_nothing_crosses(
    controller: ControllerLink, keys: Keys, wait_until: WaitUntil
) -> None:
    """The figures docs/security.md quotes: peers of each kind in turn against one secured controller."""
    kinds = {"refused_plaintext": None, "refused_unknown_key": keys.client("stranger"),
             "refused_handshake": keys.client("runtime", server="stranger")}
    started = time.monotonic()
    for counter, security in kinds.items():
        for _ in range(10):
            with RuntimeLink(controller.command_endpoint, controller.state_endpoint, security=security) as peer:
                _refused_only(peer, controller, counter, controller.counters[counter] + 2)  # both its sockets
    refused = _refusals(controller)
    assert all(refused[counter] >= 20 for counter in kinds) and controller.counters["commands"] == 0
    with RuntimeLink(controller.command_endpoint, controller.state_endpoint,
                     security=keys.client("runtime")) as runtime:
        assert _commands_arrive(runtime, controller, wait_until)  # the admitted runtime still gets through
    print(f"figures: 30 peers (10 plaintext, 10 unknown keys, 10 holding the wrong server key), 2 sockets each, "
          f"in {time.monotonic() - started:.1f} s: refusals {refused}, 0 commands or states crossed; the "
          f"allowlisted runtime then commanded the controller")


def test_the_goal_socket_admits_only_allowlisted_clients(keys: Keys, wait_until: WaitUntil) -> None:
    server = GoalServer(ANY_PORT, keys.server("runtime", allowed="controller"))  # here: "controller" sends goals
    goal = protocol.Goal(seq=0, stamp_send=protocol.now_ns(), image=None, state=np.array([0.1, 0.2]))
    try:
        send_goal(server.endpoint, goal, 5.0, keys.client("controller", server="runtime"))
        received: list[protocol.Goal] = []
        assert wait_until(lambda: received.append(g) is None if (g := server.receive()) is not None else False)
        assert received[0].state is not None and np.array_equal(received[0].state, [0.1, 0.2])
        with pytest.raises(GoalError, match="admitting this client's key"):
            send_goal(server.endpoint, goal, 0.5, keys.client("stranger", server="runtime"))
        with pytest.raises(GoalError, match="no runtime took the goal"):
            send_goal(server.endpoint, goal, 0.5)  # plaintext
        assert wait_until(lambda: (server.receive(), server.counters)[1]["refused_unknown_key"] >= 1
                          and server.counters["refused_plaintext"] >= 1)
        assert server.receive() is None
    finally:
        server.close()


def test_key_files_that_cannot_be_used_are_refused_naming_the_setting_and_file(keys: Keys) -> None:
    secret = keys.folder / "runtime.key_secret"
    public = keys.folder / "runtime.key"
    with pytest.raises(SecurityError, match=f"sk: {keys.folder / 'none.key_secret'}: key file not found"):
        read_secret_key(keys.folder / "none.key_secret", "sk")
    with pytest.raises(SecurityError, match="holds no secret key"):
        read_secret_key(public, "sk")
    garbled = keys.folder / "garbled.key_secret"
    garbled.write_text(secret.read_text().replace("secret-key = \"", "secret-key = \"!!", 1))
    garbled.chmod(0o600)
    with pytest.raises(SecurityError, match=f"sk: {garbled}: the secret key is not a 40-character Z85"):
        read_secret_key(garbled, "sk")
    empty = keys.folder / "empty.key_secret"
    empty.write_text("nothing here\n")
    with pytest.raises(SecurityError, match="not a ZeroMQ key file"):
        read_secret_key(empty, "sk")
    secret.chmod(0o644)
    with pytest.raises(SecurityError, match="chmod 600"):
        read_secret_key(secret, "sk")


def test_keys_generate_writes_a_public_key_and_a_secret_only_its_owner_reads(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    made = CliRunner().invoke(app, ["keys", "generate", "robot", "--out", str(out)])
    assert made.exit_code == 0, made.output
    secret, public = out / "robot.key_secret", out / "robot.key"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) & stat.S_IROTH  # the public half is meant to be handed out
    read_secret_key(secret, "secret")  # a usable pair: its public key belongs to its secret key
    assert "secret-key" not in public.read_text()
    assert sorted(os.listdir(out)) == ["robot.key", "robot.key_secret"]  # no temporary files left
    before = secret.read_bytes()
    again = CliRunner().invoke(app, ["keys", "generate", "robot", "--out", str(out)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    assert secret.read_bytes() == before


def test_the_sim_controller_takes_the_same_keys_and_refuses_strangers(keys: Keys) -> None:
    args = ["--command-endpoint", ANY_PORT, "--state-endpoint", ANY_PORT, "--frame-endpoint", ANY_PORT,
            "--frame-hz", "5", "--secret-key", str(keys.folder / "controller.key_secret"),
            "--allowed-clients", str(keys.folder / "runtime.key")]
    with reaped(subprocess.Popen([sys.executable, "-m", "runtime.cli", "controller", "sim", *args],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)) as process:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        with RuntimeLink(ready["command"], ready["state"], security=keys.client("runtime")) as runtime:
            assert wait_state(runtime, 10.0) is not None
        with RuntimeLink(ready["command"], ready["state"], security=keys.client("stranger")) as stranger:
            assert wait_state(stranger, 1.0) is None
        with RuntimeLink(ready["command"], ready["state"]) as plaintext:
            assert wait_state(plaintext, 1.0) is None
        exit_line, err = exit_line_after_sigterm(process)
    counters = exit_line["counters"]
    assert counters["refused_unknown_key"] >= 1 and counters["refused_plaintext"] >= 1, counters
    assert keys.public("stranger").decode() in err
