"""Inference engines, one backend per file, created from a verified model manifest."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Literal

from perception.engines.base import Engine, EngineError
from perception.manifest import Manifest

BACKENDS = ("onnxruntime", "torch", "tensorrt", "auto")
Backend = Literal["onnxruntime", "torch", "tensorrt", "auto"]

__all__ = ["BACKENDS", "Backend", "Engine", "EngineError", "create_engine"]


Part = Literal["encoder", "predictor", "rollout"]


def create_engine(manifest: Manifest, part: Part, backend: Backend = "onnxruntime",
                  threads: int = 1, *, engine_cache: Path | None = None, cuda_graph: bool = False,
                  predictor_samples: int | None = None, rollout_steps: int | None = None) -> Engine:
    """An engine for the manifest's encoder, predictor or rollout model on `backend` with `threads` intra-op threads.

    TensorRT engines come from `engine_cache` (default: $EDGELOOP_ENGINE_CACHE, else ~/.cache/edgeloop/engines),
    with `cuda_graph` replay their enqueue from a CUDA graph, and the predictor's and rollout's batch profile is
    built for `predictor_samples` (the planner's samples; default: the newest cached build's), the rollout's
    horizon profile for `rollout_steps` (predictor steps per plan) (docs/tensorrt.md).

    `auto` is TensorRT when tensorrt and a CUDA binding import, a GPU is visible and the engine builds and
    passes its check, else ONNX Runtime; the engine's `backend` says which was chosen, and a fallback is
    logged once with its reason.
    """
    if part not in ("encoder", "predictor", "rollout"):
        raise ValueError(f"unknown model part {part!r}: expected 'encoder', 'predictor' or 'rollout'")
    spec = getattr(manifest, part)
    if spec is None:
        raise ValueError(f"{manifest.root}: the manifest names no {part} model")
    if backend in ("tensorrt", "auto"):
        from perception.engines.tensorrt import tensorrt_unavailable

        missing = tensorrt_unavailable()
        if missing is None:
            from perception.engines.cuda_memory import CudaError
            from perception.engines.tensorrt import EngineLoadError
            from perception.trt_build import (
                EngineBuildError,
                EngineCache,
                open_engine,
                predictor_batch,
                rollout_horizon,
            )

            cache = EngineCache(engine_cache) if engine_cache is not None else EngineCache.default()
            batch = predictor_batch(predictor_samples) if part != "encoder" and predictor_samples else None
            horizon = rollout_horizon(rollout_steps) if part == "rollout" and rollout_steps else None
            try:
                engine, _entry = open_engine(manifest, part, cache, batch=batch, horizon=horizon,
                                             cuda_graph=cuda_graph)
                return engine
            except (EngineBuildError, EngineLoadError, CudaError) as exc:
                if backend == "tensorrt":
                    raise
                missing = f"the {part} engine failed: {exc}"
        if backend == "tensorrt":
            raise EngineError(f"backend 'tensorrt' cannot run here: {missing} (use backend 'auto' to fall back to "
                              "onnxruntime; on a GPU machine see docs/tensorrt.md)")
        _log_fallback(missing)
        backend = "onnxruntime"
    if backend == "onnxruntime":
        from perception.engines.ort import OnnxRuntimeEngine

        return OnnxRuntimeEngine(manifest.path_of(spec), spec, threads=threads)
    if backend == "torch":
        if manifest.reference is None:
            raise ValueError(f"{manifest.root}: backend 'torch' needs the manifest's 'reference' weights, "
                             "and this manifest has none")
        from perception.engines.torch_reference import TorchReferenceEngine

        return TorchReferenceEngine(manifest.path_of(manifest.reference), part, spec, threads=threads)
    raise ValueError(f"unknown inference backend {backend!r}: expected one of {', '.join(BACKENDS)}")


@functools.cache
def _log_fallback(missing: str) -> None:
    """Once per process and reason: `auto` runs ONNX Runtime, and why TensorRT was not used."""
    logging.getLogger(__name__).warning("backend auto: running onnxruntime because TensorRT cannot run here: %s",
                                        missing)
