"""Inference engines, one backend per file, created from a verified model manifest."""

from __future__ import annotations

from typing import Literal

from perception.engines.base import Engine, EngineError
from perception.manifest import Manifest

BACKENDS = ("onnxruntime", "torch")

__all__ = ["BACKENDS", "Engine", "EngineError", "create_engine"]


def create_engine(manifest: Manifest, part: Literal["encoder", "predictor"],
                  backend: Literal["onnxruntime", "torch"] = "onnxruntime", threads: int = 1) -> Engine:
    """An engine for the manifest's encoder or predictor on `backend` with `threads` intra-op threads."""
    if part not in ("encoder", "predictor"):
        raise ValueError(f"unknown model part {part!r}: expected 'encoder' or 'predictor'")
    spec = manifest.encoder if part == "encoder" else manifest.predictor
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
