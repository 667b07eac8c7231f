"""Goals: from config (image, recording frame, joint state), over ZeroMQ while running, and the goal CLI verbs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest
import zmq
from test_loop import ANY, MANIFEST, ROOT, SimControllerThread, loop_config
from typer.testing import CliRunner

from perception.manifest import load_manifest
from planning.world_model import WorldModel
from runtime.cli.app import app
from runtime.config import ConfigError, GoalSection, load_config
from runtime.goals import GoalError, GoalServer, goal_from_config, recording_frame, send_goal
from runtime.link import protocol
from runtime.loop import ControlLoop
from runtime.recording import RecordingWriter

GOALS = [ROOT / "models" / "demo" / "goals" / f"goal_00{i}.png" for i in range(3)]


@pytest.fixture(scope="module")
def world_model() -> WorldModel:
    return WorldModel(load_manifest(MANIFEST))


def _image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return image


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    """An MCAP recording whose camera frames are the first three goal images, in order."""
    path = tmp_path / "goals.mcap"
    with RecordingWriter(path) as writer:
        for seq, goal in enumerate(GOALS):
            writer.write_tick(seq, 1_000 + seq, _image(goal), np.zeros(2), np.zeros(2), np.zeros(2))
    return path


def _one_image_folder(tmp_path: Path, image: Path) -> Path:
    folder = tmp_path / "view"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame.png"), _image(image))
    return folder


# -- the protocol's goal message ----------------------------------------------------------------------------
def test_capture_goal_round_trips_and_excludes_an_image() -> None:
    sent = protocol.Goal(seq=4, stamp_send=9, image=None, state=np.array([0.1, 0.2]), capture=True)
    received = protocol.decode(protocol.encode(sent))
    assert isinstance(received, protocol.Goal)
    assert received.capture and received.image is None and received.state is not None
    assert np.allclose(received.state, [0.1, 0.2])
    only_capture = protocol.decode(protocol.encode(protocol.Goal(seq=5, stamp_send=9, image=None, state=None,
                                                                 capture=True)))
    assert isinstance(only_capture, protocol.Goal) and only_capture.capture
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(protocol.ProtocolError, match="'capture' and 'image' exclude each other"):
        protocol.encode(protocol.Goal(seq=0, stamp_send=0, image=image, state=None, capture=True))
    body = {"v": 1, "type": "goal", "seq": 0, "stamp_send": 0, "capture": 1}
    with pytest.raises(protocol.ProtocolError, match="field 'capture' must be bool"):
        protocol.decode(msgpack.packb(body))


# -- goals from the config ----------------------------------------------------------------------------------
def test_goal_from_a_recording_frame_with_a_state(world_model: WorldModel, recording: Path) -> None:
    section = load_config(None, [f"goal.recording={recording}", "goal.frame=2", "goal.state=[0.4, -0.3]"]).goal
    goal = goal_from_config(section, world_model)
    assert goal is not None and goal.visual is not None and goal.state is not None
    assert np.allclose(goal.visual, world_model.encode_goal_image(_image(GOALS[2])), atol=1e-6)
    assert np.allclose(goal.state, world_model.encode_goal_state(np.array([0.4, -0.3])), atol=1e-6)
    assert not np.allclose(goal.visual, world_model.encode_goal_image(_image(GOALS[1])), atol=1e-3)


def test_state_goal_is_the_proprio_latent_of_the_held_still_state(world_model: WorldModel) -> None:
    section = load_config(None, ["goal.state=[0.5, 0.25]"]).goal
    assert section.image is None  # naming a state drops the default image
    goal = goal_from_config(section, world_model)
    assert goal is not None and goal.visual is None and goal.state is not None
    # The same as encoding a real frame with proprio [q, dq = 0]: the proprio part ignores the image.
    frame = _image(GOALS[0])
    latent = world_model.encode(frame, np.array([0.5, 0.25, 0.0, 0.0], dtype=np.float32))
    assert np.allclose(goal.state, latent[world_model.visual_dim:], atol=1e-5)
    moving = world_model.encode(frame, np.array([0.5, 0.25, 1.0, 0.0], dtype=np.float32))
    assert not np.allclose(goal.state, moving[world_model.visual_dim:], atol=1e-3)
    with pytest.raises(GoalError, match=r"goal\.state: .*3 joint positions given.*takes 2"):
        goal_from_config(GoalSection(image=None, state=[0.1, 0.2, 0.3]), world_model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["goal.image=a.png", "goal.recording=r.mcap", "goal.frame=1"], "either 'image' or 'recording'"),
        (["goal.image=null", "goal.recording=r.mcap"], "'recording' needs 'frame'"),
        (["goal.frame=1"], "'frame' needs 'recording'"),
        (["goal.image=null", "goal.recording=r.mcap", "goal.frame=-1"], r"goal\.frame"),
        (["goal.state=[0.1, .nan]"], r"goal\.state: .*finite"),
        (["goal.state=[]"], r"goal\.state"),
        (["goal.view=a.png"], r"goal\.view: unknown key"),
    ],
)
def test_bad_goal_sections_are_refused_naming_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_goal_files_that_cannot_be_used_are_named(world_model: WorldModel, recording: Path,
                                                  tmp_path: Path) -> None:
    missing = tmp_path / "missing.png"
    with pytest.raises(GoalError, match=f"goal.image: {missing}: missing or not a readable image"):
        goal_from_config(GoalSection(image=missing), world_model)
    with pytest.raises(GoalError, match=f"goal.recording: {recording}: has 3 camera frame\\(s\\); frame 7"):
        goal_from_config(GoalSection(image=None, recording=recording, frame=7), world_model)
    not_mcap = tmp_path / "notes.mcap"
    not_mcap.write_text("not a recording")
    with pytest.raises(GoalError, match=f"goal.recording: {not_mcap}: not a readable MCAP"):
        goal_from_config(GoalSection(image=None, recording=not_mcap, frame=0), world_model)


# -- goals over ZeroMQ while the loop runs ------------------------------------------------------------------
@pytest.fixture
def running(tmp_path: Path) -> Iterator[ControlLoop]:
    """The loop against the sim controller's state, seeing one fixed view (GOALS[2]) from an image folder."""
    controller = SimControllerThread()
    view = _one_image_folder(tmp_path, GOALS[2])
    loop = ControlLoop(loop_config(controller.endpoints, tmp_path, f"source.uri=images:{view}"))
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 60.0}, daemon=True)
    runner.start()
    try:
        yield loop
    finally:
        loop.stop_requested.set()
        runner.join(10)
        loop.close()
        controller.stop()


def test_goal_messages_switch_the_goal_while_running(running: ControlLoop, world_model: WorldModel,
                                                     wait_until: Callable[..., bool]) -> None:
    loop, counters = running, running.telemetry.counters
    assert loop.goal_endpoint is not None and loop.goal_endpoint != ANY
    assert wait_until(lambda: counters["commands"] > 3, 30)
    assert loop.planner.goal is not None and loop.planner.goal.visual is not None
    assert np.allclose(loop.planner.goal.visual, world_model.encode_goal_image(_image(GOALS[0])), atol=1e-6)

    # An image goal.
    send_goal(loop.goal_endpoint, protocol.Goal(seq=0, stamp_send=protocol.now_ns(), image=_image(GOALS[1]),
                                                state=None))
    assert wait_until(lambda: counters["goals"] == 1, 10)
    assert np.allclose(loop.planner.goal.visual, world_model.encode_goal_image(_image(GOALS[1])), atol=1e-6)
    assert loop.planner.goal.state is None

    # A joint-state goal replaces the whole goal.
    send_goal(loop.goal_endpoint, protocol.Goal(seq=1, stamp_send=protocol.now_ns(), image=None,
                                                state=np.array([0.3, -0.2])))
    assert wait_until(lambda: counters["goals"] == 2, 10)
    assert loop.planner.goal.visual is None
    assert np.allclose(loop.planner.goal.state, world_model.encode_goal_state(np.array([0.3, -0.2])), atol=1e-6)

    # Capture: the runtime's current view (the folder's one image) becomes the goal view.
    send_goal(loop.goal_endpoint, protocol.Goal(seq=2, stamp_send=protocol.now_ns(), image=None, state=None,
                                                capture=True))
    assert wait_until(lambda: counters["goals"] == 3, 10)
    assert np.allclose(loop.planner.goal.visual, world_model.encode_goal_image(_image(GOALS[2])), atol=1e-6)
    assert loop.goal is not None and "captured" in loop.goal.description
    commands = counters["commands"]
    assert wait_until(lambda: counters["commands"] > commands + 3, 10), "the loop stopped commanding"


def test_bad_goal_messages_are_dropped_and_counted(running: ControlLoop, wait_until: Callable[..., bool],
                                                   zmq_context: zmq.Context) -> None:
    loop, counters = running, running.telemetry.counters
    assert loop.goal_endpoint is not None
    assert wait_until(lambda: counters["commands"] > 3, 30)
    goal_before = loop.planner.goal
    push = zmq_context.socket(zmq.PUSH)
    push.connect(loop.goal_endpoint)
    state = protocol.State(seq=0, stamp=0, q=np.zeros(2), dq=np.zeros(2), ee=np.zeros(0), stopped=True,
                           last_command_seq=-1)
    bad = [
        b"\xc1 not msgpack",
        protocol.encode(state),  # a valid message of the wrong type
        msgpack.packb({"v": 1, "type": "goal", "seq": 0, "stamp_send": 0}),  # names no goal
        msgpack.packb({"v": 2, "type": "goal", "seq": 0, "stamp_send": 0, "state": [0.1, 0.2]}),
    ]
    for payload in bad:
        push.send(payload)
    assert wait_until(lambda: counters["bad_goals"] == len(bad), 10)
    # Valid as a message, unusable by this model: three joints for a two-joint arm.
    push.send(protocol.encode(protocol.Goal(seq=1, stamp_send=0, image=None, state=np.array([0.1, 0.2, 0.3]))))
    assert wait_until(lambda: counters["bad_goals"] == len(bad) + 1, 10)
    assert counters["goals"] == 0 and loop.planner.goal is goal_before
    # The loop carries on and still takes a good goal.
    push.send(protocol.encode(protocol.Goal(seq=2, stamp_send=0, image=None, state=np.array([0.1, 0.2]))))
    assert wait_until(lambda: counters["goals"] == 1, 10)
    commands = counters["commands"]
    assert wait_until(lambda: counters["commands"] > commands + 3, 10)


def test_a_loop_without_a_goal_holds_still_until_one_arrives(tmp_path: Path,
                                                             wait_until: Callable[..., bool]) -> None:
    controller = SimControllerThread()
    view = _one_image_folder(tmp_path, GOALS[1])
    loop = ControlLoop(loop_config(controller.endpoints, tmp_path, f"source.uri=images:{view}", "goal.image=null"))
    runner = threading.Thread(target=loop.run, kwargs={"duration_s": 60.0}, daemon=True)
    runner.start()
    counters = loop.telemetry.counters
    try:
        assert wait_until(lambda: counters["no_goal"] > 5, 30)
        assert counters["commands"] == 0 and counters["stops"] >= counters["no_goal"]
        assert loop.goal_endpoint is not None
        send_goal(loop.goal_endpoint, protocol.Goal(seq=0, stamp_send=protocol.now_ns(), image=None, state=None,
                                                    capture=True))
        assert wait_until(lambda: counters["commands"] > 3, 10)
    finally:
        loop.stop_requested.set()
        runner.join(10)
        loop.close()
        controller.stop()


# -- the goal CLI verbs -------------------------------------------------------------------------------------
def test_cli_writes_goal_images_from_a_source_and_a_recording(recording: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    captured = tmp_path / "out" / "captured.png"
    view = _one_image_folder(tmp_path, GOALS[1])
    result = runner.invoke(app, ["goal", "capture", "--source", f"images:{view}", "--out", str(captured)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(_image(captured), _image(GOALS[1]))

    framed = tmp_path / "frame1.png"
    result = runner.invoke(app, ["goal", "from-recording", str(recording), "--frame", "1", "--out", str(framed)])
    assert result.exit_code == 0, result.output
    assert np.array_equal(_image(framed), recording_frame(recording, 1))
    assert np.array_equal(_image(framed), _image(GOALS[1]))

    result = runner.invoke(app, ["goal", "from-recording", str(recording), "--frame", "9", "--out", str(framed)])
    assert result.exit_code == 2 and "frame 9 does not exist" in result.output


def test_cli_sends_goal_messages(wait_until: Callable[..., bool]) -> None:
    runner = CliRunner()
    server = GoalServer(ANY)
    received: list[protocol.Goal] = []

    def receive() -> bool:
        message = server.receive()
        if message is not None:
            received.append(message)
        return message is not None

    try:
        for args in (["--state", "0.5,-0.25"], ["--capture"], ["--image", str(GOALS[0]), "--state", "1,2"]):
            result = runner.invoke(app, ["goal", "send", "--endpoint", server.endpoint, *args])
            assert result.exit_code == 0, result.output
            assert wait_until(receive)
    finally:
        server.close()
    state_only, capture, view_and_state = received
    assert state_only.state is not None and state_only.image is None and not state_only.capture
    assert np.allclose(state_only.state, [0.5, -0.25])
    assert capture.capture and capture.state is None and capture.image is None
    assert view_and_state.image is not None and view_and_state.state is not None
    assert np.array_equal(view_and_state.image, _image(GOALS[0])) and np.allclose(view_and_state.state, [1, 2])

    refused = runner.invoke(app, ["goal", "send", "--image", str(GOALS[0]), "--capture"])
    assert refused.exit_code == 2
    # Nobody listens on the discard port: the send times out and says so.
    nobody = runner.invoke(app, ["goal", "send", "--endpoint", "tcp://127.0.0.1:9", "--state", "0,0",
                                 "--timeout-s", "0.3"])
    assert nobody.exit_code == 2 and "tcp://127.0.0.1:9: no runtime took the goal" in nobody.output
