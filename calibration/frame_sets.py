"""INT8 calibration frame sets: frames spread over recorded episodes, cached under their content hash.

Quantization picks activation ranges from these frames, so they must look like what the robot will see:
a few frames from every episode, evenly spaced in time, rather than many consecutive near-duplicates from
one. Plain arrays in and out; reading recordings is the caller's job.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class CalibrationSetError(ValueError):
    """A calibration set that cannot be built or loaded; the text names the file or episode at fault."""


@dataclass(frozen=True)
class EpisodeFrames:
    """One recorded episode, aligned by tick: row t of every array belongs to tick t."""

    name: str
    frames: np.ndarray  # uint8 BGR (T, H, W, 3)
    proprio: np.ndarray  # float32 (T, P)
    actions: np.ndarray  # float32 (T, A): the command applied after frame t


@dataclass(frozen=True)
class CalibrationSet:
    frames: np.ndarray  # uint8 BGR (N, H, W, 3)
    proprio: np.ndarray  # float32 (N, P)
    actions: np.ndarray  # float32 (N, A)
    origins: list[str]  # "episode:tick" for each row

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def sha256(self) -> str:
        """Content hash: the same frames, states and actions give the same hash wherever they came from."""
        digest = hashlib.sha256()
        for array in (self.frames, self.proprio, self.actions):
            digest.update(f"{array.dtype.str}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def spread_indices(lengths: Sequence[int], count: int) -> list[tuple[int, int]]:
    """`count` (episode, tick) pairs: an equal share per episode where lengths allow, evenly spaced in each.

    Short episodes give all their ticks and the remainder goes to the longer ones, so the result has
    `min(count, sum(lengths))` distinct pairs.
    """
    if count < 1:
        raise CalibrationSetError(f"calibration frame count must be at least 1, got {count}")
    if not lengths or sum(lengths) == 0:
        raise CalibrationSetError("no frames to calibrate with: every episode is empty")
    shares = [0] * len(lengths)
    remaining = min(count, sum(lengths))
    open_episodes = [i for i, length in enumerate(lengths) if length > 0]
    while remaining:
        share = max(1, remaining // len(open_episodes))
        for i in list(open_episodes):
            take = min(share, lengths[i] - shares[i], remaining)
            shares[i] += take
            remaining -= take
            if shares[i] == lengths[i]:
                open_episodes.remove(i)
            if not remaining:
                break
    pairs: list[tuple[int, int]] = []
    for episode, (length, share) in enumerate(zip(lengths, shares, strict=True)):
        if share:
            # Centre of each of `share` equal slices of the episode.
            ticks = ((np.arange(share) + 0.5) * length / share).astype(int)
            pairs.extend((episode, int(tick)) for tick in ticks)
    return pairs


def build_calibration_set(episodes: Sequence[EpisodeFrames], count: int) -> CalibrationSet:
    """Draw `count` frames (with their proprio and action) spread over `episodes`."""
    for episode in episodes:
        lengths = {len(episode.frames), len(episode.proprio), len(episode.actions)}
        if len(lengths) != 1:
            raise CalibrationSetError(f"{episode.name}: frames, proprio and actions differ in length ({lengths})")
    shapes = {episode.frames.shape[1:] for episode in episodes if len(episode.frames)}
    if len(shapes) > 1:
        raise CalibrationSetError(f"episodes have different frame shapes: {sorted(shapes)}")
    pairs = spread_indices([len(episode.frames) for episode in episodes], count)
    return CalibrationSet(
        frames=np.stack([episodes[e].frames[t] for e, t in pairs]).astype(np.uint8),
        proprio=np.stack([episodes[e].proprio[t] for e, t in pairs]).astype(np.float32),
        actions=np.stack([episodes[e].actions[t] for e, t in pairs]).astype(np.float32),
        origins=[f"{episodes[e].name}:{t}" for e, t in pairs],
    )


def source_key(recordings: Sequence[str | Path], count: int) -> str:
    """Cache key of a set drawn from these recording files (by content) with this frame count."""
    digest = hashlib.sha256()
    for path in recordings:
        file_digest = hashlib.sha256()
        try:
            with Path(path).open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    file_digest.update(block)
        except OSError as exc:
            raise CalibrationSetError(f"{path}: cannot read recording ({exc.strerror or exc})") from exc
        digest.update(file_digest.digest())
    digest.update(json.dumps({"count": count}).encode())
    return digest.hexdigest()


def save_calibration_set(calibration: CalibrationSet, path: str | Path) -> None:
    """Write the set to `path` atomically: an interrupted save leaves no partial file under that name."""
    path = Path(path)
    staged = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with staged.open("wb") as stream:
            np.savez_compressed(stream, frames=calibration.frames, proprio=calibration.proprio,
                                actions=calibration.actions, origins=np.asarray(calibration.origins),
                                sha256=np.asarray(calibration.sha256))
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def load_calibration_set(path: str | Path) -> CalibrationSet:
    """Load a saved set; refuses a file whose content no longer matches the hash it was saved with."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            calibration = CalibrationSet(frames=data["frames"], proprio=data["proprio"], actions=data["actions"],
                                         origins=[str(origin) for origin in data["origins"]])
            saved_hash = str(data["sha256"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # damaged or not an .npz
        raise CalibrationSetError(f"{path}: not a calibration set ({exc or type(exc).__name__})") from exc
    if calibration.sha256 != saved_hash:
        raise CalibrationSetError(f"{path}: content hash {calibration.sha256[:12]} differs from the saved "
                                  f"{saved_hash[:12]} (the file changed)")
    return calibration


def cached_calibration_set(cache_dir: str | Path, key: str, build: Callable[[], CalibrationSet]) -> CalibrationSet:
    """The set cached under `key` in `cache_dir`, or `build()` it and cache it; a damaged entry is rebuilt."""
    path = Path(cache_dir) / f"calibration-{key[:16]}.npz"
    if path.is_file():
        try:
            return load_calibration_set(path)
        except CalibrationSetError:
            path.unlink()
    calibration = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_calibration_set(calibration, path)
    return calibration
