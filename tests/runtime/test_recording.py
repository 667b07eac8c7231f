"""MCAP recordings: every channel typed as Foxglove reads it, episodes read back tick by tick, older recordings
still read, and a damaged or foreign recording names itself."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from foxglove_checks import check_recording_channels, decode_image
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
from mcap.writer import Writer

from calibration.poses import quaternion_matrix
from runtime.channels import (
    CAMERA_TRANSFORM_TOPIC,
    CHANNELS,
    COMMAND_TOPIC,
    GOAL_IMAGE_TOPIC,
    GOAL_TOPIC,
    IMAGE_TOPIC,
    LATENT_TOPIC,
    PLAN_TOPIC,
    STATE_TOPIC,
    STOP_TOPIC,
)
from runtime.recording import (
    VISUAL_STATE_TOPIC,
    RecordingError,
    RecordingWriter,
    iter_images,
    iter_messages,
    read_episode,
)


def write(path: Path, ticks: int, visual_state_ticks: range | None) -> None:
    with RecordingWriter(path) as writer:
        for tick in range(ticks):
            state = None if visual_state_ticks is None or tick not in visual_state_ticks else \
                np.array([tick, -tick, 0.5], dtype=np.float32)
            writer.write_tick(tick, 1000 + tick, np.full((8, 8, 3), tick, np.uint8), np.array([tick, 0.0]),
                              np.zeros(2), np.array([0.1 * tick]), state)


def test_an_episode_reads_back_with_its_visual_state(tmp_path: Path) -> None:
    write(tmp_path / "with.mcap", 4, range(4))
    episode = read_episode(tmp_path / "with.mcap")
    assert episode.visual_state is not None
    np.testing.assert_array_equal(episode.visual_state[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(episode.frames[:, 0, 0, 0], [0, 1, 2, 3])
    write(tmp_path / "without.mcap", 3, None)
    assert read_episode(tmp_path / "without.mcap").visual_state is None


def test_ticks_missing_their_visual_state_are_refused_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path / "partial.mcap", 5, range(3))
    with pytest.raises(RecordingError, match=f"partial.mcap: 2 of 5 ticks lack a {VISUAL_STATE_TOPIC} message"):
        read_episode(tmp_path / "partial.mcap")


def test_every_channel_has_foxglove_or_typed_schemas_and_reads_back(tmp_path: Path) -> None:
    """The recorder's channels as Foxglove sees them: protobuf images and transform, JSON with JSON Schemas."""
    path = tmp_path / "all.mcap"
    image = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = quaternion_matrix(np.array([0.1, -0.7, 0.2, 0.6])), [0.5, -0.1, 0.8]
    with RecordingWriter(path) as writer:
        writer.write_camera_transform(pose, 5)
        writer.write_tick(0, 10, image, np.array([0.1, 0.2]), np.zeros(2), np.array([0.3]), np.array([1.0, 2.0]))
        writer.write_image(image[::-1], 10, 0, GOAL_IMAGE_TOPIC)
        writer.write_json(STOP_TOPIC, {"seq": 1, "reason": "no goal"}, 11, 1)
        writer.write_json(LATENT_TOPIC, {"latent": [0.5, 0.25]}, 11, 1)
        writer.write_json(GOAL_TOPIC, {"description": "goal image", "visual": [0.5], "state": None}, 11, 1)
        writer.write_json(PLAN_TOPIC, {"cost": None, "iterations": 3, "ms": 1.5, "best_cost_per_iteration": [None],
                                       "spread": 0.1, "deadline_hit": False, "chosen": "sampled",
                                       "sequence": [[0.1], [0.2]], "execute_steps": 1, "optimizer": "cem"}, 11, 1)
    raw = check_recording_channels(path)
    assert set(raw) == set(CHANNELS)
    assert {topic for topic, spec in CHANNELS.items() if spec.message_encoding == "protobuf"} == \
        {IMAGE_TOPIC, GOAL_IMAGE_TOPIC, CAMERA_TRANSFORM_TOPIC}
    np.testing.assert_array_equal(decode_image(raw[IMAGE_TOPIC][0]), image)  # PNG: the very pixels
    assert CompressedImage.FromString(raw[IMAGE_TOPIC][0]).timestamp.ToNanoseconds() == 10

    transform = FrameTransform.FromString(raw[CAMERA_TRANSFORM_TOPIC][0])
    assert (transform.parent_frame_id, transform.child_frame_id) == ("base", "camera")
    rotation = transform.rotation
    np.testing.assert_allclose(quaternion_matrix(np.array([rotation.x, rotation.y, rotation.z, rotation.w])),
                               pose[:3, :3], atol=1e-9)
    assert [transform.translation.x, transform.translation.y, transform.translation.z] == [0.5, -0.1, 0.8]

    # The public reader: JSON payloads as written, protobuf messages as dicts of their fields.
    read = {topic: payload for topic, _seq, _stamp, payload in iter_messages(path)}
    assert read[STOP_TOPIC] == {"seq": 1, "reason": "no goal"}
    assert read[IMAGE_TOPIC]["format"] == "png" and read[IMAGE_TOPIC]["frame_id"] == "camera"
    assert read[CAMERA_TRANSFORM_TOPIC]["translation"] == {"x": 0.5, "y": -0.1, "z": 0.8}
    assert [seq for seq, _stamp, _image in iter_images(path, GOAL_IMAGE_TOPIC)] == [0]
    episode = read_episode(path)
    np.testing.assert_array_equal(episode.frames[0], image)
    assert episode.visual_state is not None and episode.visual_state.tolist() == [[1.0, 2.0]]


def test_a_topic_without_a_schema_is_refused_naming_the_file_and_topic(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "odd.mcap") as writer, \
            pytest.raises(RecordingError, match=r"odd.mcap: /my/topic: not an edgeloop channel .* runtime/channels.py"):
        writer.write_json("/my/topic", {"x": 1}, 1, 0)


def test_recordings_with_json_images_from_before_protobuf_still_read(tmp_path: Path) -> None:
    """The earlier format: images as base64 PNG inside JSON, untyped JSON topics."""
    path = tmp_path / "old.mcap"
    image = np.full((8, 8, 3), 77, np.uint8)
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start(profile="edgeloop", library="edgeloop")
        untyped = writer.register_schema(name="edgeloop.robot.state", encoding="jsonschema", data=b'{"type": "object"}')
        image_schema = writer.register_schema(name="foxglove.CompressedImage", encoding="jsonschema",
                                              data=b'{"type": "object"}')
        channels = {topic: writer.register_channel(topic=topic, message_encoding="json",
                                                   schema_id=image_schema if topic == IMAGE_TOPIC else untyped)
                    for topic in (IMAGE_TOPIC, STATE_TOPIC, COMMAND_TOPIC)}
        png = base64.b64encode(cv2.imencode(".png", image)[1].tobytes()).decode()
        for topic, payload in ((IMAGE_TOPIC, {"format": "png", "frame_id": "camera", "data": png}),
                               (STATE_TOPIC, {"q": [0.5], "dq": [0.0]}), (COMMAND_TOPIC, {"seq": 0, "action": [1.0]})):
            writer.add_message(channels[topic], log_time=7, data=json.dumps(payload).encode(), publish_time=7,
                               sequence=0)
        writer.finish()
    episode = read_episode(path)
    np.testing.assert_array_equal(episode.frames[0], image)
    assert episode.q.tolist() == [[0.5]] and episode.actions.tolist() == [[1.0]]


def test_a_message_encoding_edgeloop_does_not_read_is_named(tmp_path: Path) -> None:
    path = tmp_path / "cdr.mcap"
    with path.open("wb") as stream:
        writer = Writer(stream)
        writer.start()
        schema = writer.register_schema(name="sensor_msgs/msg/Image", encoding="ros2msg", data=b"")
        channel = writer.register_channel(topic=IMAGE_TOPIC, message_encoding="cdr", schema_id=schema)
        writer.add_message(channel, log_time=1, data=b"\x00", publish_time=1)
        writer.finish()
    with pytest.raises(RecordingError, match=r"cdr.mcap: /camera/image has message encoding 'cdr' with schema "
                                             r"'sensor_msgs/msg/Image'; edgeloop reads json and protobuf"):
        list(iter_images(path))
