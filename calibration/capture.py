"""Capture mode: choose calibration frames from a stream of frames (a camera or a recording).

A frame is kept when the board is found in it (not blurred, not partial) and it brings something new: it
covers cells of an 8x6 grid over the image that no kept frame covered, or it shows the board at a pose
unlike every kept one (position, size in the image, or tilt: the focal length is only measurable from
tilted views). Capture has enough once `min_frames` are kept and they cover `target_coverage` of the
image, or `max_frames` are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.boards import BoardDetector, BoardSpec, Detection
from calibration.coverage import Coverage
from calibration.images import check_size

# Least L1 distance in view signature (centre x and y as image fractions, size, two tilts) to every kept
# view for a frame to count as a new pose; ROS's camera_calibration uses 0.2 on similar parameters.
DEFAULT_MIN_POSE_CHANGE = 0.2


@dataclass
class Offer:
    kept: bool
    reason: str  # why it was or was not kept
    detection: Detection | None


def view_signature(spec: BoardSpec, detection: Detection, size: tuple[int, int]) -> np.ndarray:
    """(centre x, centre y, size, tilt x, tilt y) of the board's outline in the image, each in about [0, 1] or
    [-1, 1]; a tilt is the relative length difference of the outline's left and right (top and bottom) sides."""
    board = spec.object_points()[detection.ids, :2]
    homography, _ = cv2.findHomography(board, detection.corners)
    grid = spec.object_points()[:, :2]
    outline = np.array([grid.min(axis=0), [grid[:, 0].max(), grid[:, 1].min()], grid.max(axis=0),
                        [grid[:, 0].min(), grid[:, 1].max()]])
    quad = cv2.perspectiveTransform(outline.reshape(-1, 1, 2), homography).reshape(4, 2)
    width, height = size
    edges = [(quad[i], quad[(i + 1) % 4]) for i in range(4)]  # two pairs of opposite sides: (0, 2), (1, 3)
    tilts = {}
    for first, second in ((edges[0], edges[2]), (edges[1], edges[3])):
        # Which way the pair's sides lie apart in the image decides whether it measures tilt about the
        # image's vertical or horizontal axis; the nearer (longer) side gives the sign.
        gap = (second[0] + second[1] - first[0] - first[1]) / 2
        axis = int(abs(gap[1]) > abs(gap[0]))  # 0: sides apart left-right, 1: top-bottom
        near, far = (first, second) if gap[axis] > 0 else (second, first)  # `near` is left of or above `far`
        lengths = np.linalg.norm(near[1] - near[0]), np.linalg.norm(far[1] - far[0])
        tilts[axis] = (lengths[0] - lengths[1]) / (lengths[0] + lengths[1])
    d1, d2 = quad[2] - quad[0], quad[3] - quad[1]
    area = 0.5 * abs(float(d1[0] * d2[1] - d1[1] * d2[0]))  # of a quadrilateral, from its diagonals
    centre = quad.mean(axis=0) / (width, height)
    return np.array([centre[0], centre[1], np.sqrt(area / (width * height)), tilts.get(0, 0.0), tilts.get(1, 0.0)])


@dataclass
class FrameSelector:
    detector: BoardDetector
    min_frames: int = 15
    max_frames: int = 40
    target_coverage: float = 0.6
    min_pose_change: float = DEFAULT_MIN_POSE_CHANGE
    size: tuple[int, int] | None = None
    frames: list[np.ndarray] = field(default_factory=list)  # kept frames (copies)
    detections: list[Detection] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> frames
    seen: int = 0
    _coverage: Coverage | None = field(default=None, init=False)
    _signatures: list[np.ndarray] = field(default_factory=list, init=False)

    @property
    def coverage(self) -> float:
        return self._coverage.fraction if self._coverage is not None else 0.0

    @property
    def enough(self) -> bool:
        kept = len(self.frames)
        return kept >= self.max_frames or (kept >= self.min_frames and self.coverage >= self.target_coverage)

    def offer(self, frame: np.ndarray) -> Offer:
        """Look at one frame; keep a copy of it if it shows the board and adds coverage or a new pose."""
        self.seen += 1
        self.size = check_size(f"frame {self.seen}", frame, self.size)
        if self._coverage is None:
            self._coverage = Coverage(self.size)
        found = self.detector.detect(frame)
        if not isinstance(found, Detection):
            self.rejected[found.reason] += 1
            return Offer(False, found.detail, None)
        new_cells = self._coverage.new_cells(found.corners)
        signature = view_signature(self.detector.spec, found, self.size)
        change = min((float(np.abs(signature - s).sum()) for s in self._signatures), default=np.inf)
        if new_cells == 0 and change < self.min_pose_change:
            self.rejected["nothing_new"] += 1
            return Offer(False, "board found but adds no coverage and no new pose", found)
        self._coverage.add(found.corners)
        self._signatures.append(signature)
        self.frames.append(frame.copy())
        self.detections.append(found)
        why = f"{new_cells} new grid cells" if new_cells else f"new pose (change {change:.2f})"
        return Offer(True, why, found)


def capture(selector: FrameSelector, read: Callable[[float], np.ndarray | None], ended: Callable[[], bool],
            timeout_s: float, on_frame: Callable[[], None] = lambda: None) -> str:
    """Offer frames from `read(timeout_s)` (None: nothing came) to the selector until it has enough, the
    source has `ended`, no frame comes for `timeout_s` or Ctrl-C; returns which of these stopped it."""
    try:
        while not selector.enough:
            frame = read(timeout_s)
            if frame is None:
                return "the source ended" if ended() else f"no frame for {timeout_s:g} s"
            selector.offer(frame)
            on_frame()
    except KeyboardInterrupt:
        return "interrupted"
    return "enough frames"
