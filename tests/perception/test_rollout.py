"""The rollout model: one call for a whole horizon, equal to stepping the predictor, verified like every file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from perception.engines import create_engine
from perception.manifest import Manifest, ManifestError, load_manifest
from planning.world_model import WorldModel


@pytest.fixture(scope="module")
def manifest(demo_model: Path) -> Manifest:
    return load_manifest(demo_model)


def stepped(model: WorldModel, latent: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Every step's latent from the single-step predictor, one call per step."""
    steps = []
    for t in range(actions.shape[1]):
        latent = model.predict(latent, np.ascontiguousarray(actions[:, t]))
        steps.append(latent)
    return np.stack(steps, axis=1)


def feeds(manifest: Manifest, batch: int, steps: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((batch, manifest.latent_dim), dtype=np.float32)
    actions = rng.uniform(manifest.action_low, manifest.action_high, (batch, steps, manifest.action_dim))
    return latent, actions.astype(np.float32)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize(("batch", "steps"), [(1, 1), (256, 5), (7, 12)])
def test_the_rollout_model_equals_stepping_the_predictor(manifest: Manifest, backend: str, batch: int,
                                                         steps: int) -> None:
    model = WorldModel(manifest, backend=backend)  # type: ignore[arg-type]
    assert model.rollout_engine is not None and model.rollout_engine.backend == backend
    latent, actions = feeds(manifest, batch, steps, seed=steps)
    found = model.rollout(latent, actions)
    assert found.shape == (batch, steps, manifest.latent_dim)
    np.testing.assert_allclose(found, stepped(model, latent, actions), atol=1e-5, rtol=0)


def test_onnx_runtime_and_torch_rollouts_agree(manifest: Manifest) -> None:
    latent, actions = feeds(manifest, 16, 5)
    ort_rollout, torch_rollout = (create_engine(manifest, "rollout", backend) for backend in ("onnxruntime", "torch"))
    found, reference = (engine.run({"latent": latent, "actions": actions})["latents"]
                        for engine in (ort_rollout, torch_rollout))
    np.testing.assert_allclose(found, reference, atol=1e-4, rtol=0)


def without_rollout(directory: Path) -> Path:
    """The model as manifests before the rollout model were: no `rollout` key, no file."""
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    del data["rollout"]
    path.write_text(json.dumps(data))
    (directory / "rollout.onnx").unlink()
    return path


def test_a_manifest_without_a_rollout_model_loads_and_steps(model_copy: Path, manifest: Manifest) -> None:
    older = load_manifest(without_rollout(model_copy))
    assert older.rollout is None
    model = WorldModel(older)
    assert model.rollout_engine is None
    latent, actions = feeds(older, 8, 4)
    np.testing.assert_array_equal(model.rollout(latent, actions), stepped(WorldModel(manifest), latent, actions))
    with pytest.raises(ValueError, match=r"names no rollout model"):
        create_engine(older, "rollout")


def edit(directory: Path, key: str, value: object) -> Path:
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    target = data
    *parents, last = key.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(last) if last.isdigit() else last] = value
    path.write_text(json.dumps(data))
    return path


def test_a_missing_rollout_file_is_refused_naming_it(model_copy: Path) -> None:
    (model_copy / "rollout.onnx").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json: rollout\.file: .*rollout\.onnx does not exist"):
        load_manifest(model_copy)


def test_a_changed_rollout_file_is_refused_with_both_hashes(model_copy: Path) -> None:
    path = edit(model_copy, "rollout.sha256", "0" * 64)
    with pytest.raises(ManifestError, match=rf"rollout\.sha256: rollout\.onnx has sha256 [0-9a-f]{{64}}, "
                                            rf"expected {'0' * 64}"):
        load_manifest(path)


def test_a_rollout_shape_the_file_does_not_have_is_refused(model_copy: Path) -> None:
    path = edit(model_copy, "rollout.inputs.1.shape", ["batch", 5, 2])
    with pytest.raises(ManifestError, match=re.escape("rollout.inputs: tensor 'actions' shape expected "
                                                      "['batch', 5, 2], found ['batch', 'horizon', 2] in "
                                                      "rollout.onnx")):
        load_manifest(path)


def test_a_rollout_that_does_not_fit_the_contract_is_refused_without_verify(model_copy: Path) -> None:
    path = edit(model_copy, "rollout.outputs.0.shape", ["batch", "horizon", 31])
    with pytest.raises(ManifestError, match=re.escape("rollout.outputs: tensor 'latents' shape "
                                                      "['batch', 'horizon', 31] does not fit latent_dim "
                                                      "(expected [batch, horizon, 32])")):
        load_manifest(path, verify=False)
