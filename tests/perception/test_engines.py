"""Inference engines on the shipped demo model: ONNX Runtime against the torch reference, batches, bad feeds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.engines import EngineError, create_engine
from perception.manifest import Manifest, load_manifest
from perception.preprocess import Preprocessor


@pytest.fixture(scope="module")
def manifest(demo_model: Path) -> Manifest:
    return load_manifest(demo_model / "manifest.json")


def goal_images(manifest: Manifest) -> np.ndarray:
    """The demo's goal images: real frames of the arm, as the encoder sees them at run time."""
    paths = sorted((manifest.root / "goals").glob("goal_*.png"))
    return np.stack([cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths])


def encoder_feeds(manifest: Manifest, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    frames = goal_images(manifest)
    frames = frames[np.arange(batch) % len(frames)]
    proprio = rng.uniform(-2, 2, (batch, manifest.proprio_dim)).astype(np.float32)
    return {"image": Preprocessor(manifest.image)(frames), "proprio": proprio}


def predictor_feeds(manifest: Manifest, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"latent": rng.standard_normal((batch, manifest.latent_dim), dtype=np.float32),
            "action": rng.uniform(manifest.action_low, manifest.action_high,
                                  (batch, manifest.action_dim)).astype(np.float32)}


FEEDS = {"encoder": encoder_feeds, "predictor": predictor_feeds}


@pytest.mark.parametrize("part", ["encoder", "predictor"])
def test_onnxruntime_matches_the_torch_reference(manifest: Manifest, part: str) -> None:
    feeds = FEEDS[part](manifest, 16, np.random.default_rng(0))
    ort_engine = create_engine(manifest, part, "onnxruntime")  # type: ignore[arg-type]
    torch_engine = create_engine(manifest, part, "torch")  # type: ignore[arg-type]
    assert (ort_engine.backend, torch_engine.backend) == ("onnxruntime", "torch")
    [name] = [spec.name for spec in ort_engine.outputs]
    found, reference = ort_engine.run(feeds)[name], torch_engine.run(feeds)[name]
    assert found.shape == reference.shape == (16, manifest.latent_dim)
    np.testing.assert_allclose(found, reference, atol=1e-4, rtol=0)


@pytest.mark.parametrize("part", ["encoder", "predictor"])
@pytest.mark.parametrize("batch", [1, 256])
def test_batch_sizes_one_and_256_run(manifest: Manifest, part: str, batch: int) -> None:
    engine = create_engine(manifest, part, threads=2)  # type: ignore[arg-type]
    outputs = engine.run(FEEDS[part](manifest, batch, np.random.default_rng(batch)))
    [output] = outputs.values()
    assert output.shape == (batch, manifest.latent_dim)
    assert output.dtype == np.float32 and np.all(np.isfinite(output))


def test_batched_rows_equal_single_rows(manifest: Manifest) -> None:
    engine = create_engine(manifest, "predictor")
    feeds = predictor_feeds(manifest, 8, np.random.default_rng(3))
    batched = engine.run(feeds)["next_latent"]
    single = engine.run({name: array[5:6] for name, array in feeds.items()})["next_latent"]
    np.testing.assert_allclose(single[0], batched[5], atol=1e-5)


def test_image_only_goal_latent_ignores_proprio(manifest: Manifest) -> None:
    engine = create_engine(manifest, "encoder")
    feeds = encoder_feeds(manifest, 4, np.random.default_rng(4))
    with_state = engine.run(feeds)["latent"]
    without = engine.run({"image": feeds["image"], "proprio": np.zeros_like(feeds["proprio"])})["latent"]
    visual = manifest.visual_dim
    np.testing.assert_allclose(with_state[:, :visual], without[:, :visual], atol=1e-6)
    assert not np.allclose(with_state[:, visual:], without[:, visual:])


def test_missing_and_extra_feeds_are_named(manifest: Manifest) -> None:
    engine = create_engine(manifest, "predictor")
    feeds = predictor_feeds(manifest, 2, np.random.default_rng(5))
    with pytest.raises(EngineError, match=r"missing \['action'\], unexpected \['actions'\]"):
        engine.run({"latent": feeds["latent"], "actions": feeds["action"]})


def test_wrong_dtype_and_shape_are_named(manifest: Manifest) -> None:
    engine = create_engine(manifest, "predictor")
    feeds = predictor_feeds(manifest, 2, np.random.default_rng(6))
    with pytest.raises(EngineError, match="input 'action' dtype expected float32, found float64"):
        engine.run({**feeds, "action": feeds["action"].astype(np.float64)})
    with pytest.raises(EngineError, match=r"input 'latent' shape expected \['batch', \d+\], found \[2, 3\]"):
        engine.run({**feeds, "latent": feeds["latent"][:, :3]})
    with pytest.raises(EngineError, match="input 'action' has batch 1, other inputs 2"):
        engine.run({**feeds, "action": feeds["action"][:1]})


def test_unknown_backend_is_refused(manifest: Manifest) -> None:
    with pytest.raises(ValueError, match="unknown inference backend 'tvm'"):
        create_engine(manifest, "encoder", "tvm")  # type: ignore[arg-type]


def test_torch_backend_needs_reference_weights(model_copy: Path) -> None:
    manifest = load_manifest(model_copy)
    manifest.reference = None
    with pytest.raises(ValueError, match="needs the manifest's 'reference' weights"):
        create_engine(manifest, "predictor", "torch")
