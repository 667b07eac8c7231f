"""Board specs, corner detection on rendered views, and each reason a view is rejected."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
from rendered_views import CHARUCO, CHECKERBOARD, Views

from calibration.boards import BoardDetector, BoardError, BoardSpec, Detection, Rejection, board_image
from calibration.lens import project_points


def test_specs_parse_and_print_back() -> None:
    checker = BoardSpec.parse("checkerboard:9x6:0.025")
    assert (checker.kind, checker.corner_grid, checker.square_m, checker.corner_count) == (
        "checkerboard", (9, 6), 0.025, 54)
    assert checker.squares == (10, 7)
    charuco = BoardSpec.parse("charuco:11x8:0.030:0.022:5x5_100")  # the DICT_ prefix may be left out
    assert (charuco.corner_grid, charuco.marker_m, charuco.dictionary) == ((10, 7), 0.022, "DICT_5X5_100")
    for spec in (checker, charuco):
        assert BoardSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("checkerboard:9x6", "expected checkerboard:COLSxROWS:SQUARE_M"),
    ("circles:4x11:0.02", "expected checkerboard"),
    ("checkerboard:9by6:0.025", "size '9by6' is not COLSxROWS"),
    ("checkerboard:9x6:-0.025", "square size '-0.025' is not a positive length"),
    ("checkerboard:9x6:25mm", "square size '25mm' is not a positive length"),
    ("checkerboard:2x6:0.025", "at least 3x3 inner corners"),
    ("charuco:11x8:0.03:0.04:DICT_5X5_100", "marker (0.04 m) must be smaller than the square"),
    ("charuco:11x8:0.03:0.02:DICT_9X9_7", "unknown ArUco dictionary 'DICT_9X9_7'"),
    ("charuco:20x20:0.03:0.02:DICT_4X4_50", "200 markers needed but DICT_4X4_50 has only 50"),
])
def test_bad_specs_are_refused_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(BoardError, match=re.escape(message)) as error:
        BoardSpec.parse(text)
    assert repr(text) in str(error.value)


def test_the_printable_image_puts_the_first_corner_where_its_matrix_says() -> None:
    spec = BoardSpec.parse(CHECKERBOARD)
    image, board_to_image = board_image(spec, px_per_square=20, margin_px=10)
    assert image.shape == (7 * 20 + 20, 10 * 20 + 20)
    x, y, _ = board_to_image @ np.array([0.0, 0.0, 1.0])  # the first inner corner, between pixel centres
    assert (x, y) == (29.5, 29.5)
    # Black top-left square (its pixels up-left of the first corner), white to its right and below.
    assert image[25, 25] == 0 and image[25, 35] == 255 and image[35, 25] == 255 and image[35, 35] == 0
    assert image[5, 5] == 255  # the margin


@pytest.mark.parametrize(("fixture", "tolerance_px"), [("pinhole_views", 0.3), ("charuco_views", 0.5)])
def test_detected_corners_are_where_the_camera_projects_them(fixture: str, tolerance_px: float,
                                                            request: pytest.FixtureRequest) -> None:
    views: Views = request.getfixturevalue(fixture)
    detector = BoardDetector(views.spec)
    board = views.spec.object_points()
    truth = views.truth
    worst, rms = [], []
    for image, pose in zip(views.images[:6], views.poses[:6], strict=True):
        found = detector.detect(image)
        assert isinstance(found, Detection), found
        expected = project_points(truth.model, truth.camera_matrix, truth.dist_coeffs, board[found.ids],
                                  pose.rvec, pose.tvec)
        worst.append(float(np.abs(found.corners - expected).max()))
        rms.append(float(np.sqrt(np.mean(np.sum((found.corners - expected) ** 2, axis=1)))))
        assert found.sharpness > 100
    # Ids index the board's object points in the same order for both board kinds: sub-pixel agreement.
    # (ChArUco corners are refined by OpenCV's detector in a window kept clear of the markers: less exact.)
    assert max(worst) < tolerance_px, worst
    assert max(rms) < 0.2, rms


def _scene_without_board() -> np.ndarray:
    rng = np.random.default_rng(4)
    image = np.full((480, 640, 3), 128, np.uint8)
    for _ in range(40):
        x, y = rng.integers(0, 600), rng.integers(0, 440)
        w, h = rng.integers(10, 120, 2)
        cv2.rectangle(image, (int(x), int(y)), (int(x + w), int(y + h)), [int(v) for v in rng.integers(0, 255, 3)], -1)
    return image


@pytest.mark.parametrize("board", [CHECKERBOARD, CHARUCO])
def test_a_sharp_scene_without_a_board_is_no_board(board: str) -> None:
    found = BoardDetector(BoardSpec.parse(board)).detect(_scene_without_board())
    assert isinstance(found, Rejection) and found.reason == "no_board"


def test_blurred_views_are_rejected_as_blurred(pinhole_views: Views) -> None:
    detector = BoardDetector(pinhole_views.spec)
    image = pinhole_views.images[0]
    assert isinstance(detector.detect(cv2.GaussianBlur(image, (0, 0), 1.0)), Detection)
    # Too blurred to find anything: judged on the image.
    lost = detector.detect(cv2.GaussianBlur(image, (0, 0), 5.0))
    assert isinstance(lost, Rejection) and lost.reason == "blurred"
    assert re.search(r"no board found and the image is too blurred: sharpness \d+ < 30", lost.detail)
    # Found, but softer than the threshold: judged on the board.
    found = detector.detect(cv2.GaussianBlur(image, (0, 0), 2.0))
    assert isinstance(found, Detection)
    strict = BoardDetector(pinhole_views.spec, min_sharpness=found.sharpness + 1).detect(
        cv2.GaussianBlur(image, (0, 0), 2.0))
    assert isinstance(strict, Rejection) and strict.reason == "blurred"
    assert strict.detail.startswith("board too blurred")


def _cut(views: Views, index: int) -> np.ndarray:
    """View `index` cropped through the middle of the board: the image border cuts the board in two."""
    found = BoardDetector(views.spec).detect(views.images[index])
    assert isinstance(found, Detection)
    middle = int(np.median(found.corners[:, 0]))
    return views.images[index][:, :middle].copy()


def test_a_checkerboard_cut_by_the_image_border_is_partial(pinhole_views: Views) -> None:
    found = BoardDetector(pinhole_views.spec).detect(_cut(pinhole_views, 0))
    assert isinstance(found, Rejection) and found.reason == "partial", found
    assert re.fullmatch(r"partial board: \d+ of 54 corners in view \(the whole checkerboard must be visible\)",
                        found.detail)


def test_a_charuco_board_cut_in_half_is_partial(charuco_views: Views) -> None:
    image = _cut(charuco_views, 0)
    found = BoardDetector(charuco_views.spec).detect(image)
    assert isinstance(found, Rejection) and found.reason == "partial", found
    assert re.search(r"partial board: \d+ of 48 corners found \(\d+ markers\), at least 24 needed", found.detail)
    # A lower bar accepts the same view with the corners that are in it.
    accepted = BoardDetector(charuco_views.spec, min_charuco_fraction=0.2).detect(image)
    assert isinstance(accepted, Detection) and 10 <= len(accepted.ids) < 24


def test_a_spec_that_counts_squares_instead_of_corners_is_explained(pinhole_views: Views) -> None:
    found = BoardDetector(BoardSpec.parse("checkerboard:8x6:0.025")).detect(pinhole_views.images[1])
    assert isinstance(found, Rejection) and found.reason == "no_board"
    assert "a checkerboard of 9x6 inner corners is in view, not 8x6" in found.detail


def test_a_charuco_board_half_covered_inside_the_image_is_not_called_partial(charuco_views: Views) -> None:
    detector = BoardDetector(charuco_views.spec)
    found = [detector.detect(image) for image in charuco_views.images]
    # The view whose board stays farthest from the image border.
    def margin(d: Detection) -> float:
        return float(min(d.corners.min(), (639 - d.corners[:, 0]).min(), (479 - d.corners[:, 1]).min()))
    index = max((i for i, d in enumerate(found) if isinstance(d, Detection)), key=lambda i: margin(found[i]))
    corners = found[index].corners  # type: ignore[union-attr]
    image = charuco_views.images[index].copy()
    left = int(np.median(corners[:, 0]))
    top, bottom = int(corners[:, 1].min()) - 40, int(corners[:, 1].max()) + 40
    image[max(top, 0):bottom, left:int(corners[:, 0].max()) + 40] = 110  # a grey card over the right half
    covered = detector.detect(image)
    assert isinstance(covered, Rejection) and covered.reason == "no_board", covered
    assert covered.detail.endswith("the board is too small in the image, too oblique, badly lit or partly covered")
