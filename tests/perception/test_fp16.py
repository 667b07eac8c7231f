"""The FP16 variant of the demo model on real ONNX Runtime: float16 inside, float32 at the edges, close to FP32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from typer.testing import CliRunner

from perception.engines import create_engine
from perception.fp16 import FP16_TOLERANCE, Fp16Error, convert_to_fp16
from perception.manifest import Manifest, load_manifest, model_id
from perception.trt_build import sample_feeds
from runtime.cli.app import app


@pytest.fixture(scope="module")
def fp16_model(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    result = convert_to_fp16(load_manifest(demo_model), tmp_path_factory.mktemp("fp16"))
    assert all(error <= FP16_TOLERANCE for error in result.max_error.values())
    return load_manifest(result.manifest_path)  # verifies files, sha256 and ONNX inputs/outputs


def test_the_fp16_manifest_verifies_and_names_its_parent(fp16_model: Manifest, demo_model: Path) -> None:
    parent = load_manifest(demo_model)
    assert fp16_model.precision == "fp16"
    assert fp16_model.parent_sha256 == model_id(load_manifest(demo_model))
    assert fp16_model.reference is None and fp16_model.calibration_sha256 is None
    assert (fp16_model.encoder.file, fp16_model.predictor.file) == ("encoder.fp16.onnx", "predictor.fp16.onnx")
    # Same contract: the runtime feeds an FP16 model float32 tensors exactly as it feeds the FP32 one.
    assert fp16_model.encoder.inputs == parent.encoder.inputs
    assert fp16_model.predictor.outputs == parent.predictor.outputs
    assert {s.dtype for s in [*fp16_model.encoder.inputs, *fp16_model.predictor.outputs]} == {"float32"}


def test_the_fp16_rollout_model_is_made_from_the_fp16_predictor_and_equals_stepping_it(fp16_model: Manifest) -> None:
    from planning.world_model import WorldModel

    assert fp16_model.rollout is not None and fp16_model.rollout.file == "rollout.fp16.onnx"
    model = WorldModel(fp16_model)
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((16, fp16_model.latent_dim), dtype=np.float32)
    actions = rng.uniform(-2, 2, (16, 5, fp16_model.action_dim)).astype(np.float32)
    expected, z = [], latent
    for t in range(5):
        z = model.predict(z, np.ascontiguousarray(actions[:, t]))
        expected.append(z)
    # ONNX Runtime may fuse the FP16 body inside the Scan differently from the standalone predictor: agreement to
    # within FP16's own resolution (its epsilon, 9.8e-4, relative), not bit for bit.
    np.testing.assert_allclose(model.rollout(latent, actions), np.stack(expected, axis=1), atol=1e-4, rtol=1e-3)


def test_the_weights_are_float16(fp16_model: Manifest) -> None:
    for part in (fp16_model.encoder, fp16_model.predictor):
        graph = onnx.load(str(fp16_model.path_of(part))).graph
        types = {init.data_type for init in graph.initializer}
        assert TensorProto.FLOAT16 in types and TensorProto.FLOAT not in types


@pytest.mark.parametrize("part", ["encoder", "predictor"])
def test_fp16_matches_fp32_on_onnx_runtime_within_the_stated_tolerance(fp16_model: Manifest, demo_model: Path,
                                                                       part: str) -> None:
    fp32_model = load_manifest(demo_model)
    feeds = sample_feeds(fp32_model, part, 32)  # type: ignore[arg-type]  # the demo's goal images and their latents
    name = "latent" if part == "encoder" else "next_latent"
    reference = create_engine(fp32_model, part, "onnxruntime").run(feeds)[name]  # type: ignore[arg-type]
    found = create_engine(fp16_model, part, "onnxruntime").run(feeds)[name]  # type: ignore[arg-type]
    assert found.dtype == np.float32 and found.shape == reference.shape == (32, 32)
    # Relative to the largest FP32 output, as FP16_TOLERANCE is stated; measured here: about 3e-4.
    assert np.max(np.abs(found - reference)) / np.max(np.abs(reference)) < FP16_TOLERANCE
    assert not np.array_equal(found, reference)  # it really computed with float16 weights


def test_only_an_fp32_model_converts(fp16_model: Manifest, tmp_path: Path) -> None:
    with pytest.raises(Fp16Error, match="convert an fp32 model to fp16, this one is fp16"):
        convert_to_fp16(fp16_model, tmp_path)


def test_convert_fp16_command(demo_model: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["convert-fp16", str(demo_model / "manifest.json"), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'manifest.json'} (fp16)" in result.output
    assert load_manifest(tmp_path).precision == "fp16"
