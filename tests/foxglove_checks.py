"""Checking what Foxglove would see, for tests: a recording's channels read back raw, and a live-view client
speaking the Foxglove WebSocket protocol (advertise, subscribe, binary message data) over a real socket."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from mcap.reader import make_reader
from websockets.sync.client import ClientConnection, connect

from runtime.channels import CHANNELS

# What Foxglove needs of each kind of channel: (schema encoding, message encoding).
PROTOBUF = ("protobuf", "protobuf")
JSON = ("jsonschema", "json")
# The subprotocol foxglove-sdk's server speaks (the Foxglove app offers it; the older foxglove.websocket.v1 is
# refused with HTTP 400 by foxglove-sdk 0.30).
SUBPROTOCOL = "foxglove.sdk.v1"
MESSAGE_DATA = 0x01  # binary opcode: subscription id (u32), log time (u64), payload


def check_recording_channels(path: Path) -> dict[str, list[bytes]]:
    """Every channel of `path` has runtime/channels.py's schema and encodings, every JSON message validates
    against its channel's JSON Schema, and every image decodes; returns the raw messages by topic."""
    messages: dict[str, list[bytes]] = {}
    with path.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        assert summary is not None
        for channel in summary.channels.values():
            schema = summary.schemas[channel.schema_id]
            spec = CHANNELS[channel.topic]
            assert (schema.name, schema.encoding, channel.message_encoding) == \
                (spec.schema_name, spec.schema_encoding, spec.message_encoding), channel.topic
            assert schema.data == spec.schema_data, channel.topic
        for schema, channel, message in reader.iter_messages():
            messages.setdefault(channel.topic, []).append(message.data)
            if channel.message_encoding == "json":
                jsonschema.validate(json.loads(message.data), json.loads(schema.data))
            elif schema.name == "foxglove.CompressedImage":
                assert decode_image(message.data).ndim == 3, channel.topic
    return messages


def decode_image(data: bytes) -> np.ndarray:
    """A serialized foxglove.CompressedImage's BGR image."""
    image = CompressedImage.FromString(data)
    assert image.format in ("png", "jpeg") and image.frame_id == "camera"
    decoded = cv2.imdecode(np.frombuffer(image.data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None, f"image data does not decode as {image.format}"
    return decoded


class LiveViewClient:
    """A Foxglove WebSocket client: reads the server's advertised channels, subscribes, receives message data."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.channels: dict[str, dict[str, Any]] = {}  # by topic, as advertised
        self._topics: dict[int, str] = {}  # subscription id -> topic

    def wait_for_channels(self, topics: set[str], timeout_s: float = 10.0) -> None:
        while not topics <= self.channels.keys():
            message = self.connection.recv(timeout_s)
            if isinstance(message, str):
                decoded = json.loads(message)
                if decoded["op"] == "advertise":
                    self.channels |= {channel["topic"]: channel for channel in decoded["channels"]}

    def subscribe(self, *topics: str) -> None:
        self.wait_for_channels(set(topics))
        subscriptions = []
        for topic in topics:
            subscription = len(self._topics) + 1
            self._topics[subscription] = topic
            subscriptions.append({"id": subscription, "channelId": self.channels[topic]["id"]})
        self.connection.send(json.dumps({"op": "subscribe", "subscriptions": subscriptions}))

    def receive(self, timeout_s: float) -> tuple[str, int, bytes] | None:
        """The next message on a subscribed channel: (topic, log time, payload); None when none came in time."""
        try:
            while True:
                message = self.connection.recv(timeout_s)
                if isinstance(message, bytes) and message[0] == MESSAGE_DATA:
                    subscription, log_time = struct.unpack_from("<IQ", message, 1)
                    return self._topics[subscription], log_time, message[13:]
        except TimeoutError:
            return None


@contextmanager
def live_view_client(port: int) -> Iterator[LiveViewClient]:
    """A client connected to the live view on 127.0.0.1:`port`, closed on exit."""
    with connect(f"ws://127.0.0.1:{port}", subprotocols=[SUBPROTOCOL], open_timeout=10) as connection:
        yield LiveViewClient(connection)
