"""A video that stops decoding mid-run ends `edgeloop run` with an error naming the file, after a stop is sent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.config import dump_config
from runtime.loop import ControlLoop
from runtime.recording import iter_images
from runtime.sources.base import SourceError
from tests.runtime.test_loop import ROOT, SimControllerThread, loop_config

pytest.importorskip("mujoco")


def damaged_video(tmp_path: Path, kind: str) -> Path:
    """The demo feed (200 frames) as an MJPG AVI cut in half, or an MP4 whose middle third is overwritten."""
    suffix, fourcc = (".avi", "MJPG") if kind == "cut-avi" else (".mp4", "mp4v")
    whole = tmp_path / f"whole{suffix}"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*fourcc), 20, (64, 64))
    for _seq, _stamp, image in iter_images(ROOT / "data" / "demo_feed.mcap"):
        writer.write(image)
    writer.release()
    data = bytearray(whole.read_bytes())
    if kind == "cut-avi":
        data = data[: len(data) // 2]
    else:
        third = len(data) // 3
        data[third: 2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    damaged = tmp_path / f"damaged{suffix}"
    damaged.write_bytes(bytes(data))
    return damaged


@pytest.mark.parametrize("kind", ["cut-avi", "corrupt-mp4"])
def test_a_video_failing_mid_run_stops_the_robot_and_names_the_file(tmp_path: Path, kind: str) -> None:
    video = damaged_video(tmp_path, kind)
    controller = SimControllerThread()
    try:
        config = loop_config(controller.endpoints, tmp_path, f"source.uri=file:{video}", "source.pace=fast",
                             "source.loop=false", "loop.rate_hz=100")
        loop = ControlLoop(config)
        with pytest.raises(SourceError, match=f"file:{video}: frame \\d+ of {video} could not be decoded"):
            loop.run(duration_s=60)
        assert loop.telemetry.counters["commands"] > 0  # it ran on the frames before the damage
        loop.close()

        path = tmp_path / "run.yaml"
        path.write_text(dump_config(config))
        result = subprocess.run([sys.executable, "-m", "runtime.cli", "run", "--config", str(path)], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        said = " ".join(result.stderr.split())
        assert f"of {video} could not be decoded" in said and "Traceback" not in said
    finally:
        counters = controller.stop()
    assert counters["stops_applied"] >= 2  # each run sent its stop on the way out (not the watchdog's)
