"""INT8 calibration frame sets: spread over episodes, hashed by content, cached and refused when damaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calibration.frame_sets import (
    CalibrationSet,
    CalibrationSetError,
    EpisodeFrames,
    build_calibration_set,
    cached_calibration_set,
    load_calibration_set,
    save_calibration_set,
    source_key,
    spread_indices,
)


def _episode(name: str, length: int, offset: int = 0) -> EpisodeFrames:
    ticks = np.arange(length) + offset
    frames = np.broadcast_to((ticks % 256).astype(np.uint8)[:, None, None, None], (length, 4, 6, 3)).copy()
    proprio = np.stack([ticks, -ticks], axis=1).astype(np.float32)
    return EpisodeFrames(name, frames, proprio, proprio[:, :1] * 0.5)


def test_frames_are_shared_equally_and_evenly_spaced() -> None:
    pairs = spread_indices([100, 100], 4)
    assert pairs == [(0, 25), (0, 75), (1, 25), (1, 75)]


def test_short_episodes_give_all_their_frames_and_the_rest_goes_to_longer_ones() -> None:
    pairs = spread_indices([2, 50, 0], 10)
    assert [tick for episode, tick in pairs if episode == 0] == [0, 1]
    assert sum(1 for episode, _ in pairs if episode == 1) == 8
    assert len(set(pairs)) == 10


def test_asking_for_more_frames_than_exist_gives_every_frame_once() -> None:
    assert sorted(spread_indices([3, 2], 50)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]


@pytest.mark.parametrize(("lengths", "count", "message"), [([5], 0, "at least 1"), ([0, 0], 3, "empty"),
                                                           ([], 3, "empty")])
def test_impossible_requests_are_refused(lengths: list[int], count: int, message: str) -> None:
    with pytest.raises(CalibrationSetError, match=message):
        spread_indices(lengths, count)


def test_a_set_carries_each_frame_with_its_state_action_and_origin() -> None:
    calibration = build_calibration_set([_episode("a.mcap", 10), _episode("b.mcap", 10, offset=100)], 4)
    assert calibration.origins == ["a.mcap:2", "a.mcap:7", "b.mcap:2", "b.mcap:7"]
    assert calibration.frames[:, 0, 0, 0].tolist() == [2, 7, 102, 107]
    assert calibration.proprio[:, 0].tolist() == [2, 7, 102, 107]
    assert calibration.actions[:, 0].tolist() == [1.0, 3.5, 51.0, 53.5]


def test_episodes_that_do_not_line_up_are_named() -> None:
    broken = _episode("broken.mcap", 10)
    broken = EpisodeFrames(broken.name, broken.frames, broken.proprio[:9], broken.actions)
    with pytest.raises(CalibrationSetError, match=r"broken\.mcap"):
        build_calibration_set([broken], 4)
    small = EpisodeFrames("small.mcap", np.zeros((3, 2, 2, 3), np.uint8), np.zeros((3, 2), np.float32),
                          np.zeros((3, 1), np.float32))
    with pytest.raises(CalibrationSetError, match="different frame shapes"):
        build_calibration_set([_episode("a.mcap", 10), small], 4)


def test_the_hash_follows_content_not_origin() -> None:
    one = build_calibration_set([_episode("a.mcap", 10)], 5)
    renamed = CalibrationSet(one.frames, one.proprio, one.actions, ["elsewhere"] * 5)
    assert renamed.sha256 == one.sha256
    changed = CalibrationSet(one.frames, one.proprio + 1, one.actions, one.origins)
    assert changed.sha256 != one.sha256


def test_saved_sets_round_trip_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    calibration = build_calibration_set([_episode("a.mcap", 10)], 5)
    path = tmp_path / "set.npz"
    save_calibration_set(calibration, path)
    loaded = load_calibration_set(path)
    assert loaded.sha256 == calibration.sha256 and loaded.origins == calibration.origins
    tampered = CalibrationSet(calibration.frames, calibration.proprio * 2, calibration.actions, calibration.origins)
    np.savez_compressed(path, frames=tampered.frames, proprio=tampered.proprio, actions=tampered.actions,
                        origins=np.asarray(tampered.origins), sha256=np.asarray(calibration.sha256))
    with pytest.raises(CalibrationSetError, match=r"set\.npz.*differs"):
        load_calibration_set(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CalibrationSetError, match=r"junk\.npz"):
        load_calibration_set(tmp_path / "junk.npz")


def test_the_cache_builds_once_and_rebuilds_a_damaged_entry(tmp_path: Path) -> None:
    builds = []

    def build() -> CalibrationSet:
        builds.append(1)
        return build_calibration_set([_episode("a.mcap", 10)], 5)

    first = cached_calibration_set(tmp_path, "k" * 64, build)
    second = cached_calibration_set(tmp_path, "k" * 64, build)
    assert len(builds) == 1 and second.sha256 == first.sha256
    entry = next(tmp_path.glob("calibration-*.npz"))
    intact = entry.read_bytes()
    # What an interrupted save or a full disk leaves: a cut-off archive, an empty file, other bytes.
    for damage in (intact[: len(intact) // 2], intact[:40], b"", b"damaged"):
        entry.write_bytes(damage)
        rebuilt = cached_calibration_set(tmp_path, "k" * 64, build)
        assert rebuilt.sha256 == first.sha256 and entry.read_bytes() != damage
    assert len(builds) == 5
    assert [path.name for path in tmp_path.iterdir()] == [entry.name]  # no staged leftovers


def test_source_key_follows_recording_content_and_count(tmp_path: Path) -> None:
    recording = tmp_path / "a.mcap"
    recording.write_bytes(b"one")
    key = source_key([recording], 10)
    assert source_key([recording], 10) == key
    assert source_key([recording], 11) != key
    recording.write_bytes(b"two")
    assert source_key([recording], 10) != key
    with pytest.raises(CalibrationSetError, match=r"missing\.mcap"):
        source_key([tmp_path / "missing.mcap"], 10)
