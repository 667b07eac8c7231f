"""How much of the image the board views covered: the union of the boards' outlines."""

from __future__ import annotations

import cv2
import numpy as np

# Outlines are rasterized at this width at most: the fraction is the same to a fraction of a percent.
_MASK_WIDTH = 320


class Coverage:
    """The union of the convex outlines of board corners seen so far, and a coarse grid of cells over it.

    `fraction` is the share of the image area inside at least one outline. A grid cell counts as covered
    when at least half of it is; `new_cells` tells how many cells a view would add.
    """

    def __init__(self, size: tuple[int, int], grid: tuple[int, int] = (8, 6)) -> None:
        width, height = size
        self.scale = min(1.0, _MASK_WIDTH / width)
        self.mask = np.zeros((max(1, round(height * self.scale)), max(1, round(width * self.scale))), np.uint8)
        self.grid = grid

    def outline(self, corners: np.ndarray) -> np.ndarray:
        """A mask (like `mask`) of the convex hull of one view's corners."""
        mask = np.zeros_like(self.mask)
        hull = cv2.convexHull(np.round(np.asarray(corners, np.float64).reshape(-1, 2) * self.scale).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 1)
        return mask

    def _cells(self, mask: np.ndarray) -> np.ndarray:
        cols, rows = self.grid
        share = cv2.resize(mask.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
        return share >= 0.5

    def new_cells(self, corners: np.ndarray) -> int:
        return int(np.count_nonzero(self._cells(self.outline(corners) | self.mask) & ~self._cells(self.mask)))

    def add(self, corners: np.ndarray) -> None:
        self.mask |= self.outline(corners)

    @property
    def fraction(self) -> float:
        return float(self.mask.mean())
