"""The shipped demo model, and throwaway copies of it that tests may corrupt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEMO_MODEL = Path(__file__).resolve().parents[2] / "models" / "demo"
MODEL_FILES = ("manifest.json", "encoder.onnx", "predictor.onnx", "rollout.onnx", "reference.pt")


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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `gpu` tests, saying what is missing, unless TensorRT, a CUDA binding and a GPU are all here."""
    if item.get_closest_marker("gpu") is None:
        return
    from perception.engines.tensorrt import tensorrt_unavailable

    missing = tensorrt_unavailable()
    if missing is not None:
        pytest.skip(f"needs TensorRT and an NVIDIA GPU: {missing}; run scripts/gpu-selfcheck.sh on a GPU machine")
