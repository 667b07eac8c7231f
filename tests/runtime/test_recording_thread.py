"""The run's recording on its own thread: every message written in order, nothing lost on close, a slow writer
drops and counts instead of holding up the caller, and a writer error reaches the caller naming the file."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from runtime.channels import COMMAND_TOPIC, IMAGE_TOPIC
from runtime.recording import RecordingWriter, iter_messages
from runtime.recording_thread import BackgroundRecording, RecordingThreadError


def test_every_message_is_written_in_order_by_close(tmp_path: Path) -> None:
    recording = BackgroundRecording(RecordingWriter(tmp_path / "run.mcap"))
    for seq in range(50):
        recording.write_image(np.full((8, 8, 3), seq, np.uint8), 1_000 + seq, seq)
        recording.write_json(COMMAND_TOPIC, {"seq": seq, "action": [0.5]}, 1_000 + seq, seq)
    recording.close()
    assert (recording.written, recording.dropped) == (100, 0)
    read = [(topic, seq) for topic, seq, _stamp, _payload in iter_messages(tmp_path / "run.mcap")]
    assert read == [(topic, seq) for seq in range(50) for topic in (IMAGE_TOPIC, COMMAND_TOPIC)]


class _StuckWriter(RecordingWriter):
    """A disk that stops: every write waits for `go`."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.go = threading.Event()

    def write_json(self, *args: object, **kwargs: object) -> None:
        self.go.wait()
        super().write_json(*args, **kwargs)  # type: ignore[arg-type]


def test_a_writer_that_cannot_keep_up_drops_and_counts_without_holding_up_the_caller(tmp_path: Path) -> None:
    writer = _StuckWriter(tmp_path / "run.mcap")
    recording = BackgroundRecording(writer, capacity=4)
    for seq in range(20):  # returns although nothing is written: the queue fills, then messages are dropped
        recording.write_json(COMMAND_TOPIC, {"seq": seq, "action": [0.0]}, seq, seq)
    writer.go.set()
    recording.close()
    assert recording.dropped >= 20 - 4 - 1 and recording.written + recording.dropped == 20


class _FullDisk(RecordingWriter):
    def write_json(self, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")


def test_a_writer_error_is_raised_to_the_caller_naming_the_file(tmp_path: Path) -> None:
    recording = BackgroundRecording(_FullDisk(tmp_path / "run.mcap"))
    with pytest.raises(RecordingThreadError, match=r"run\.mcap: the recording stopped: .*No space left"):
        for seq in range(100_000):  # the next writes see it once the writer thread has failed
            recording.write_json(COMMAND_TOPIC, {"seq": seq, "action": [0.0]}, seq, seq)
    with pytest.raises(RecordingThreadError, match=r"run\.mcap"):
        recording.close()
