"""`gst:` pipelines for real: videotestsrc through appsink into the source, and through the source into the loop.

pip's OpenCV has no GStreamer, so these run under the system's Python with Debian's OpenCV (python3-opencv,
built with GStreamer as JetPack's is) and its NumPy 1.x found first, and this environment's other packages after
them: the Jetson's arrangement (docs/deploy-jetson.md: JetPack's cv2, NumPy < 2, the rest from pip). A Jetson's
CSI pipeline differs only in its first element (nvarguscamerasrc and nvvidconv instead of videotestsrc).
`make sysdeps` installs the system packages; without them these tests are skipped saying what is missing.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import cv2
import pytest

from runtime.evaluation.demo import SimControllerProcess
from runtime.recording import iter_images

ROOT = Path(__file__).resolve().parents[3]
SYSTEM_PYTHON = Path("/usr/bin/python3")
SYSTEM_SITE = Path("/usr/lib/python3/dist-packages")
HEIGHT, WIDTH = 48, 64
# A moving ball at a fixed size and format, paced live at 30 fps; the Jetson's camera would be
# `nvarguscamerasrc ! video/x-raw(memory:NVMM),... ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! ...`.
PIPELINE = (f"videotestsrc is-live=true pattern=ball ! video/x-raw,width={WIDTH},height={HEIGHT},framerate=30/1 "
            f"! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1")

_PROBE = """
import cv2
assert cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER), "system OpenCV " + cv2.__version__ + " has no GStreamer"
capture = cv2.VideoCapture("videotestsrc num-buffers=1 ! videoconvert ! appsink", cv2.CAP_GSTREAMER)
assert capture.isOpened() and capture.read()[0], "GStreamer's videotestsrc/videoconvert/appsink missing"
print(cv2.__file__)
"""

# Reads frames through the runtime's own `gst:` source and reports what it saw.
_READ = """
import hashlib, json, sys
import cv2, numpy
from runtime.sources import open_source
with open_source("gst:" + sys.argv[1]) as source:
    frames = [source.read_latest(5.0) for _ in range(int(sys.argv[2]))]
    print(json.dumps({"cv2": cv2.__file__, "numpy": numpy.__version__, "dropped": source.dropped,
                      "frames": [None if f is None else [f.seq, f.stamp_ns, list(f.image.shape), str(f.image.dtype),
                                                         hashlib.sha256(f.image.tobytes()).hexdigest()]
                                 for f in frames]}))
"""


def _environment() -> dict[str, str]:
    """The system's dist-packages (cv2, NumPy 1.x) before this environment's packages, the checkout first."""
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    path = os.pathsep.join([str(ROOT), str(SYSTEM_SITE), *ours])
    return os.environ | {"PYTHONPATH": path, "PYTHONNOUSERSITE": "1", "MUJOCO_GL": "egl"}


@functools.cache
def _missing() -> str | None:
    """Why the system's GStreamer OpenCV cannot run here, or None when it can."""
    if not SYSTEM_PYTHON.is_file():
        return f"no {SYSTEM_PYTHON}"
    version = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    if version != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is Python {version}, this environment's packages are for {sys.version_info[:2]}"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", _PROBE], capture_output=True, text=True, timeout=60,
                           env=os.environ | {"PYTHONPATH": str(SYSTEM_SITE), "PYTHONNOUSERSITE": "1"})
    if probe.returncode != 0:
        reason = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "it failed"
        return f"the system's OpenCV with GStreamer cannot run ({reason}); run `make sysdeps` as root " \
               f"(python3-opencv gstreamer1.0-plugins-base)"
    return None


@pytest.fixture
def system_gstreamer() -> None:
    if (reason := _missing()) is not None:
        pytest.skip(reason)


def _system_python(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SYSTEM_PYTHON), *args], capture_output=True, text=True, timeout=timeout_s,
                          env=_environment(), cwd=ROOT)


def test_the_gst_source_delivers_the_pipelines_frames(system_gstreamer: None) -> None:
    result = _system_python("-c", _READ, PIPELINE, "12", timeout_s=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["cv2"].startswith(str(SYSTEM_SITE)) and report["numpy"].startswith("1.")  # the system's
    frames = report["frames"]
    assert all(frame is not None for frame in frames), frames
    assert {(tuple(shape), dtype) for _seq, _stamp, shape, dtype, _digest in frames} == {((HEIGHT, WIDTH, 3), "uint8")}
    seqs, stamps = [frame[0] for frame in frames], [frame[1] for frame in frames]
    assert seqs == sorted(set(seqs)) and stamps == sorted(stamps)  # newest-first, never a frame twice
    assert len({frame[4] for frame in frames}) >= len(frames) - 1  # the ball moves: the content changes
    assert report["dropped"] == seqs[-1] - len(frames) + 1  # every frame produced was returned or counted


def test_a_gst_pipeline_feeds_the_control_loop(system_gstreamer: None, tmp_path: Path) -> None:
    """`edgeloop run` under the system's Python with a gst: source, closed loop against the sim controller."""
    controller = SimControllerProcess()
    try:
        endpoints = controller.endpoints
        overrides = [
            f"link.command_endpoint={endpoints['command']}", f"link.state_endpoint={endpoints['state']}",
            f"source.uri=gst:{PIPELINE}", "record=true", f"runs_dir={tmp_path / 'runs'}", "loop.duration_s=3",
            "loop.status_line=false", "link.goal_endpoint=null",
        ]
        result = _system_python("-m", "runtime.cli", "run", "--config", "configs/demo.yaml",
                                *[arg for override in overrides for arg in ("--set", override)], timeout_s=180)
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["counters"]["frames"] > 10 and summary["counters"]["commands"] > 10, summary
    frames = list(iter_images(Path(summary["run_dir"]) / "run.mcap"))
    assert len(frames) == summary["counters"]["commands"]
    assert {image.shape for _seq, _stamp, image in frames} == {(HEIGHT, WIDTH, 3)}
    digests = {hashlib.sha256(image.tobytes()).hexdigest() for _seq, _stamp, image in frames}
    assert len(digests) > len(frames) // 2  # the loop saw the ball move, not one frame over and over
    assert cv2.absdiff(frames[0][2], frames[-1][2]).max() > 0
