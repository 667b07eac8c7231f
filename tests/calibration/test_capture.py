"""Capture mode's frame selection: keep frames that show the board and add coverage or a new pose."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from rendered_views import Views

from calibration.boards import BoardDetector
from calibration.capture import FrameSelector, capture, view_signature
from calibration.images import ImageError


def test_frames_are_kept_only_when_they_bring_something_new(pinhole_views: Views) -> None:
    selector = FrameSelector(BoardDetector(pinhole_views.spec), min_frames=4, max_frames=10, target_coverage=0.3)
    first, second = pinhole_views.images[:2]
    blank = np.full_like(first, 100)
    offers = [selector.offer(frame) for frame in (blank, first, first, cv2.GaussianBlur(second, (0, 0), 6), second)]
    assert [o.kept for o in offers] == [False, True, False, False, True]
    assert offers[2].reason == "board found but adds no coverage and no new pose"
    assert dict(selector.rejected) == {"blurred": 2, "nothing_new": 1}  # a flat grey frame looks blurred too
    assert selector.seen == 5 and len(selector.frames) == len(selector.detections) == 2
    assert np.array_equal(selector.frames[1], second) and selector.frames[1] is not second  # copies
    assert not selector.enough
    for frame in pinhole_views.images[2:]:
        selector.offer(frame)
        if selector.enough:
            break
    assert len(selector.frames) >= 4 and selector.coverage >= 0.3


def test_max_frames_is_enough_whatever_the_coverage(pinhole_views: Views) -> None:
    selector = FrameSelector(BoardDetector(pinhole_views.spec), min_frames=4, max_frames=4, target_coverage=1.0)
    for frame in pinhole_views.images:
        selector.offer(frame)
        if selector.enough:
            break
    assert len(selector.frames) == 4 and selector.coverage < 1.0


def test_a_frame_of_another_size_is_refused(pinhole_views: Views) -> None:
    selector = FrameSelector(BoardDetector(pinhole_views.spec))
    selector.offer(pinhole_views.images[0])
    with pytest.raises(ImageError, match=r"frame 2: 320x240 pixels, but the other images are 640x480"):
        selector.offer(cv2.resize(pinhole_views.images[1], (320, 240)))


def test_view_signatures_tell_tilt_position_and_size(pinhole_views: Views) -> None:
    detector = BoardDetector(pinhole_views.spec)
    image = pinhole_views.images[0]
    found = detector.detect(image)
    signature = view_signature(pinhole_views.spec, found, (640, 480))  # type: ignore[arg-type]
    mirrored = detector.detect(cv2.flip(image, 1))
    flipped = view_signature(pinhole_views.spec, mirrored, (640, 480))  # type: ignore[arg-type]
    # Mirrored left-right: the centre moves to the other side, the left-right tilt changes sign.
    assert flipped[0] == pytest.approx(1 - signature[0], abs=0.01)
    assert flipped[1:3] == pytest.approx(signature[1:3], abs=0.01)
    assert flipped[3] == pytest.approx(-signature[3], abs=0.01)


def test_capture_says_what_stopped_it(pinhole_views: Views) -> None:
    def selector() -> FrameSelector:
        return FrameSelector(BoardDetector(pinhole_views.spec), min_frames=4, max_frames=4, target_coverage=0.0)

    def reader(frames: list[np.ndarray]) -> Callable[[float], np.ndarray | None]:
        queue = list(frames)
        return lambda _timeout: queue.pop(0) if queue else None

    enough, offered = selector(), []
    assert capture(enough, reader(pinhole_views.images), lambda: False, 1.0,
                   lambda: offered.append(enough.seen)) == "enough frames"
    assert len(enough.frames) == 4 and offered == list(range(1, enough.seen + 1))
    assert capture(selector(), reader(pinhole_views.images[:2]), lambda: True, 1.0) == "the source ended"
    assert capture(selector(), reader(pinhole_views.images[:2]), lambda: False, 2.5) == "no frame for 2.5 s"

    def interrupted(_timeout: float) -> np.ndarray:
        raise KeyboardInterrupt
    kept_so_far = selector()
    assert capture(kept_so_far, interrupted, lambda: False, 1.0) == "interrupted" and kept_so_far.seen == 0
