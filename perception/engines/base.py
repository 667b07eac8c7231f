"""The inference engine interface: named float32 tensors in, named tensors out, one backend per file."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from perception.manifest import TensorSpec


class EngineError(ValueError):
    """Feeds an engine cannot run; the text names the engine and the tensor at fault."""


class Engine(ABC):
    """One model part (encoder or predictor) on one backend."""

    backend: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Largest batch this engine runs (TensorRT: its optimization profile); None: any batch.
    max_batch: int | None = None
    # A rollout engine's most steps in one call (TensorRT: its horizon profile); None: any number.
    max_steps: int | None = None

    def __init__(self, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        self.name = name
        self.inputs = inputs
        self.outputs = outputs
        self._input_names = {spec.name for spec in inputs}

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch: every input by name, each (batch, ...) with the manifest's fixed axes."""
        self._check(feeds)
        return self._run(feeds)

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _check(self, feeds: dict[str, np.ndarray]) -> None:
        if feeds.keys() != self._input_names:
            missing = sorted(self._input_names - feeds.keys())
            extra = sorted(feeds.keys() - self._input_names)
            raise EngineError(f"{self.name} ({self.backend}): feeds must be exactly {sorted(self._input_names)}; "
                              f"missing {missing}, unexpected {extra}")
        batch = None
        for spec in self.inputs:
            array = feeds[spec.name]
            fixed_ok = len(array.shape) == len(spec.shape) and all(
                isinstance(want, str) or want == have for want, have in zip(spec.shape, array.shape, strict=True))
            if not fixed_ok:
                raise EngineError(f"{self.name} ({self.backend}): input '{spec.name}' shape expected {spec.shape}, "
                                  f"found {list(array.shape)}")
            if array.dtype != np.dtype(spec.dtype):
                raise EngineError(f"{self.name} ({self.backend}): input '{spec.name}' dtype expected {spec.dtype}, "
                                  f"found {array.dtype}")
            if batch is not None and array.shape[0] != batch:
                raise EngineError(f"{self.name} ({self.backend}): input '{spec.name}' has batch {array.shape[0]}, "
                                  f"other inputs {batch}")
            batch = array.shape[0]
