"""`images:DIR`: the image files of a folder in name order, played at a fixed rate."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from runtime.sources.base import Pace, RecordedSource, SourceError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageFolderSource(RecordedSource):
    """Plays the folder's images sorted by file name; image i is due i / fps after the first."""

    def __init__(self, uri: str, folder: Path, pace: Pace, loop: bool, fps: float) -> None:
        if not folder.is_dir():
            raise SourceError(f"{uri}: no such folder {folder}")
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            suffixes = " ".join(sorted(IMAGE_SUFFIXES))
            raise SourceError(f"{uri}: folder {folder} holds no image files ({suffixes})")
        period_ns = round(1e9 / fps)
        super().__init__(uri, np.arange(len(self.files), dtype=np.int64) * period_ns, period_ns, pace, loop)

    def _read(self, index: int) -> np.ndarray:
        path = self.files[index]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"{self.uri}: cannot read image {path} (corrupt or unsupported format?)")
        return image
