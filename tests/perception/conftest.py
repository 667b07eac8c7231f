"""The shipped demo model, and throwaway copies of it that tests may corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEMO_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo"
MODEL_FILES = ("manifest.json", "encoder.onnx", "predictor.onnx", "reference.pt")


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The shipped demo model's directory."""
    return DEMO_MODEL


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the demo model's files (no goals); returns its directory."""
    target = tmp_path / "model"
    target.mkdir()
    for name in MODEL_FILES:
        shutil.copy(DEMO_MODEL / name, target / name)
    return target
