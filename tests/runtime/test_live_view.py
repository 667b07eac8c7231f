"""The live view: a real Foxglove WebSocket server on loopback, a real client subscribing over a real socket."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from foxglove_checks import decode_image, live_view_client

from runtime.channels import CAMERA_TRANSFORM_TOPIC, CHANNELS, GOAL_IMAGE_TOPIC, GOAL_TOPIC, IMAGE_TOPIC, STATE_TOPIC
from runtime.config import LiveViewSection
from runtime.goals import GoalTarget
from runtime.link import protocol
from runtime.live_view import LiveView, LiveViewError, open_live_view
from runtime.sources import SourceFrame


@pytest.fixture
def live_view() -> Iterator[LiveView]:
    pytest.importorskip("foxglove")  # the observe extra
    view = LiveView(LiveViewSection(enabled=True, port=0))
    yield view
    view.close()


def frame(level: int, stamp_ns: int) -> SourceFrame:
    image = np.full((48, 64, 3), level, np.uint8)
    image[:, :32] = 255 - level  # an edge, so JPEG has something to keep
    return SourceFrame(image=image, stamp_ns=stamp_ns, seq=stamp_ns)


def state(seq: int) -> protocol.State:
    return protocol.State(seq=seq, stamp=1_000 + seq, q=np.array([0.1, 0.2]), dq=np.zeros(2), ee=np.zeros(3),
                          stopped=False, last_command_seq=-1)


def test_a_client_sees_every_channel_advertised_with_its_schema_and_receives_the_camera(live_view: LiveView) -> None:
    with live_view_client(live_view.port) as client:
        client.wait_for_channels(set(CHANNELS))
        for topic, spec in CHANNELS.items():
            advertised = client.channels[topic]
            assert (advertised["schemaName"], advertised["schemaEncoding"], advertised["encoding"]) == \
                (spec.schema_name, spec.schema_encoding, spec.message_encoding)
        client.subscribe(IMAGE_TOPIC, STATE_TOPIC, GOAL_TOPIC, GOAL_IMAGE_TOPIC)
        goal = GoalTarget(np.array([0.5, 0.25], np.float32), None, "goal image", np.full((48, 64, 3), 9, np.uint8))
        received: dict[str, tuple[int, bytes]] = {}
        for tick in range(200):  # the subscription takes effect on the server's thread: tick until it has
            live_view.show(frame(40, 5_000 + tick), state(tick), goal)
            while (message := client.receive(0.02)) is not None:
                received.setdefault(message[0], message[1:])
            if len(received) == 4:
                break
        assert set(received) == {IMAGE_TOPIC, STATE_TOPIC, GOAL_TOPIC, GOAL_IMAGE_TOPIC}
        log_time, data = received[IMAGE_TOPIC]
        image = decode_image(data)
        sent = frame(40, log_time).image
        assert image.shape == sent.shape and np.abs(image.astype(int) - sent).mean() < 3  # JPEG: close, not equal
        assert json.loads(received[GOAL_TOPIC][1]) == {"description": "goal image", "visual": [0.5, 0.25],
                                                       "state": None}
        assert decode_image(received[GOAL_IMAGE_TOPIC][1]).shape == (48, 64, 3)
        assert set(json.loads(received[STATE_TOPIC][1])) == {"seq", "stamp_ns", "q", "dq", "ee"}

        # A frame already sent is not sent again: the next tick with the same frame sends nothing on the camera.
        live_view.show(frame(40, log_time + 10_000), None, None)
        while (message := client.receive(0.5)) is not None and message[0] != IMAGE_TOPIC:
            pass
        assert message is not None
        live_view.show(frame(40, log_time + 10_000), None, None)
        assert client.receive(0.3) is None


def test_disabled_is_none_and_a_busy_port_is_refused_naming_the_key() -> None:
    assert open_live_view(LiveViewSection()) is None
    pytest.importorskip("foxglove")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LiveViewError, match=rf"live_view: cannot listen on 127.0.0.1:{port} .*choose another "
                                                r"live_view.port \(0: any free one\)"):
            LiveView(LiveViewSection(enabled=True, port=port))


def test_without_foxglove_sdk_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "foxglove", None)  # what `import foxglove` meets where it is not installed
    with pytest.raises(LiveViewError, match=r"live_view.enabled: the live view needs foxglove-sdk: "
                                            r"pip install 'edgeloop\[observe\]'"):
        LiveView(LiveViewSection(enabled=True, port=0))


def test_a_calibrated_camera_pose_reaches_a_viewer_and_is_repeated_for_late_ones(live_view: LiveView) -> None:
    from foxglove_schemas_protobuf.FrameTransform_pb2 import FrameTransform

    base_T_camera = np.eye(4)
    base_T_camera[:3, 3] = [0.4, -0.1, 1.2]
    live_view.set_camera_transform(base_T_camera)
    with live_view_client(live_view.port) as client:
        client.wait_for_channels({CAMERA_TRANSFORM_TOPIC})
        client.subscribe(CAMERA_TRANSFORM_TOPIC)
        message = None
        for _ in range(200):  # until the subscription has reached the server's thread
            live_view.show(None, None, None)
            if (message := client.receive(0.02)) is not None:
                break
        assert message is not None and message[0] == CAMERA_TRANSFORM_TOPIC
        transform = FrameTransform.FromString(message[2])
        assert (transform.translation.x, transform.translation.y, transform.translation.z) == (0.4, -0.1, 1.2)
        assert transform.rotation.w == 1.0
        live_view.show(None, None, None)  # within the repeat period: nothing more
        assert client.receive(0.2) is None
