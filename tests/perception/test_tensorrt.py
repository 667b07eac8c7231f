"""The TensorRT backend: fallbacks and errors on any machine, build/cache/run on a GPU machine (marked `gpu`).

The `gpu` tests skip unless tensorrt, pycuda or cuda-python and a GPU are all present (tests/perception/conftest.py);
scripts/gpu-selfcheck.sh runs them on a GPU machine.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from perception.engines import Engine, EngineError, create_engine
from perception.engines.cuda_memory import BINDING_VARIABLE, CudaError, binding_name, gpus, missing_binding, open_memory
from perception.engines.tensorrt import TensorRTEngine, tensorrt_unavailable
from perception.fp16 import convert_to_fp16
from perception.manifest import Manifest, load_manifest
from perception.trt_build import (
    ENCODER_BATCH,
    BatchRange,
    EngineCache,
    Part,
    check_engine,
    compare_outputs,
    open_engine,
    predictor_batch,
    profile_shapes,
    rollout_horizon,
    sample_feeds,
)
from planning.world_model import WorldModel
from runtime.cli.app import app

MISSING = tensorrt_unavailable()
without_tensorrt = pytest.mark.skipif(MISSING is None, reason="TensorRT can run here; these check the fallback")


@pytest.fixture(scope="module")
def manifest(demo_model: Path) -> Manifest:
    return load_manifest(demo_model / "manifest.json")


def goal_frame(manifest: Manifest) -> np.ndarray:
    return np.asarray(cv2.imread(str(manifest.root / "goals" / "goal_003.png"), cv2.IMREAD_COLOR))


# -- any machine -------------------------------------------------------------------------------------------------

@without_tensorrt
def test_backend_auto_falls_back_to_onnxruntime_and_says_why(manifest: Manifest,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from perception import engines

    engines._log_fallback.cache_clear()
    with caplog.at_level(logging.WARNING, logger="perception.engines"):
        engine = create_engine(manifest, "predictor", "auto")
    assert engine.backend == "onnxruntime"
    assert f"backend auto: running onnxruntime because TensorRT cannot run here: {MISSING}" in caplog.text
    feeds = sample_feeds(manifest, "predictor", 4)
    assert engine.run(feeds)["next_latent"].shape == (4, manifest.latent_dim)


@without_tensorrt
def test_the_world_model_reports_the_backend_auto_chose(manifest: Manifest) -> None:
    model = WorldModel(manifest, backend="auto")
    assert model.backend == "onnxruntime"  # the run summary's "backend"
    assert model.encode(goal_frame(manifest), None).shape == (manifest.latent_dim,)


@without_tensorrt
def test_backend_tensorrt_names_what_is_missing(manifest: Manifest) -> None:
    with pytest.raises(EngineError) as error:
        create_engine(manifest, "encoder", "tensorrt")
    message = str(error.value)
    assert message.startswith("backend 'tensorrt' cannot run here: ")
    assert MISSING is not None and MISSING in message
    assert any(piece in message for piece in ("tensorrt does not import", "pycuda nor cuda-python", "no CUDA GPU"))


@pytest.mark.skipif(binding_name() is not None, reason="a CUDA binding imports here")
def test_without_a_cuda_binding_no_device_memory_opens() -> None:
    assert gpus() == []
    with pytest.raises(CudaError, match="neither pycuda nor cuda-python imports"):
        open_memory()


def test_the_binding_variable_names_what_is_wrong_with_it(monkeypatch: pytest.MonkeyPatch,
                                                         manifest: Manifest) -> None:
    monkeypatch.setenv(BINDING_VARIABLE, "cupy")
    assert binding_name() is None
    assert missing_binding() == f"{BINDING_VARIABLE}='cupy' is not one of pycuda, cuda-python"
    with pytest.raises(CudaError, match=f"{BINDING_VARIABLE}='cupy' is not one of"):
        open_memory()
    with pytest.raises(EngineError, match=f"{BINDING_VARIABLE}='cupy'"):
        create_engine(manifest, "encoder", "tensorrt")
    for name in ("pycuda", "cuda-python"):
        monkeypatch.setenv(BINDING_VARIABLE, name)
        chosen = binding_name()
        assert chosen in (name, None)  # that binding or nothing, never the other one
        assert (missing_binding() is None) == (chosen == name)
        if chosen is None:
            assert missing_binding() == f"{BINDING_VARIABLE}={name}, and {name} does not import"


@without_tensorrt
def test_build_engine_refuses_where_tensorrt_cannot_run(demo_model: Path) -> None:
    result = CliRunner().invoke(app, ["build-engine", str(demo_model), "--samples", "64"])
    assert result.exit_code == 2
    assert f"TensorRT cannot run here: {MISSING}" in result.output


def test_build_engine_takes_samples_or_a_config_not_both(demo_model: Path) -> None:
    result = CliRunner().invoke(app, ["build-engine", str(demo_model), "--samples", "64", "--config",
                                      "configs/demo.yaml"])
    assert result.exit_code == 2 and "give --samples or --config, not both" in result.output


class _Offset(Engine):
    """A real ONNX Runtime engine whose outputs are shifted: an engine that computes the wrong thing."""

    backend = "offset"

    def __init__(self, inner: Engine, offset: float) -> None:
        super().__init__("offset", inner.inputs, inner.outputs)
        self._inner, self._offset = inner, offset

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: array + self._offset for name, array in self._inner.run(feeds).items()}


def test_the_acceptance_check_passes_a_faithful_engine_and_fails_a_wrong_one(manifest: Manifest) -> None:
    reference = create_engine(manifest, "predictor")
    batch = predictor_batch(16)
    faithful = check_engine(reference, manifest, "predictor", batch)
    assert [c.batch for c in faithful] == [1, 16, 32] and all(c.ok and c.max_error == 0 for c in faithful)
    wrong = check_engine(_Offset(reference, 0.5), manifest, "predictor", batch)
    assert not any(c.ok for c in wrong)


def test_check_inputs_are_real_frames_and_their_latents(manifest: Manifest) -> None:
    encoder = sample_feeds(manifest, "encoder", 3)
    assert encoder["image"].shape == (3, 3, 64, 64) and encoder["proprio"].shape == (3, manifest.proprio_dim)
    predictor = sample_feeds(manifest, "predictor", 5)
    latents = create_engine(manifest, "encoder").run(sample_feeds(manifest, "encoder", 5))["latent"]
    np.testing.assert_array_equal(predictor["latent"], latents)
    assert np.all(predictor["action"] >= manifest.action_low) and np.all(predictor["action"] <= manifest.action_high)


def test_the_rollout_profile_spans_the_batch_and_the_horizon(manifest: Manifest) -> None:
    assert manifest.rollout is not None
    profile = profile_shapes(manifest.rollout, predictor_batch(32), rollout_horizon(5))
    assert profile == {"latent": ((1, 32), (32, 32), (64, 32)), "actions": ((1, 1, 2), (32, 5, 2), (64, 10, 2))}
    feeds = sample_feeds(manifest, "rollout", 3, steps=4)
    assert feeds["actions"].shape == (3, 4, 2) and feeds["latent"].shape == (3, manifest.latent_dim)


# -- GPU machine -------------------------------------------------------------------------------------------------

@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EngineCache:
    """A private engine cache, also the one backend 'tensorrt' uses in these tests."""
    monkeypatch.setenv("EDGELOOP_ENGINE_CACHE", str(tmp_path / "engines"))
    return EngineCache.default()


@pytest.fixture(scope="module")
def fp16_manifest(manifest: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return load_manifest(convert_to_fp16(manifest, tmp_path_factory.mktemp("fp16")).manifest_path)


@pytest.fixture
def engines_closed() -> Iterator[list[TensorRTEngine]]:
    """Engines a test opened, closed after it (their buffers, stream and thread), even when it fails."""
    opened: list[TensorRTEngine] = []
    yield opened
    for engine in opened:
        engine.close()


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_build_match_onnx_runtime_and_are_cached(precision: str, manifest: Manifest, fp16_manifest: Manifest,
                                                         cache: EngineCache,
                                                         engines_closed: list[TensorRTEngine]) -> None:
    model = manifest if precision == "fp32" else fp16_manifest
    parts: list[tuple[Part, BatchRange]] = [("encoder", ENCODER_BATCH), ("predictor", predictor_batch(64))]
    for part, batch in parts:
        engine, entry = open_engine(model, part, cache, batch=batch)
        engines_closed.append(engine)
        assert entry.built and engine.backend == "tensorrt"
        assert all(check["ok"] for check in entry.metadata["check"])  # checked against ONNX Runtime when built
        assert all(c.ok for c in check_engine(engine, model, part, batch))
        again, cached = open_engine(model, part, cache, batch=batch)
        engines_closed.append(again)
        assert not cached.built and cached.path == entry.path
        feeds = sample_feeds(model, part, batch.opt)
        for name, array in engine.run(feeds).items():
            np.testing.assert_array_equal(again.run(feeds)[name], array)


@pytest.mark.gpu
def test_an_entry_whose_key_or_bytes_differ_is_rebuilt(manifest: Manifest, cache: EngineCache,
                                                        engines_closed: list[TensorRTEngine]) -> None:
    engine, entry = open_engine(manifest, "encoder", cache)
    engines_closed.append(engine)
    metadata_path = cache.metadata_path(entry.key)
    metadata = json.loads(metadata_path.read_text())
    metadata["fields"]["tensorrt"] = "0.0.0"  # as if built by another TensorRT
    metadata_path.write_text(json.dumps(metadata))
    assert cache.lookup(entry.key).status == "stale"
    engine, rebuilt = open_engine(manifest, "encoder", cache)
    engines_closed.append(engine)
    assert rebuilt.built and cache.lookup(entry.key).status == "hit"
    # Bytes TensorRT cannot deserialize, recorded as if they were the engine: refused at load, rebuilt.
    cache.engine_path(entry.key).write_bytes(b"not an engine")
    cache.commit(entry.key, cache.stage(entry.key, b"not an engine"), {"created": "2000-01-01T00:00:00+00:00"})
    assert cache.lookup(entry.key).status == "hit"
    engine, recovered = open_engine(manifest, "encoder", cache)
    engines_closed.append(engine)
    assert recovered.built and cache.engine_path(entry.key).read_bytes() != b"not an engine"


@pytest.mark.gpu
def test_a_batch_beyond_the_profile_is_refused_naming_the_tensor_and_limit(manifest: Manifest, cache: EngineCache,
                                                                          engines_closed: list[TensorRTEngine]) -> None:
    engine, _ = open_engine(manifest, "predictor", cache, batch=predictor_batch(8, max_batch=16))
    engines_closed.append(engine)
    assert engine.max_batch == 16  # what the loop checks hot-reloaded planner.samples against
    with pytest.raises(EngineError, match=r"input 'latent' has batch 17; .* takes 1 to 16"):
        engine.run(sample_feeds(manifest, "predictor", 17))


@pytest.mark.gpu
def test_cuda_graph_replay_matches_plain_execution(manifest: Manifest, cache: EngineCache,
                                                   engines_closed: list[TensorRTEngine]) -> None:
    plain, _ = open_engine(manifest, "predictor", cache, batch=predictor_batch(32))
    graphed, _ = open_engine(manifest, "predictor", cache, batch=predictor_batch(32), cuda_graph=True)
    engines_closed += [plain, graphed]
    for batch in (32, 32, 7, 32):  # capture, replay, another size, back
        feeds = sample_feeds(manifest, "predictor", batch, seed=batch)
        np.testing.assert_array_equal(graphed.run(feeds)["next_latent"], plain.run(feeds)["next_latent"])


@pytest.mark.gpu
def test_the_world_model_runs_on_tensorrt(manifest: Manifest, cache: EngineCache) -> None:
    model = WorldModel(manifest, backend="tensorrt")
    assert model.backend == "tensorrt"
    reference = WorldModel(manifest)
    frame = goal_frame(manifest)
    latent = model.encode(frame, np.zeros(manifest.proprio_dim, dtype=np.float32))
    expected = reference.encode(frame, np.zeros(manifest.proprio_dim, dtype=np.float32))
    assert np.max(np.abs(latent - expected)) <= 1e-3 * np.max(np.abs(expected))
    latents = np.repeat(latent[None], 256, axis=0)
    actions = np.zeros((256, manifest.action_dim), dtype=np.float32)
    assert model.predict(latents, actions).shape == (256, manifest.latent_dim)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_the_rollout_engine_runs_a_whole_horizon_in_one_call_and_equals_stepping(
        manifest: Manifest, cache: EngineCache, engines_closed: list[TensorRTEngine], cuda_graph: bool) -> None:
    horizon = rollout_horizon(5)
    rollout, entry = open_engine(manifest, "rollout", cache, batch=predictor_batch(32), horizon=horizon,
                                 cuda_graph=cuda_graph)
    step, _ = open_engine(manifest, "predictor", cache, batch=predictor_batch(32))
    engines_closed += [rollout, step]
    assert entry.key.profile["actions"] == ((1, 1, 2), (32, 5, 2), (64, 10, 2))  # batch and horizon profiles
    for batch, steps in ((32, 5), (32, 5), (7, 10), (32, 1)):  # capture, replay, other shapes
        feeds = sample_feeds(manifest, "rollout", batch, seed=steps, steps=steps)
        found = rollout.run(feeds)["latents"]
        z, expected = feeds["latent"], []
        for t in range(steps):
            z = step.run({"latent": z, "action": np.ascontiguousarray(feeds["actions"][:, t])})["next_latent"]
            expected.append(z)
        assert found.shape == (batch, steps, manifest.latent_dim)
        assert compare_outputs(found, np.stack(expected, axis=1), "fp32", batch).ok


@pytest.mark.gpu
def test_the_world_model_rolls_out_on_tensorrt_as_on_onnx_runtime(manifest: Manifest, cache: EngineCache) -> None:
    model, reference = WorldModel(manifest, backend="tensorrt", rollout_steps=5), WorldModel(manifest)
    assert model.rollout_engine is not None and model.rollout_engine.backend == "tensorrt"
    feeds = sample_feeds(manifest, "rollout", 256, steps=5)
    found, expected = model.rollout(feeds["latent"], feeds["actions"]), reference.rollout(feeds["latent"],
                                                                                           feeds["actions"])
    assert compare_outputs(found, expected, "fp32", 256).ok
