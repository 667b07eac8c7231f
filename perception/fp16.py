"""FP16 variant of a model (float16 weights and compute, float32 inputs and outputs) for strongly typed TensorRT.

A strongly typed TensorRT network computes in the types the ONNX file states, so FP16 is chosen in the file,
not with builder flags. `convert_float_to_float16(keep_io_types=True)` casts every initializer and tensor to
float16 and puts Cast nodes at the graph's edges, so the tensors the manifest names stay float32 and the
runtime feeds an FP16 model exactly as it feeds the FP32 one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.engines.ort import OnnxRuntimeEngine
from perception.manifest import Manifest, ModelFile
from perception.onnx_clean import strip_metadata

ENCODER_FILE, PREDICTOR_FILE = "encoder.fp16.onnx", "predictor.fp16.onnx"
# Largest error of the FP16 file against the FP32 one on ONNX Runtime, relative to the largest FP32 output:
# float16 keeps 11 significant bits (relative rounding 4.9e-4), and these small networks stay well inside 1e-2.
FP16_TOLERANCE = 1e-2


class Fp16Error(ValueError):
    """A model that cannot be converted to FP16; the text names the manifest or file at fault."""


@dataclass(frozen=True)
class Fp16Result:
    manifest_path: Path
    max_error: dict[str, float]  # per part: max |fp16 - fp32| / max |fp32| on ONNX Runtime


def convert_to_fp16(manifest: Manifest, out_dir: str | Path, *, seed: int = 0) -> Fp16Result:
    """Write the FP16 encoder, predictor and verified manifest into `out_dir`; refuse one that drifts from FP32."""
    # onnx (the `train` extra) is needed to convert, not to run: import it here.
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    if manifest.precision != "fp32":
        raise Fp16Error(f"{manifest.root}: convert an fp32 model to fp16, this one is {manifest.precision}")
    out = manifest.variant_directory(out_dir, "fp16")
    errors = {}
    rng = np.random.default_rng(seed)
    for name, part, target in (("encoder", manifest.encoder, ENCODER_FILE),
                               ("predictor", manifest.predictor, PREDICTOR_FILE)):
        source = manifest.path_of(part)
        converted = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        strip_metadata(converted)  # reproducible bytes (perception/onnx_clean.py)
        onnx.save(converted, str(out / target))
        errors[name] = _max_error(source, out / target, part, rng)
        if errors[name] > FP16_TOLERANCE:
            raise Fp16Error(f"{out / target}: FP16 outputs differ from FP32 by {errors[name]:.2e} of the largest "
                            f"output (tolerance {FP16_TOLERANCE:.0e}): this model needs FP32 there")
    path = manifest.derive(out, "fp16", ENCODER_FILE, PREDICTOR_FILE)
    return Fp16Result(path, errors)


def _max_error(fp32_file: Path, fp16_file: Path, part: ModelFile, rng: np.random.Generator) -> float:
    """Both files on ONNX Runtime with the same standard-normal feeds (batch 8)."""
    feeds = {spec.name: rng.standard_normal([8 if isinstance(d, str) else d for d in spec.shape]).astype(spec.dtype)
             for spec in part.inputs}
    [reference] = OnnxRuntimeEngine(fp32_file, part).run(feeds).values()
    [found] = OnnxRuntimeEngine(fp16_file, part).run(feeds).values()
    return float(np.max(np.abs(found - reference)) / np.max(np.abs(reference)))

