"""Models that fail the way models do, for tests: the shipped demo model with one ONNX file swapped for a tiny graph
of the same inputs and outputs that emits NaN (the manifest's sha256 updated to match; a NaN predictor gets its
rollout model made from it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from perception.manifest import file_sha256
from perception.rollout import write_rollout

DEMO = Path(__file__).resolve().parents[1] / "models" / "demo"
_FILES = ("manifest.json", "encoder.onnx", "predictor.onnx", "rollout.onnx", "reference.pt")
_FLOAT = TensorProto.FLOAT


def _save(graph: onnx.GraphProto, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def nan_predictor(path: Path, latent_dim: int = 32, action_dim: int = 2) -> None:
    """next_latent = latent * NaN: every rollout, so every sampled plan's cost, is non-finite."""
    nodes = [helper.make_node("Mul", ["latent", "nan"], ["next_latent"])]
    graph = helper.make_graph(nodes, "nan_predictor",
                              [helper.make_tensor_value_info("latent", _FLOAT, ["batch", latent_dim]),
                               helper.make_tensor_value_info("action", _FLOAT, ["batch", action_dim])],
                              [helper.make_tensor_value_info("next_latent", _FLOAT, ["batch", latent_dim])],
                              [helper.make_tensor("nan", _FLOAT, [], [float("nan")])])
    _save(graph, path)


def nan_encoder_when_moving(path: Path, proprio_dim: int = 4, latent_dim: int = 32, image_side: int = 64) -> None:
    """latent = sqrt(-sum |proprio|) in every dimension: 0 for a robot at the origin at rest (and for goal images,
    encoded without proprio), NaN for any other state."""
    nodes = [helper.make_node("Abs", ["proprio"], ["magnitude"]),
             helper.make_node("ReduceSum", ["magnitude", "axis"], ["total"], keepdims=1),
             helper.make_node("Neg", ["total"], ["negative"]),
             helper.make_node("Sqrt", ["negative"], ["root"]),
             helper.make_node("MatMul", ["root", "ones"], ["latent"])]
    graph = helper.make_graph(nodes, "nan_encoder",
                              [helper.make_tensor_value_info("image", _FLOAT, ["batch", 3, image_side, image_side]),
                               helper.make_tensor_value_info("proprio", _FLOAT, ["batch", proprio_dim])],
                              [helper.make_tensor_value_info("latent", _FLOAT, ["batch", latent_dim])],
                              [helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
                               helper.make_tensor("ones", _FLOAT, [1, latent_dim], [1.0] * latent_dim)])
    _save(graph, path)


def demo_with(directory: Path, *, encoder: bool = False, predictor: bool = False) -> Path:
    """A copy of the demo model in `directory` with the NaN encoder and/or predictor; returns its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in _FILES:
        shutil.copy(DEMO / name, directory / name)
    if encoder:
        nan_encoder_when_moving(directory / "encoder.onnx")
    if predictor:
        nan_predictor(directory / "predictor.onnx")
        write_rollout(directory / "predictor.onnx", directory / "rollout.onnx", latent_dim=32, action_dim=2)
    manifest_path = directory / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for part in ("encoder", "predictor", "rollout"):
        manifest[part]["sha256"] = file_sha256(directory / manifest[part]["file"])
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return manifest_path
