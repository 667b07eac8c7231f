"""Session fixtures: the rendered view sets of rendered_views.py."""

from __future__ import annotations

import pytest
from rendered_views import CHARUCO, CHECKERBOARD, Views, render_views


@pytest.fixture(scope="session")
def pinhole_views() -> Views:
    return render_views("pinhole", CHECKERBOARD, 14, seed=1)


@pytest.fixture(scope="session")
def fisheye_views() -> Views:
    return render_views("fisheye", CHECKERBOARD, 14, seed=2)


@pytest.fixture(scope="session")
def charuco_views() -> Views:
    return render_views("pinhole", CHARUCO, 12, seed=3)
