"""ONNX Runtime backend on the CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.engines.base import Engine
from perception.manifest import ModelFile


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, path: str | Path, spec: ModelFile, threads: int = 1) -> None:
        super().__init__(Path(path).name, spec.inputs, spec.outputs)
        options = ort.SessionOptions()
        # ALL keeps Q/DQ INT8 graphs fused (below ALL they run slower than FP32).
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self._output_names = [spec.name for spec in self.outputs]

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))
