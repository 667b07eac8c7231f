"""Torch reference backend: the perception/nets.py modules rebuilt from the manifest's reference weights.

Slow and torch-only; it exists to check that the deployed files compute what the trained networks do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from perception.engines.base import Engine
from perception.manifest import ModelFile


class TorchReferenceEngine(Engine):
    backend = "torch"

    def __init__(self, weights: str | Path, part: Literal["encoder", "predictor", "rollout"], spec: ModelFile,
                 threads: int = 1) -> None:
        import torch

        from perception.nets import Rollout, load_reference

        super().__init__(f"{Path(weights).name}:{part}", spec.inputs, spec.outputs)
        self._torch = torch
        torch.set_num_threads(threads)
        _config, encoder, predictor = load_reference(weights)
        # The rollout steps the predictor in torch, inside this one call.
        self.module = {"encoder": encoder, "predictor": predictor, "rollout": Rollout(predictor)}[part]
        self._argument_order = [s.name for s in spec.inputs]
        self._output_name = spec.outputs[0].name

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._torch.inference_mode():
            arguments = [self._torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self._argument_order]
            output = self.module(*arguments)
        return {self._output_name: output.numpy()}
