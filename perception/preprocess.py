"""Camera frames to model input: BGR uint8 images -> float32 NCHW tensors, as the manifest's ImageSpec says."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from perception.manifest import ImageSpec


class Preprocessor:
    """Undistort (when given a calibration's undistorter), resize (INTER_AREA) when needed, reorder channels,
    scale and normalize: (pixel * scale - mean) / std.

    A single frame (H, W, 3) gives (3, H', W') written into a buffer reused by the next call (copy it to
    keep it); a batch (N, H, W, 3) gives a fresh (N, 3, H', W'). `undistort` (calibration.undistort.Undistorter)
    maps a camera frame to its undistorted view and raises on a frame of another size than calibrated.
    """

    def __init__(self, image: ImageSpec, undistort: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.spec = image
        self.undistort = undistort
        self.size = (image.height, image.width)
        # Normalization folded into one multiply-add per channel, in the model's channel order.
        std = np.asarray(image.std, dtype=np.float32)
        self._gain = (image.scale / std).reshape(3, 1, 1)
        self._offset = (-np.asarray(image.mean, dtype=np.float32) / std).reshape(3, 1, 1)
        self._flip = image.channel_order == "RGB"  # frames arrive BGR
        self._single = np.empty((3, *self.size), dtype=np.float32)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            found = frame.dtype if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"preprocess: frames must be uint8 BGR arrays, found {found}")
        if frame.ndim not in (3, 4) or frame.shape[-1] != 3:
            raise ValueError(f"preprocess: expected a BGR frame (H, W, 3) or a batch (N, H, W, 3), "
                             f"found shape {frame.shape}")
        if self.undistort is not None:
            # The undistorter reuses its output buffer: a batch is undistorted frame by frame into a copy.
            frame = self.undistort(frame) if frame.ndim == 3 else np.stack([self.undistort(f).copy() for f in frame])
        if frame.ndim == 3:
            self._normalize(self._resized(frame), self._single)
            return self._single
        resized = frame if frame.shape[1:3] == self.size else np.stack([self._resized(f) for f in frame])
        out = np.empty((len(frame), 3, *self.size), dtype=np.float32)
        self._normalize(resized, out)
        return out

    def _resized(self, frame: np.ndarray) -> np.ndarray:
        if frame.shape[:2] == self.size:
            return frame
        return cv2.resize(frame, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)

    def _normalize(self, hwc: np.ndarray, out: np.ndarray) -> None:
        chw = np.moveaxis(hwc, -1, -3)  # a view: (..., 3, H, W)
        if self._flip:
            chw = chw[..., ::-1, :, :]
        np.multiply(chw, self._gain, out=out)
        out += self._offset
