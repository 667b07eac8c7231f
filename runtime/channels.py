"""The channels edgeloop writes: each topic's schema and encoding, shared by MCAP recordings and the live view.

Images and the camera's transform use Foxglove's own protobuf schemas (`foxglove.CompressedImage`,
`foxglove.FrameTransform`), so Foxglove shows them in its Image and 3D panels; as JSON their bytes would be base64,
a third larger and slow to read. Everything else is JSON with a JSON Schema that names every field: these
messages are small (tens of numbers), readers get plain dicts, Foxglove plots any field, and no generated code
has to be kept in step with them. docs/recording.md lists the channels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform
from google.protobuf.message import Message
from mcap_protobuf.schema import build_file_descriptor_set

from runtime.link import protocol

IMAGE_TOPIC = "/camera/image"
CAMERA_TRANSFORM_TOPIC = "/camera/transform"  # static: the camera's pose in the robot base frame
STATE_TOPIC = "/robot/state"
COMMAND_TOPIC = "/robot/command"
STOP_TOPIC = "/robot/stop"  # a run's stops: seq and reason
LATENT_TOPIC = "/model/latent"
PLAN_TOPIC = "/planner/plan"
GOAL_TOPIC = "/planner/goal"
GOAL_IMAGE_TOPIC = "/planner/goal_image"  # the goal's view, when the goal has one
# Training episodes recorded in simulation: what the camera shows that the task is about (docs/training.md).
VISUAL_STATE_TOPIC = "/task/visual_state"

CAMERA_FRAME = "camera"  # the optical frame: x right, y down, z out of the lens (Foxglove's and ROS's convention)
BASE_FRAME = "base"


@dataclass(frozen=True)
class ChannelSpec:
    """How one topic is written: MCAP schema name, schema encoding and bytes, message encoding."""

    topic: str
    schema_name: str
    schema_encoding: str  # "protobuf" (a FileDescriptorSet) or "jsonschema"
    schema_data: bytes
    message_encoding: str  # "protobuf" or "json"


def _protobuf(topic: str, message_class: type[Message]) -> ChannelSpec:
    descriptors = build_file_descriptor_set(message_class).SerializeToString()
    return ChannelSpec(topic, message_class.DESCRIPTOR.full_name, "protobuf", descriptors, "protobuf")


_NUMBERS = {"type": "array", "items": {"type": "number"}}
_SEQ = {"type": "integer", "description": "The tick's command sequence number (also the MCAP message sequence)."}
_STAMP = {"type": "integer", "description": "Nanoseconds since the Unix epoch."}


def _json(topic: str, name: str, description: str, properties: dict[str, Any], required: list[str]) -> ChannelSpec:
    schema = {"title": name, "description": description, "type": "object", "properties": properties,
              "required": required, "additionalProperties": False}
    return ChannelSpec(topic, name, "jsonschema", json.dumps(schema).encode(), "json")


CHANNELS: dict[str, ChannelSpec] = {spec.topic: spec for spec in (
    _protobuf(IMAGE_TOPIC, CompressedImage),
    _protobuf(GOAL_IMAGE_TOPIC, CompressedImage),
    _protobuf(CAMERA_TRANSFORM_TOPIC, FrameTransform),
    _json(STATE_TOPIC, "edgeloop.RobotState", "The controller's joint state the tick planned from.", {
        "seq": {"type": "integer", "description": "The controller's state sequence number."},
        "stamp_ns": {**_STAMP, "description": "When the controller measured it (ns since the Unix epoch)."},
        "q": {**_NUMBERS, "description": "Joint positions (rad)."},
        "dq": {**_NUMBERS, "description": "Joint velocities (rad/s)."},
        "ee": {**_NUMBERS, "description": "End-effector position (m), when the controller reports one."},
    }, ["q", "dq"]),
    _json(COMMAND_TOPIC, "edgeloop.Command", "The action sent (after the safety filter), or applied in an episode.", {
        "seq": _SEQ, "stamp_ns": _STAMP, "action": {**_NUMBERS, "description": "Action, physical units."},
    }, ["seq", "action"]),
    _json(STOP_TOPIC, "edgeloop.Stop", "A stop sent to the controller.", {
        "seq": _SEQ, "reason": {"type": "string"},
    }, ["seq", "reason"]),
    _json(LATENT_TOPIC, "edgeloop.Latent", "The encoder's latent of the frame and state the tick planned from.", {
        "latent": _NUMBERS,
    }, ["latent"]),
    _json(PLAN_TOPIC, "edgeloop.Plan", "One plan: the best action sequence and the optimizer's diagnostics.", {
        "cost": {"type": ["number", "null"], "description": "Cost of the best sequence; null when none was finite."},
        "iterations": {"type": "integer"},
        "ms": {"type": "number", "description": "Planning time."},
        "best_cost_per_iteration": {"type": "array", "items": {"type": ["number", "null"]}},
        "spread": {"type": "number", "description": "Mean std of the last iteration's samples, normalized units."},
        "deadline_hit": {"type": "boolean"},
        "chosen": {"enum": ["sampled", "warm_start", "hold_still"]},
        "sequence": {"type": "array", "items": _NUMBERS,
                     "description": "Planned actions, one per control period, physical units."},
        "execute_steps": {"type": "integer", "description": "How many of them are sent before the next plan."},
        "optimizer": {"type": "string"},
        "plan_id": {"type": "integer", "description": "Asynchronous planning: the plan's number in the run."},
        "planning": {"enum": ["async"], "description": "Present under asynchronous planning, whose plan is recorded "
                                                       "with the first command sent from it."},
    }, ["cost", "iterations", "ms", "sequence"]),
    _json(GOAL_TOPIC, "edgeloop.Goal", "The goal the planner switched to.", {
        "description": {"type": "string"},
        "visual": {"type": ["array", "null"], "items": {"type": "number"}, "description": "Latent of the goal view."},
        "state": {"type": ["array", "null"], "items": {"type": "number"},
                  "description": "Proprio latent of the goal joint state."},
    }, ["description", "visual", "state"]),
    _json(VISUAL_STATE_TOPIC, "edgeloop.VisualState", "What the camera shows that the task is about (simulation).", {
        "seq": _SEQ, "stamp_ns": _STAMP, "state": _NUMBERS,
    }, ["state"]),
)}


class ChannelWriter(Protocol):
    """Where a run's messages go: its recording (runtime/recording.py), its live view (runtime/live_view.py)."""

    def write_json(self, topic: str, payload: dict[str, Any], stamp_ns: int, sequence: int) -> None: ...

    def write_image(self, image: np.ndarray, stamp_ns: int, sequence: int, topic: str = IMAGE_TOPIC) -> None: ...


def channel_spec(topic: str) -> ChannelSpec:
    """The spec of an edgeloop topic; ValueError naming the topic for any other."""
    try:
        return CHANNELS[topic]
    except KeyError:
        raise ValueError(f"{topic}: not an edgeloop channel (known: {', '.join(sorted(CHANNELS))}); "
                         f"add its schema to runtime/channels.py") from None


def encode_image(image: np.ndarray, stamp_ns: int, image_format: str = "png", frame_id: str = CAMERA_FRAME) -> bytes:
    """A BGR uint8 image as a serialized `foxglove.CompressedImage` (`image_format`: "png" or "jpeg")."""
    ok, data = cv2.imencode(".png" if image_format == "png" else ".jpg", image)
    if not ok:
        raise ValueError(f"could not {image_format}-encode an image of shape {image.shape}")
    message = CompressedImage(frame_id=frame_id, data=data.tobytes(), format=image_format)
    message.timestamp.FromNanoseconds(stamp_ns)
    return message.SerializeToString()


def encode_camera_transform(base_T_camera: np.ndarray, stamp_ns: int) -> bytes:
    """The camera's pose in the robot base frame (4x4) as a serialized `foxglove.FrameTransform`."""
    rotation_vector = cv2.Rodrigues(np.asarray(base_T_camera[:3, :3], dtype=np.float64))[0].ravel()
    angle = float(np.linalg.norm(rotation_vector))
    axis = rotation_vector / angle if angle > 0 else np.zeros(3)
    x, y, z = axis * np.sin(angle / 2)
    message = FrameTransform(parent_frame_id=BASE_FRAME, child_frame_id=CAMERA_FRAME)
    message.timestamp.FromNanoseconds(stamp_ns)
    message.translation.x, message.translation.y, message.translation.z = (float(v) for v in base_T_camera[:3, 3])
    message.rotation.x, message.rotation.y, message.rotation.z = float(x), float(y), float(z)
    message.rotation.w = float(np.cos(angle / 2))
    return message.SerializeToString()


def encode_json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def state_payload(state: protocol.State) -> dict[str, Any]:
    """A controller state as the run records and shows it on STATE_TOPIC."""
    return {"seq": state.seq, "stamp_ns": state.stamp, "q": state.q.tolist(), "dq": state.dq.tolist(),
            "ee": state.ee.tolist()}
