"""INT8 Q/DQ quantization of a model's encoder and predictor: one file for ONNX Runtime and TensorRT.

ONNX Runtime static quantization in QDQ format after `quant_pre_process`: INT8 weights (per output
channel) and INT8 activations, both symmetric, because TensorRT only accepts zero points of 0. Activation
ranges come from real frames (a calibration set from `calibration.frame_sets`): the encoder sees the
frames and their proprio; the predictor sees the encoder's latents rolled forward over the planner's
horizon under uniformly random in-bounds actions (the recorded actions on half the rows of the first step),
which is what the planner feeds it.

Q/DQ placement follows NVIDIA's recommendation for TensorRT: only the inputs of the weighted layers (Conv,
Gemm, MatMul) are quantized, and Gemm/MatMul outputs stay float, so the GELU after a linear layer and the
predictor's residual sum see unrounded values. Conv outputs keep a Q, because ONNX Runtime's CPU provider
runs a convolution in INT8 (QLinearConv) only when a Q follows it; TensorRT fuses either form.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from calibration.frame_sets import CalibrationSet
from perception.engines.ort import OnnxRuntimeEngine
from perception.manifest import Manifest
from perception.onnx_clean import clean_onnx_file
from perception.preprocess import Preprocessor

ENCODER_FILE, PREDICTOR_FILE = "encoder.int8.onnx", "predictor.int8.onnx"
_BATCH = 32  # rows per calibration batch: bounds memory, does not change the ranges
_WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")  # the layers whose inputs get Q/DQ
_FLOAT_OUTPUT_OPS = ("Gemm", "MatMul")  # ...and whose outputs stay float


class QuantizationError(ValueError):
    """A model or calibration input that cannot be quantized; the text names the file or node at fault."""


def quantize_model(manifest: Manifest, calibration: CalibrationSet, out_dir: str | Path, *,
                   rollout_steps: int = 5, seed: int = 0,
                   undistort: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """Write the INT8 encoder, predictor and manifest into `out_dir`; returns the verified manifest path.

    `undistort` (the deployment's camera calibration) is applied to the calibration frames as the runtime
    applies it to live ones, so the encoder's ranges come from the images it will see.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if manifest.precision != "fp32":
        raise QuantizationError(f"{manifest.root}: quantize an fp32 model, this one is {manifest.precision}")
    if calibration.proprio.shape[1:] != (manifest.proprio_dim,):
        raise QuantizationError(f"calibration set: proprio has {calibration.proprio.shape[1:]} values per frame, "
                                f"the model takes {manifest.proprio_dim}")
    if calibration.actions.shape[1:] != (manifest.action_dim,):
        raise QuantizationError(f"calibration set: actions have {calibration.actions.shape[1:]} values, "
                                f"the model takes {manifest.action_dim}")
    out = manifest.variant_directory(out_dir, "int8")
    encoder_inputs = {"image": Preprocessor(manifest.image, undistort=undistort)(calibration.frames),
                      "proprio": calibration.proprio}
    predictor_inputs = _predictor_calibration(manifest, encoder_inputs, calibration.actions, rollout_steps, seed)
    jobs = [(manifest.path_of(manifest.encoder), out / ENCODER_FILE, encoder_inputs),
            (manifest.path_of(manifest.predictor), out / PREDICTOR_FILE, predictor_inputs)]
    with tempfile.TemporaryDirectory() as scratch:
        for source, target, inputs in jobs:
            prepared = Path(scratch) / source.name
            quant_pre_process(str(source), str(prepared))
            quantize_static(
                str(prepared), str(target), _Batches(inputs), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                op_types_to_quantize=list(_WEIGHTED_OPS),
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                               "OpTypesToExcludeOutputQuantization": list(_FLOAT_OUTPUT_OPS)},
            )
            clean_onnx_file(target)  # the quantizer's tags and any exporter metadata: same inputs, same bytes
            check_zero_points(target)
    return manifest.derive(out, "int8", ENCODER_FILE, PREDICTOR_FILE, calibration_sha256=calibration.sha256)


def _predictor_calibration(manifest: Manifest, encoder_inputs: dict[str, np.ndarray], actions: np.ndarray,
                           rollout_steps: int, seed: int) -> dict[str, np.ndarray]:
    """(latent, action) rows covering what the planner asks: real latents rolled forward `rollout_steps`."""
    encoder = OnnxRuntimeEngine(manifest.path_of(manifest.encoder), manifest.encoder)
    predictor = OnnxRuntimeEngine(manifest.path_of(manifest.predictor), manifest.predictor)
    latents = np.concatenate([encoder.run({k: v[i:i + _BATCH] for k, v in encoder_inputs.items()})["latent"]
                              for i in range(0, len(actions), _BATCH)])
    rng = np.random.default_rng(seed)
    low = np.asarray(manifest.action_low, dtype=np.float32)
    high = np.asarray(manifest.action_high, dtype=np.float32)
    rows_latent, rows_action = [], []
    for step in range(rollout_steps + 1):
        # The first step: the recorded action on even rows (what the robot did from that frame), random on odd
        # rows; later steps leave the recorded states, so random actions anywhere in the bounds.
        step_actions = actions.copy() if step == 0 else rng.uniform(low, high, actions.shape).astype(np.float32)
        step_actions[1::2] = rng.uniform(low, high, step_actions[1::2].shape)
        rows_latent.append(latents)
        rows_action.append(step_actions)
        latents = predictor.run({"latent": latents, "action": step_actions})["next_latent"]
    return {"latent": np.concatenate(rows_latent), "action": np.concatenate(rows_action)}


class _Batches:
    """ONNX Runtime's CalibrationDataReader over named arrays, `_BATCH` rows at a time."""

    def __init__(self, inputs: dict[str, np.ndarray]) -> None:
        self._iterator = self._batches(inputs)

    @staticmethod
    def _batches(inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        rows = len(next(iter(inputs.values())))
        for start in range(0, rows, _BATCH):
            yield {name: array[start:start + _BATCH] for name, array in inputs.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iterator, None)


def check_zero_points(path: str | Path) -> int:
    """Refuse a Q/DQ model with any non-zero zero point (TensorRT rejects them); returns how many were checked."""
    model = onnx.load(str(path), load_external_data=False)
    constants = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = node.attribute[0].t
    checked = 0
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3 or not node.input[2]:
            continue
        name = node.input[2]
        if name not in constants:
            raise QuantizationError(f"{path}: node {node.name or node.op_type}: zero point '{name}' is not a "
                                    "constant, so it cannot be checked to be 0")
        values = numpy_helper.to_array(constants[name])
        if np.any(values != 0):
            raise QuantizationError(f"{path}: node {node.name or node.op_type}: zero point '{name}' is "
                                    f"{values.ravel()[:4].tolist()}, TensorRT needs 0 (symmetric quantization)")
        checked += 1
    if checked == 0:
        raise QuantizationError(f"{path}: no QuantizeLinear/DequantizeLinear zero points found: not a Q/DQ model")
    return checked

