"""Calibration boards: the spec syntax, their geometry, finding them in images, and printable images.

Spec syntax (docs/calibration.md):

- `checkerboard:COLSxROWS:SQUARE` — COLS x ROWS *inner* corners (as OpenCV and ROS count them; a board of
  10 x 7 squares is `9x6`), SQUARE the side of one square in metres. Example: `checkerboard:9x6:0.025`.
- `charuco:COLSxROWS:SQUARE:MARKER:DICT` — COLS x ROWS *squares*, SQUARE and MARKER the sides of a square
  and of a marker in metres, DICT an OpenCV ArUco dictionary (`DICT_5X5_100`, ...). Example:
  `charuco:11x8:0.030:0.022:DICT_5X5_100`. OpenCV >= 4.6 layout (not the legacy one).

The board frame: x along a row of corners, y down the columns, z into the board; the origin is the first
inner corner of a checkerboard and the outer top-left corner of a ChArUco board.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

BoardKind = Literal["checkerboard", "charuco"]
RejectReason = Literal["no_board", "blurred", "partial"]

# Sharpness (see `sharpness` and BoardDetector) below which a view counts as too blurred for sub-pixel
# corners. A sharp board scores several hundred at any size in the image; a Gaussian blur of sigma 2 px about
# 60, of 3 px about 25.
DEFAULT_MIN_SHARPNESS = 30.0
# Board sharpness is scaled to squares of this many pixels: the variance of the Laplacian falls with the
# share of edge pixels, so a close-up board would otherwise look blurred.
_REFERENCE_SQUARE_PX = 32.0
# Without a board, sharpness is that of the sharpest tile of this grid: a sharp board that was not
# recognized may fill only part of a flat scene.
_TILES = 4
# A ChArUco view needs at least this share of the board's corners: fewer are too few to constrain the
# view's pose and are reported as partial.
DEFAULT_MIN_CHARUCO_FRACTION = 0.5
# Boards are searched for on images at most this wide (a 12 MP photo takes seconds otherwise); the corners
# are then refined on the full image.
_DETECT_WIDTH = 1280
# A partial checkerboard is recognized by finding any grid grown from a seed of these many inner corners.
_PARTIAL_SEEDS = ((4, 4), (3, 3))

_SPEC_HELP = ("expected checkerboard:COLSxROWS:SQUARE_M (inner corners, e.g. checkerboard:9x6:0.025) or "
              "charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT (squares, e.g. charuco:11x8:0.030:0.022:DICT_5X5_100)")


class BoardError(ValueError):
    """A board spec that cannot be used; the text names the spec and the field."""


def _aruco_dictionary_names() -> list[str]:
    return sorted(name for name in dir(cv2.aruco) if re.fullmatch(r"DICT_[0-9A-Z_]+", name))


@dataclass(frozen=True)
class BoardSpec:
    kind: BoardKind
    cols: int  # checkerboard: inner corners per row; charuco: squares per row
    rows: int  # checkerboard: inner corners per column; charuco: squares per column
    square_m: float
    marker_m: float = 0.0  # charuco only
    dictionary: str = ""  # charuco only: an OpenCV ArUco dictionary name

    @classmethod
    def parse(cls, text: str) -> BoardSpec:
        kind, _, rest = text.strip().partition(":")
        fields = rest.split(":") if rest else []
        if kind == "checkerboard" and len(fields) == 2:
            size, square = fields
            spec = cls("checkerboard", *_grid(text, size), _length(text, "square size", square))
            if min(spec.cols, spec.rows) < 3:
                raise BoardError(f"board {text!r}: a checkerboard needs at least 3x3 inner corners")
            return spec
        if kind == "charuco" and len(fields) == 4:
            size, square, marker, dictionary = fields
            cols, rows = _grid(text, size)
            square_m, marker_m = _length(text, "square size", square), _length(text, "marker size", marker)
            if min(cols, rows) < 3:
                raise BoardError(f"board {text!r}: a ChArUco board needs at least 3x3 squares")
            if marker_m >= square_m:
                raise BoardError(f"board {text!r}: the marker ({marker_m} m) must be smaller than the square "
                                 f"({square_m} m)")
            name = dictionary.upper()
            name = name if name.startswith("DICT_") else "DICT_" + name
            if name not in _aruco_dictionary_names():
                raise BoardError(f"board {text!r}: unknown ArUco dictionary {dictionary!r}; one of "
                                 f"{', '.join(_aruco_dictionary_names())}")
            spec = cls("charuco", cols, rows, square_m, marker_m, name)
            markers = (cols * rows) // 2
            available = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)).bytesList.shape[0]
            if markers > available:
                raise BoardError(f"board {text!r}: {markers} markers needed but {name} has only {available}")
            return spec
        raise BoardError(f"board {text!r}: {_SPEC_HELP}")

    def __str__(self) -> str:
        if self.kind == "checkerboard":
            return f"checkerboard:{self.cols}x{self.rows}:{self.square_m:g}"
        return f"charuco:{self.cols}x{self.rows}:{self.square_m:g}:{self.marker_m:g}:{self.dictionary}"

    @property
    def corner_grid(self) -> tuple[int, int]:
        """Inner corners (per row, per column)."""
        return (self.cols, self.rows) if self.kind == "checkerboard" else (self.cols - 1, self.rows - 1)

    @property
    def corner_count(self) -> int:
        cols, rows = self.corner_grid
        return cols * rows

    @property
    def squares(self) -> tuple[int, int]:
        return (self.cols + 1, self.rows + 1) if self.kind == "checkerboard" else (self.cols, self.rows)

    def object_points(self) -> np.ndarray:
        """(corner_count, 3) float32 board-frame positions of the inner corners, row by row: id i is row
        i // cols, column i % cols (the order the detectors report them in)."""
        cols, rows = self.corner_grid
        first = 0.0 if self.kind == "checkerboard" else self.square_m  # charuco: origin at the outer corner
        grid = np.mgrid[0:rows, 0:cols].astype(np.float64)
        points = np.zeros((rows * cols, 3), dtype=np.float32)
        points[:, 0] = first + grid[1].ravel() * self.square_m
        points[:, 1] = first + grid[0].ravel() * self.square_m
        return points

    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.cols, self.rows), self.square_m, self.marker_m, dictionary)


def _grid(text: str, size: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)[xX](\d+)", size)
    if match is None:
        raise BoardError(f"board {text!r}: size {size!r} is not COLSxROWS, e.g. 9x6")
    return int(match[1]), int(match[2])


def _length(text: str, what: str, value: str) -> float:
    try:
        metres = float(value)
    except ValueError:
        metres = math.nan
    if not (math.isfinite(metres) and metres > 0):
        raise BoardError(f"board {text!r}: {what} {value!r} is not a positive length in metres")
    return metres


def board_image(spec: BoardSpec, px_per_square: int, margin_px: int) -> tuple[np.ndarray, np.ndarray]:
    """A printable grey image of the board with a white margin, and the 3x3 matrix that maps board-frame
    (x, y, 1) in metres to its pixel coordinates (pixel centres at integers, as OpenCV's)."""
    cols, rows = spec.squares
    width, height = cols * px_per_square + 2 * margin_px, rows * px_per_square + 2 * margin_px
    if spec.kind == "charuco":
        image = spec.charuco_board().generateImage((width, height), marginSize=margin_px, borderBits=1)
        origin = margin_px - 0.5
    else:
        image = np.full((height, width), 255, dtype=np.uint8)
        for row in range(rows):
            for col in range(cols):
                if (row + col) % 2 == 0:  # the top-left square is black
                    top, left = margin_px + row * px_per_square, margin_px + col * px_per_square
                    image[top:top + px_per_square, left:left + px_per_square] = 0
        origin = margin_px + px_per_square - 0.5  # the first inner corner
    scale = px_per_square / spec.square_m
    board_to_image = np.array([[scale, 0.0, origin], [0.0, scale, origin], [0.0, 0.0, 1.0]])
    return image, board_to_image


@dataclass
class Detection:
    """Corners of one board view: `ids` index `BoardSpec.object_points()`."""

    corners: np.ndarray  # (n, 2) float32 pixel positions, refined to sub-pixel
    ids: np.ndarray  # (n,) int32
    sharpness: float  # of the board's bounding box, scaled to 32 px squares (BoardDetector)


@dataclass
class Rejection:
    reason: RejectReason
    detail: str


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian after a 1 px Gaussian (so sensor noise does not count as detail): high for
    sharp edges, low for blurred or flat images."""
    return float(cv2.Laplacian(cv2.GaussianBlur(gray, (0, 0), 1.0), cv2.CV_64F).var())


def _sharpest_tile(gray: np.ndarray) -> float:
    height, width = gray.shape
    return max(sharpness(gray[i * height // _TILES:(i + 1) * height // _TILES,
                              j * width // _TILES:(j + 1) * width // _TILES])
               for i in range(_TILES) for j in range(_TILES))


def _corner_spacing(corners: np.ndarray, ids: np.ndarray, cols: int) -> float:
    """Median distance in pixels between corners found side by side in a row: the squares' size."""
    position = {int(i): k for k, i in enumerate(ids)}
    steps = [np.linalg.norm(corners[position[i + 1]] - corners[k]) for i, k in position.items()
             if (i + 1) % cols != 0 and i + 1 in position]
    return float(np.median(steps)) if steps else _REFERENCE_SQUARE_PX


class BoardDetector:
    """Finds one board in BGR or grey images; a view that cannot be used gets a Rejection with its reason.

    Reasons: `no_board`; `partial` (a checkerboard not wholly in view, or a ChArUco board with fewer than
    `min_charuco_fraction` of its corners); `blurred`: sharpness below `min_sharpness`, where sharpness is
    that of the board's bounding box times its square size in pixels / 32 (blur in pixels, whatever the
    board's size in the image), or, when no board is found, that of the sharpest of 4x4 tiles.
    """

    def __init__(self, spec: BoardSpec, min_sharpness: float = DEFAULT_MIN_SHARPNESS,
                 min_charuco_fraction: float = DEFAULT_MIN_CHARUCO_FRACTION) -> None:
        self.spec = spec
        self.min_sharpness = min_sharpness
        self.min_charuco_fraction = min_charuco_fraction
        self._charuco = cv2.aruco.CharucoDetector(spec.charuco_board()) if spec.kind == "charuco" else None

    def detect(self, image: np.ndarray) -> Detection | Rejection:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        found = self._checkerboard(gray) if self._charuco is None else self._charuco_corners(gray)
        if isinstance(found, Rejection):
            return found
        corners, ids = found
        left, top = np.floor(corners.min(axis=0)).astype(int)
        right, bottom = np.ceil(corners.max(axis=0)).astype(int)
        region = gray[max(top, 0):bottom + 1, max(left, 0):right + 1]
        spacing = _corner_spacing(corners, ids, self.spec.corner_grid[0])
        value = sharpness(region) * spacing / _REFERENCE_SQUARE_PX
        if value < self.min_sharpness:
            return Rejection("blurred", f"board too blurred: sharpness {value:.0f} < {self.min_sharpness:g}")
        return Detection(corners, ids, value)

    def _not_found(self, gray: np.ndarray, hint: Rejection | None) -> Rejection:
        value = _sharpest_tile(gray)
        if value < self.min_sharpness:
            return Rejection("blurred", f"no board found and the image is too blurred: sharpness {value:.0f} < "
                                        f"{self.min_sharpness:g}")
        if hint is not None:
            return hint
        return Rejection("no_board", f"no {self.spec.kind} {self.spec.corner_grid[0]}x"
                                     f"{self.spec.corner_grid[1]} (inner corners) found")

    def _checkerboard(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | Rejection:
        scale = min(1.0, _DETECT_WIDTH / gray.shape[1])
        small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_FAST_CHECK
        found, corners = cv2.findChessboardCorners(small, self.spec.corner_grid, flags=flags)
        if not found:
            return self._not_found(gray, self._partial(small))
        corners = corners.reshape(-1, 2) / scale if scale != 1.0 else corners.reshape(-1, 2)
        corners = _refine(gray, corners, self.spec.corner_grid)
        return corners, np.arange(len(corners), dtype=np.int32)

    def _partial(self, small: np.ndarray) -> Rejection | None:
        """Why a checkerboard was not found, when some grid of checkerboard corners is in view."""
        # The sector-based detector with CALIB_CB_LARGER grows the largest grid it can from a seed of the given
        # size; from a 3x3 seed it sometimes stops early, so the larger of two tries counts.
        tries = [cv2.findChessboardCornersSBWithMeta(small, seed, cv2.CALIB_CB_LARGER) for seed in _PARTIAL_SEEDS]
        found = [(grid, meta) for ok, grid, meta in tries if ok]
        if not found:
            return None
        grid, meta = max(found, key=lambda item: len(item[0]))
        rows, cols = meta.shape
        spec_cols, spec_rows = self.spec.corner_grid
        seen, wanted = sorted((cols, rows)), sorted((spec_cols, spec_rows))
        if seen[0] > wanted[0] or seen[1] > wanted[1]:
            return Rejection("no_board", f"a checkerboard of {cols}x{rows} inner corners is in view, not "
                                         f"{spec_cols}x{spec_rows} (the spec counts inner corners, not squares)")
        if seen == wanted:
            return Rejection("no_board", "the whole checkerboard is in view but its corners could not be located "
                                         "(too oblique, glare or uneven light?)")
        # The board goes on beyond the grid found: out of the image if the grid reaches near its border.
        points = grid.reshape(rows, cols, 2)
        spacing = float(np.median(np.linalg.norm(np.diff(points, axis=1), axis=2)))
        height, width = small.shape[:2]
        border = min(points[..., 0].min(), points[..., 1].min(), width - 1 - points[..., 0].max(),
                     height - 1 - points[..., 1].max())
        if border > 1.5 * spacing:
            return Rejection("no_board", f"only {len(grid)} of the {self.spec.corner_count} corners were recognized "
                                         "(board too oblique, too small, or partly covered)")
        return Rejection("partial", f"partial board: {len(grid)} of {self.spec.corner_count} corners in view "
                                    "(the whole checkerboard must be visible)")

    def _charuco_corners(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray] | Rejection:
        assert self._charuco is not None
        # The detector refines ChArUco corners with cornerSubPix itself, its window kept clear of the markers.
        corners, ids, markers, marker_ids = self._charuco.detectBoard(gray)
        count = 0 if ids is None else len(ids)
        needed = max(4, math.ceil(self.min_charuco_fraction * self.spec.corner_count))
        if count < needed:
            hint = None
            if marker_ids is not None and len(marker_ids) > 0:
                found = f"{count} of {self.spec.corner_count} corners found ({len(marker_ids)} markers), at least " \
                        f"{needed} needed"
                hint = Rejection("partial", f"partial board: {found}") if _near_border(gray, markers) else \
                    Rejection("no_board", f"{found}: the board is too small in the image, too oblique, badly lit "
                                          "or partly covered")
            return self._not_found(gray, hint)
        return corners.reshape(-1, 2).astype(np.float32), ids.ravel().astype(np.int32)


def _near_border(gray: np.ndarray, markers: Sequence[np.ndarray]) -> bool:
    """Whether decoded markers come within two marker sizes of the image border: the board may go on
    beyond it."""
    points = np.concatenate([m.reshape(-1, 2) for m in markers])
    side = float(np.median([np.linalg.norm(m.reshape(4, 2)[1] - m.reshape(4, 2)[0]) for m in markers]))
    height, width = gray.shape
    border = min(points.min(), (width - 1 - points[:, 0]).min(), (height - 1 - points[:, 1]).min())
    return bool(border < 2 * side)


def _refine(gray: np.ndarray, corners: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """cornerSubPix with a window of 0.4 of the smallest corner spacing, so it never reaches a neighbour."""
    cols, rows = grid
    points = corners.reshape(rows, cols, 2)
    spacing = min(np.linalg.norm(np.diff(points, axis=0), axis=2).min(),
                  np.linalg.norm(np.diff(points, axis=1), axis=2).min())
    half = int(np.clip(round(0.4 * spacing), 2, 15))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 50, 0.001)
    refined = cv2.cornerSubPix(gray, corners.astype(np.float32).reshape(-1, 1, 2), (half, half), (-1, -1), criteria)
    return refined.reshape(-1, 2)
