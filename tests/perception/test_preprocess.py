"""Frames to model input: layout, channel order, normalization, resizing, batches and bad frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.manifest import ImageSpec
from perception.preprocess import Preprocessor


def spec(order: str = "RGB", size: int = 8) -> ImageSpec:
    return ImageSpec(width=size, height=size, channel_order=order, layout="NCHW", scale=1 / 255,  # type: ignore[arg-type]
                     mean=[0.1, 0.2, 0.3], std=[0.5, 0.25, 0.125])


def constant_frame(b: int, g: int, r: int, size: int = 8) -> np.ndarray:
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = (b, g, r)
    return frame


def test_single_frame_becomes_normalized_chw_in_model_channel_order() -> None:
    out = Preprocessor(spec("RGB"))(constant_frame(10, 20, 30))
    assert out.shape == (3, 8, 8) and out.dtype == np.float32
    expected_rgb = [(30 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25, (10 / 255 - 0.3) / 0.125]
    np.testing.assert_allclose(out[:, 3, 5], expected_rgb, rtol=1e-6)


def test_bgr_models_keep_the_frame_order() -> None:
    out = Preprocessor(spec("BGR"))(constant_frame(10, 20, 30))
    np.testing.assert_allclose(out[:, 0, 0], [(10 / 255 - 0.1) / 0.5, (20 / 255 - 0.2) / 0.25,
                                              (30 / 255 - 0.3) / 0.125], rtol=1e-6)


def test_pixels_keep_their_place() -> None:
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    frame[2, 6] = (0, 0, 255)  # one red pixel at row 2, column 6
    out = Preprocessor(spec("RGB"))(frame)
    red = out[0]
    assert np.unravel_index(np.argmax(red), red.shape) == (2, 6)


def test_single_frame_output_buffer_is_reused() -> None:
    preprocess = Preprocessor(spec())
    first = preprocess(constant_frame(1, 2, 3))
    value = first.copy()
    second = preprocess(constant_frame(200, 100, 50))
    assert second is first
    assert not np.allclose(second, value)


def test_other_sizes_are_resized_with_inter_area() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    out = Preprocessor(spec("BGR"))(frame)
    area = cv2.resize(frame, (8, 8), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    expected = ((area - [0.1, 0.2, 0.3]) / [0.5, 0.25, 0.125]).transpose(2, 0, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_batch_matches_frame_by_frame() -> None:
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    preprocess = Preprocessor(spec("RGB"))
    batch = preprocess(frames)
    assert batch.shape == (5, 3, 8, 8)
    for frame, row in zip(frames, batch, strict=True):
        np.testing.assert_array_equal(row, preprocess(frame))


@pytest.mark.parametrize(("frame", "message"), [
    (np.zeros((8, 8, 3), dtype=np.float32), "must be uint8 BGR arrays, found float32"),
    (np.zeros((8, 8, 4), dtype=np.uint8), r"found shape \(8, 8, 4\)"),
    (np.zeros((8, 8), dtype=np.uint8), r"found shape \(8, 8\)"),
    ([[0, 0, 0]], "found list"),
])
def test_bad_frames_are_refused_clearly(frame: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Preprocessor(spec())(frame)  # type: ignore[arg-type]
