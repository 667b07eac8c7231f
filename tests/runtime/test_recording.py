"""Training episodes as MCAP: what is written reads back tick by tick, and a damaged recording names itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.recording import VISUAL_STATE_TOPIC, RecordingError, RecordingWriter, read_episode


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
