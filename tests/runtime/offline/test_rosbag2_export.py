"""`edgeloop export rosbag2` on a real run (the loop against the sim controller), read back with rosbags."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from runtime.cli.app import app
from runtime.evaluation.demo import SimControllerProcess, config_against
from runtime.loop import ControlLoop
from runtime.recording import COMMAND_TOPIC, STATE_TOPIC, STOP_TOPIC, RecordingWriter, iter_images, iter_messages
from runtime.sources import open_source

rosbags = pytest.importorskip("rosbags", reason="the rosbag2 export needs the observe extra (rosbags)")
from rosbags.rosbag2 import Reader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
GOAL = ROOT / "models" / "demo" / "goals" / "goal_000.png"
STORE = get_typestore(Stores.ROS2_HUMBLE)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real recorded run: about a second of the closed loop, ended by close() (which records its stop)."""
    controller = SimControllerProcess()
    try:
        config = config_against(controller, ROOT / "configs" / "demo.yaml", [
            "record=true", f"runs_dir={tmp_path_factory.mktemp('runs')}", "loop.status_line=false"])
        loop = ControlLoop(config)
        try:
            loop.set_goal_image(cv2.imread(str(GOAL), cv2.IMREAD_COLOR))
            loop.run(duration_s=1.0)
        finally:
            summary = loop.close()
    finally:
        controller.stop()
    assert summary["counters"]["commands"] > 3
    return Path(summary["run_dir"])


def _export(*args: str) -> Any:
    return CliRunner().invoke(app, ["export", "rosbag2", *args])


def _bag(path: Path) -> dict[str, list[tuple[str, int, Any]]]:
    """Per topic: (message type, log time, deserialized message), in log-time order."""
    messages: dict[str, list[tuple[str, int, Any]]] = defaultdict(list)
    with Reader(path) as reader:
        for connection, stamp, data in reader.messages():
            messages[connection.topic].append(
                (connection.msgtype, stamp, STORE.deserialize_cdr(data, connection.msgtype)))
    return messages


def _ns(message: Any) -> int:
    return int(message.header.stamp.sec) * 1_000_000_000 + int(message.header.stamp.nanosec)


@pytest.mark.parametrize(("storage", "images"), [("sqlite3", "raw"), ("mcap", "raw"), ("mcap", "png")])
def test_a_run_round_trips_with_types_counts_stamps_and_values(run_dir: Path, tmp_path: Path, storage: str,
                                                                images: str) -> None:
    out = tmp_path / "bag"
    result = _export(str(run_dir), "--out", str(out), "--storage", storage, "--images", images)
    assert result.exit_code == 0, result.output
    assert f"wrote {out} ({storage})" in result.output
    assert (out / "metadata.yaml").is_file()
    assert any(p.suffix == {"sqlite3": ".db3", "mcap": ".mcap"}[storage] for p in out.iterdir())

    recording = run_dir / "run.mcap"
    frames = list(iter_images(recording))
    recorded: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for topic, _seq, stamp, payload in iter_messages(recording, [STATE_TOPIC, COMMAND_TOPIC, STOP_TOPIC]):
        recorded[topic].append((stamp, payload))
    bag = _bag(out)
    image_topic = "/camera/image" if images == "raw" else "/camera/image/compressed"
    assert set(bag) == {image_topic, "/joint_states", COMMAND_TOPIC, STOP_TOPIC}
    assert {topic: {t for t, _s, _m in messages} for topic, messages in bag.items()} == {
        image_topic: {"sensor_msgs/msg/Image" if images == "raw" else "sensor_msgs/msg/CompressedImage"},
        "/joint_states": {"sensor_msgs/msg/JointState"},
        COMMAND_TOPIC: {"sensor_msgs/msg/JointState"},
        STOP_TOPIC: {"std_msgs/msg/String"},
    }

    assert len(bag[image_topic]) == len(frames) > 3
    for (_t, log_time, message), (_seq, stamp, image) in zip(bag[image_topic], frames, strict=True):
        assert log_time == stamp == _ns(message)  # the capture stamp, both as the log time and in the header
        if images == "raw":
            assert (message.encoding, message.height, message.width) == ("bgr8", *image.shape[:2])
            np.testing.assert_array_equal(message.data.reshape(image.shape), image)
        else:
            assert message.format == "png"
            np.testing.assert_array_equal(cv2.imdecode(message.data, cv2.IMREAD_COLOR), image)

    states = bag["/joint_states"]
    assert len(states) == len(recorded[STATE_TOPIC]) > 3
    for (_t, log_time, message), (stamp, payload) in zip(states, recorded[STATE_TOPIC], strict=True):
        assert log_time == stamp and _ns(message) == payload["stamp_ns"]  # the controller's own stamp
        assert list(message.name) == [f"joint_{i}" for i in range(len(payload["q"]))]
        np.testing.assert_array_equal(message.position, payload["q"])
        np.testing.assert_array_equal(message.velocity, payload["dq"])

    commands = bag[COMMAND_TOPIC]
    assert len(commands) == len(recorded[COMMAND_TOPIC]) > 3
    for (_t, log_time, message), (stamp, payload) in zip(commands, recorded[COMMAND_TOPIC], strict=True):
        assert log_time == stamp == _ns(message) and len(message.position) == 0
        np.testing.assert_array_equal(message.velocity, payload["action"])

    stops = [message.data for _t, _s, message in bag[STOP_TOPIC]]
    assert stops == [payload["reason"] for _s, payload in recorded[STOP_TOPIC]] and "runtime exiting" in stops

    with open_source(f"rosbag2:{out}", pace="fast", loop=False) as replay:  # the bag plays back as a source
        replayed = [replay.read_latest(1.0) for _ in frames]
    for frame, (_seq, _stamp, image) in zip(replayed, frames, strict=True):
        assert frame is not None
        np.testing.assert_array_equal(frame.image, image)


def test_jpeg_frames_and_joint_names(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bag"
    result = _export(str(run_dir / "run.mcap"), "--out", str(out), "--images", "jpeg",
                     "--joint-names", "shoulder,elbow")
    assert result.exit_code == 0, result.output
    bag = _bag(out)
    frames = list(iter_images(run_dir / "run.mcap"))
    first = bag["/camera/image/compressed"][0][2]
    assert first.format == "jpeg"
    decoded = cv2.imdecode(first.data, cv2.IMREAD_COLOR)
    assert decoded.shape == frames[0][2].shape
    assert np.abs(decoded.astype(int) - frames[0][2]).mean() < 8  # lossy, but the same view
    assert {tuple(message.name) for _t, _s, message in bag["/joint_states"] + bag[COMMAND_TOPIC]} \
        == {("shoulder", "elbow")}


def test_bad_inputs_are_refused_naming_them_and_leave_no_bag(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bag"
    result = _export(str(run_dir), "--out", str(out), "--joint-names", "a,b,c")
    assert result.exit_code == 2 and "has 2 joint value(s) but --joint-names gives 3" in result.output
    assert not out.exists()

    out.mkdir()
    result = _export(str(run_dir), "--out", str(out))
    assert result.exit_code == 2 and f"{out} exists already" in result.output

    result = _export(str(tmp_path / "missing.mcap"), "--out", str(tmp_path / "other"))
    assert result.exit_code == 2 and f"{tmp_path / 'missing.mcap'}: recording not found" in result.output

    goal_only = tmp_path / "goal_only.mcap"
    with RecordingWriter(goal_only) as writer:
        writer.write_json("/planner/goal", {"description": "x"}, stamp_ns=1, sequence=0)
    result = _export(str(goal_only), "--out", str(tmp_path / "empty"))
    assert result.exit_code == 2 and f"{goal_only}: nothing to export" in result.output
    assert not (tmp_path / "empty").exists()

    broken = tmp_path / "broken.mcap"
    with RecordingWriter(broken) as writer:
        writer.write_json(STATE_TOPIC, {"seq": 0, "q": [0.0]}, stamp_ns=5, sequence=0)
    result = _export(str(broken), "--out", str(tmp_path / "broken_bag"))
    assert result.exit_code == 2 and f"{broken}: {STATE_TOPIC} at log time 5: message lacks a field" in result.output
    assert "'dq'" in result.output and not (tmp_path / "broken_bag").exists()

    result = _export(str(run_dir), "--out", str(tmp_path / "x"), "--storage", "rosbag1")
    assert result.exit_code == 2 and "rosbag1" in result.output


def test_an_episode_recording_exports_with_its_command_stamps(tmp_path: Path) -> None:
    episode = tmp_path / "episode.mcap"
    with RecordingWriter(episode) as writer:
        for tick in range(3):
            writer.write_tick(tick, 1_000_000_000 + tick * 50_000_000, np.full((8, 8, 3), 40 * tick, np.uint8),
                              np.array([0.1, 0.2]) * tick, np.array([1.0, -1.0]), np.array([0.5, -0.5]) * tick,
                              visual_state=np.zeros(2))
    out = tmp_path / "bag"
    result = _export(str(episode), "--out", str(out), "--storage", "mcap")
    assert result.exit_code == 0, result.output
    bag = _bag(out)
    assert set(bag) == {"/camera/image", "/joint_states", COMMAND_TOPIC}  # the visual state stays in the MCAP
    assert [_ns(message) for _t, _s, message in bag[COMMAND_TOPIC]] == [1_000_000_000, 1_050_000_000, 1_100_000_000]
    assert [list(message.velocity) for _t, _s, message in bag[COMMAND_TOPIC]] == [[0, 0], [0.5, -0.5], [1, -1]]
