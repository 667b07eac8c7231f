"""Board images from files: a folder or a glob pattern, read with errors that name the file."""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.boards import BoardDetector, Detection, Rejection
from calibration.intrinsics import BoardView

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ImageError(ValueError):
    """Images that cannot be used; the text names the file or pattern."""


def image_paths(pattern: str) -> list[Path]:
    """The image files of a folder, or those matching a glob pattern (`shots/*.jpg`), sorted by name."""
    folder = Path(pattern)
    if folder.is_dir():
        paths = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        where = f"folder {folder}"
    else:
        paths = [Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES]
        where = f"{pattern!r}"
    if not paths:
        raise ImageError(f"no image files ({' '.join(sorted(IMAGE_SUFFIXES))}) in {where}")
    return sorted(paths)


def read_image(path: Path) -> np.ndarray:
    """A BGR uint8 image; ImageError naming the file if it is missing or does not decode."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "no such file" if not path.is_file() else "corrupt or not an image format OpenCV reads"
        raise ImageError(f"{path}: cannot read the image ({reason})")
    return image


def check_size(path: Path | str, image: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    """The image's (width, height); ImageError if it differs from `size` (one camera, one resolution)."""
    found = (image.shape[1], image.shape[0])
    if size is not None and found != size:
        raise ImageError(f"{path}: {found[0]}x{found[1]} pixels, but the other images are {size[0]}x{size[1]}: "
                         "a calibration holds for one camera at one resolution")
    return found


@dataclass
class ImageDetections:
    size: tuple[int, int]
    views: list[BoardView] = field(default_factory=list)
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)  # view name -> file


def detect_images(paths: Sequence[Path], detector: BoardDetector,
                  progress: Callable[[int], None] | None = None) -> ImageDetections:
    """Find the board in every image; `progress(done)` after each."""
    size: tuple[int, int] | None = None
    result = ImageDetections((0, 0))
    # Views are named by file name, or by path where two files share a name.
    unique = len({p.name for p in paths}) == len(paths)
    for done, path in enumerate(paths, start=1):
        name = path.name if unique else str(path)
        image = read_image(path)
        size = check_size(path, image, size)
        found = detector.detect(image)
        if isinstance(found, Detection):
            result.views.append(BoardView(name, found))
        else:
            result.rejected.append((name, found))
        result.paths[name] = path
        if progress is not None:
            progress(done)
    assert size is not None
    result.size = size
    return result
