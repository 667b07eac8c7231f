"""TensorRT engine cache on CPU: the key, the L4T release, profiles from planner samples, cache decisions, precision."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.manifest import Manifest, load_manifest
from perception.trt_build import (
    ENCODER_BATCH,
    TOLERANCES,
    BatchRange,
    Device,
    EngineBuildError,
    EngineCache,
    EngineKey,
    Profile,
    compare_outputs,
    l4t_release,
    network_typing,
    parse_l4t_release,
    predictor_batch,
    profile_shapes,
)

ORIN = Device(tensorrt="10.3.0", gpu="Orin (nvgpu)", compute_capability="8.7", l4t="R36.4.3")
PROFILE: Profile = {"latent": ((1, 32), (256, 32), (512, 32)), "action": ((1, 2), (256, 2), (512, 2))}
KEY = EngineKey("a" * 64, "int8", ORIN, PROFILE)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest(demo_model: Path) -> Manifest:
    return load_manifest(demo_model / "manifest.json", verify=False)


# -- key ---------------------------------------------------------------------------------------------------------

CHANGES = {
    "onnx_sha256": {"onnx_sha256": "b" * 64},
    "precision": {"precision": "fp16"},
    "tensorrt": {"device": dataclasses.replace(ORIN, tensorrt="10.7.0")},
    "gpu": {"device": dataclasses.replace(ORIN, gpu="NVIDIA L4")},
    "compute_capability": {"device": dataclasses.replace(ORIN, compute_capability="8.9")},
    "l4t": {"device": dataclasses.replace(ORIN, l4t="R36.3.0")},
    "no l4t": {"device": dataclasses.replace(ORIN, l4t=None)},
    "profile opt": {"profile": {**PROFILE, "latent": ((1, 32), (128, 32), (512, 32))}},
    "profile max": {"profile": {**PROFILE, "action": ((1, 2), (256, 2), (1024, 2))}},
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_the_key_changes_when_any_component_changes(change: dict[str, object]) -> None:
    changed = dataclasses.replace(KEY, **change)  # type: ignore[arg-type]
    assert changed.digest != KEY.digest
    assert len(changed.digest) == 64


def test_the_key_is_canonical_in_the_order_fields_were_given() -> None:
    reordered = EngineKey(KEY.onnx_sha256, KEY.precision, KEY.device, dict(reversed(list(PROFILE.items()))))
    assert reordered.digest == KEY.digest
    assert list(json.loads(json.dumps(reordered.fields()))) == list(KEY.fields())


def test_the_key_is_the_same_in_every_process() -> None:
    code = ("from perception.trt_build import EngineKey, Device; "
            f"print(EngineKey({KEY.onnx_sha256!r}, 'int8', Device(*{tuple(dataclasses.astuple(ORIN))!r}), "
            f"{PROFILE!r}).digest)")
    for seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                             env={**os.environ, "PYTHONHASHSEED": seed})
        assert out.stdout.strip() == KEY.digest


def test_the_key_records_every_component_as_json() -> None:
    fields = KEY.fields()
    assert {k: fields[k] for k in ("onnx_sha256", "precision", "tensorrt", "gpu", "compute_capability", "l4t")} == {
        "onnx_sha256": "a" * 64, "precision": "int8", "tensorrt": "10.3.0", "gpu": "Orin (nvgpu)",
        "compute_capability": "8.7", "l4t": "R36.4.3"}
    assert fields["profile"]["latent"] == [[1, 32], [256, 32], [512, 32]]
    assert json.loads(json.dumps(fields)) == fields


# -- L4T release ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "release"), [
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
     "DATE: Wed Jan  8 01:49:37 UTC 2025\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n", "R36.4.3"),
    ("# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64, DATE: Tue Feb 20 2024",
     "R35.5.0"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64", "R32.7.1"),
    ("Ubuntu 22.04.4 LTS\n", None),
    ("", None),
])
def test_the_l4t_release_is_read_from_nv_tegra_release(text: str, release: str | None) -> None:
    assert parse_l4t_release(text) == release


def test_no_release_file_means_not_a_jetson(tmp_path: Path) -> None:
    assert l4t_release(tmp_path / "nv_tegra_release") is None
    (tmp_path / "nv_tegra_release").write_text("# R36 (release), REVISION: 3.0, GCID: 36191598\n")
    assert l4t_release(tmp_path / "nv_tegra_release") == "R36.3.0"


# -- profiles --------------------------------------------------------------------------------------------------

def test_the_predictor_profile_comes_from_the_planner_samples() -> None:
    assert predictor_batch(256) == BatchRange(1, 256, 512)  # room for a hot reload to double the samples
    assert predictor_batch(100, max_batch=150) == BatchRange(1, 100, 150)
    assert predictor_batch(100, max_batch=50) == BatchRange(1, 100, 100)  # never below the samples


def test_profile_shapes_set_the_batch_axis_of_every_input(manifest: Manifest) -> None:
    shapes = profile_shapes(manifest.predictor, predictor_batch(64))
    assert shapes == {"latent": ((1, 32), (64, 32), (128, 32)), "action": ((1, 2), (64, 2), (128, 2))}
    encoder = profile_shapes(manifest.encoder, ENCODER_BATCH)
    assert encoder == {"image": ((1, 3, 64, 64),) * 3, "proprio": ((1, 4),) * 3}


@pytest.mark.parametrize("bounds", [(0, 1, 1), (2, 1, 4), (1, 8, 4)])
def test_a_batch_range_must_be_ordered(bounds: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="min <= opt <= max"):
        BatchRange(*bounds)


# -- cache decisions ------------------------------------------------------------------------------------------

def cached(tmp_path: Path, key: EngineKey = KEY, engine: bytes = b"serialized engine") -> EngineCache:
    cache = EngineCache(tmp_path / "engines")
    cache.commit(key, cache.stage(key, engine), {"created": "2026-01-01T00:00:00+00:00", "batch": [1, 256, 512]})
    return cache


def test_an_empty_cache_misses(tmp_path: Path) -> None:
    lookup = EngineCache(tmp_path).lookup(KEY)
    assert (lookup.status, lookup.reason) == ("missing", "no engine was built for this model and precision in this "
                                                         "cache")


def test_a_committed_entry_hits_with_its_files_in_the_stated_layout(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    assert cache.lookup(KEY).status == "hit"
    assert sorted(p.name for p in cache.root.iterdir()) == [f"{KEY.digest}.engine", f"{KEY.digest}.json"]
    metadata = json.loads(cache.metadata_path(KEY).read_text())
    assert metadata["key"] == KEY.digest and metadata["fields"] == KEY.fields()
    assert cache.latest_batch(KEY.onnx_sha256, "int8") == BatchRange(1, 256, 512)


def test_an_entry_for_another_tensorrt_version_is_stale_and_says_what_changed(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    upgraded = dataclasses.replace(KEY, device=dataclasses.replace(ORIN, tensorrt="10.7.0"))
    lookup = cache.lookup(upgraded)
    assert lookup.status == "stale"
    assert "tensorrt 10.3.0 -> 10.7.0" in lookup.reason
    assert cache.latest_batch(upgraded.onnx_sha256, "int8") == BatchRange(1, 256, 512)  # rebuilt for the same batch


def test_another_model_does_not_count_as_an_earlier_build(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    assert cache.lookup(dataclasses.replace(KEY, onnx_sha256="c" * 64)).status == "missing"
    assert cache.lookup(dataclasses.replace(KEY, precision="fp16")).status == "missing"


def test_metadata_recording_another_key_is_stale(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    metadata = json.loads(cache.metadata_path(KEY).read_text())
    metadata["fields"]["gpu"] = "NVIDIA L4"
    cache.metadata_path(KEY).write_text(json.dumps(metadata))
    lookup = cache.lookup(KEY)
    assert lookup.status == "stale" and "gpu NVIDIA L4 -> Orin (nvgpu)" in lookup.reason


@pytest.mark.parametrize("damage", ["not json {", "[]", '{"key": "x"}', ""])
def test_corrupt_metadata_is_stale(tmp_path: Path, damage: str) -> None:
    cache = cached(tmp_path)
    cache.metadata_path(KEY).write_text(damage)
    lookup = cache.lookup(KEY)
    assert lookup.status == "stale" and "unreadable or incomplete" in lookup.reason


def test_a_truncated_or_missing_engine_is_stale(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    cache.engine_path(KEY).write_bytes(b"serialized")
    lookup = cache.lookup(KEY)
    assert lookup.status == "stale" and "changed after it was built" in lookup.reason
    cache.engine_path(KEY).unlink()
    lookup = cache.lookup(KEY)
    assert lookup.status == "stale" and "missing" in lookup.reason


def test_a_staged_engine_is_not_an_entry_until_committed(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    staged = cache.stage(KEY, b"not yet checked")
    assert cache.lookup(KEY).status == "missing"
    cache.commit(KEY, staged, {"created": "2026-01-01T00:00:00+00:00"})
    assert cache.lookup(KEY).status == "hit" and not staged.exists()


def test_the_newest_build_of_a_model_gives_the_runtime_its_batch(tmp_path: Path) -> None:
    cache = cached(tmp_path)
    newer = dataclasses.replace(KEY, profile={"latent": ((1, 32), (64, 32), (64, 32))})
    cache.commit(newer, cache.stage(newer, b"newer"), {"created": "2026-02-01T00:00:00+00:00", "batch": [1, 64, 64]})
    assert cache.latest_batch(KEY.onnx_sha256, "int8") == BatchRange(1, 64, 64)


def test_the_cache_directory_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGELOOP_ENGINE_CACHE", str(tmp_path / "mine"))
    assert EngineCache.default().root == tmp_path / "mine"
    monkeypatch.delenv("EDGELOOP_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert EngineCache.default().root == tmp_path / "xdg" / "edgeloop" / "engines"


def test_each_device_and_tensorrt_version_has_its_own_timing_cache(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    assert cache.timing_cache_path(ORIN) == cache.timing_cache_path(dataclasses.replace(ORIN))
    others = [dataclasses.replace(ORIN, tensorrt="10.7.0"), dataclasses.replace(ORIN, gpu="NVIDIA L4"),
              dataclasses.replace(ORIN, l4t=None)]
    assert len({cache.timing_cache_path(d) for d in [ORIN, *others]}) == 4
    assert cache.timing_cache_path(ORIN).parent == tmp_path / "timing"


# -- precision -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_10_builds_strongly_typed_without_precision_flags(precision: str) -> None:
    typing = network_typing("10.3.0", precision)  # type: ignore[arg-type]
    assert (typing.network_flags, typing.builder_flags) == (("STRONGLY_TYPED",), ())
    assert network_typing("11.0.0.4", precision) == network_typing("11.1", precision)  # type: ignore[arg-type]
    assert network_typing("11.0.0.4", precision).network_flags == ()  # type: ignore[arg-type]


def test_tensorrt_8_6_still_needs_precision_flags() -> None:
    assert network_typing("8.6.2.3", "fp16").builder_flags == ("FP16",)
    assert network_typing("8.5.2", "int8").builder_flags == ("INT8",)
    assert network_typing("8.6.2.3", "fp32").builder_flags == ()
    assert network_typing("8.6.2.3", "fp16").network_flags == ("EXPLICIT_BATCH",)
    with pytest.raises(EngineBuildError, match=r"older than 8\.5"):
        network_typing("8.4.1", "fp32")


def test_tolerances_are_tight_for_fp32_looser_for_fp16_loosest_for_int8() -> None:
    fp32, fp16, int8 = TOLERANCES["fp32"], TOLERANCES["fp16"], TOLERANCES["int8"]
    assert fp32.max_error < fp16.max_error < int8.max_error
    assert fp32.min_cosine > fp16.min_cosine > int8.min_cosine


def test_the_check_judges_each_precision_by_its_own_tolerance() -> None:
    rng = np.random.default_rng(0)
    reference = rng.standard_normal((64, 32)).astype(np.float32)
    assert compare_outputs(reference.copy(), reference, "fp32", 64).ok
    half = reference.astype(np.float16).astype(np.float32)  # what FP16 rounding alone does
    assert compare_outputs(half, reference, "fp16", 64).ok
    noisy = reference + 0.01 * np.abs(reference).max() * rng.standard_normal(reference.shape).astype(np.float32)
    assert [compare_outputs(noisy, reference, p, 64).ok for p in ("fp32", "fp16", "int8")] == [False, False, True]
    broken = reference.copy()
    broken[3, 5] = np.nan
    result = compare_outputs(broken, reference, "int8", 64)
    assert not result.ok and result.max_error == float("inf")
    assert "batch 64: max error" in result.describe()
