"""Export a trained encoder + predictor: two single-file ONNX models, torch reference weights, manifest.json.

Each ONNX file is checked against torch at export (ONNX Runtime, batch sizes 1 and 7 to exercise the
dynamic batch axis) and the manifest is re-loaded with full verification before this returns. The files
are reproducible: the exporter's stack traces and other metadata are stripped (`perception.onnx_clean`), so
the same weights give the same bytes in any folder, and `reexport` rebuilds a model's files from its
reference weights without training.
"""

from __future__ import annotations

import datetime
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from perception.manifest import FORMAT_VERSION, ImageSpec, Manifest, ModelFile, TensorSpec, file_sha256, load_manifest
from perception.nets import Encoder, NetConfig, Predictor, load_reference, save_reference
from perception.onnx_clean import clean_onnx_file
from perception.rollout import write_rollout

ENCODER_FILE, PREDICTOR_FILE, REFERENCE_FILE = "encoder.onnx", "predictor.onnx", "reference.pt"
ROLLOUT_FILE = "rollout.onnx"
BATCH_AXIS = "batch"
# ONNX Runtime must reproduce torch to this absolute tolerance on every output element.
EXPORT_TOLERANCE = 1e-4
# The rollout must reproduce stepping the predictor file (the same graph) to this tolerance.
ROLLOUT_TOLERANCE = 1e-5


class ExportError(RuntimeError):
    pass


@dataclass(frozen=True)
class ModelInterface:
    """What the runtime needs to know about the robot and camera the model was trained for."""

    name: str
    image: ImageSpec
    proprio_names: list[str]
    action_names: list[str]
    action_low: list[float]
    action_high: list[float]
    action_units: str
    control_period_s: float
    training: dict[str, Any] = field(default_factory=dict)
    scene: str | None = None  # the sim scene and task the training data came from, if any
    task: str | None = None


def _spec(name: str, *dims: int) -> TensorSpec:
    return TensorSpec(name=name, shape=[BATCH_AXIS, *dims], dtype="float32")


def _export_onnx(module: torch.nn.Module, inputs: dict[str, torch.Tensor], output: str, path: Path) -> None:
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=65536)
    # Exporter noise that says nothing about this model: every input shares the one batch axis (reported
    # as a skipped renaming), torch-internal deprecations, and torchvision ops it cannot find.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis name: batch will not be used")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)", category=FutureWarning)
        torch.onnx.export(
            module, tuple(inputs.values()), str(path), dynamo=True, external_data=False, verbose=False,
            input_names=list(inputs), output_names=[output],
            dynamic_shapes={name: {0: batch} for name in inputs},
        )
    if path.with_name(path.name + ".data").exists():
        raise ExportError(f"{path}: the exporter wrote external weights; expected a single file")
    clean_onnx_file(path)  # no stack traces (absolute paths) in the file: same weights, same bytes


def _check_against_torch(module: torch.nn.Module, path: Path, inputs: dict[str, torch.Tensor], output: str) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in (1, 7):
        feeds = {name: tensor[:batch] for name, tensor in inputs.items()}
        with torch.inference_mode():
            expected = module(*feeds.values()).numpy()
        found = session.run([output], {name: t.numpy() for name, t in feeds.items()})[0]
        error = float(np.max(np.abs(found - expected)))
        if not error <= EXPORT_TOLERANCE:
            raise ExportError(f"{path}: ONNX Runtime differs from torch by {error:.2e} at batch {batch} "
                              f"(tolerance {EXPORT_TOLERANCE:.0e})")
        worst = max(worst, error)
    return worst


def _check_rollout(rollout: Path, predictor: Path, latent: np.ndarray, actions: np.ndarray) -> float:
    """The rollout file against stepping the predictor file over the same actions, both on ONNX Runtime."""
    import onnxruntime as ort

    def session(path: Path) -> ort.InferenceSession:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    step = session(predictor)
    expected, z = [], latent
    for t in range(actions.shape[1]):
        z = step.run(None, {"latent": z, "action": np.ascontiguousarray(actions[:, t])})[0]
        expected.append(z)
    found = session(rollout).run(None, {"latent": latent, "actions": actions})[0]
    error = float(np.max(np.abs(found - np.stack(expected, axis=1))))
    if not error <= ROLLOUT_TOLERANCE:
        raise ExportError(f"{rollout}: differs from stepping {predictor.name} by {error:.2e} "
                          f"(tolerance {ROLLOUT_TOLERANCE:.0e})")
    return error


def export_world_model(encoder: Encoder, predictor: Predictor, out_dir: str | Path, config: NetConfig,
                       interface: ModelInterface, seed: int = 0) -> Path:
    """Write encoder.onnx, predictor.onnx, rollout.onnx, reference.pt and manifest.json into `out_dir`; returns the
    manifest path.

    `seed` draws the random probe inputs used for the torch-vs-ONNX Runtime check.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, predictor = encoder.eval(), predictor.eval()
    generator = torch.Generator().manual_seed(seed)
    size = config.image_size
    encoder_inputs = {"image": torch.randn(7, 3, size, size, generator=generator),
                      "proprio": torch.randn(7, config.proprio_dim, generator=generator)}
    predictor_inputs = {"latent": torch.randn(7, config.latent_dim, generator=generator),
                        "action": torch.randn(7, config.action_dim, generator=generator)}
    parts = {
        "encoder": (encoder, encoder_inputs, "latent", config.latent_dim, out_dir / ENCODER_FILE),
        "predictor": (predictor, predictor_inputs, "next_latent", config.latent_dim, out_dir / PREDICTOR_FILE),
    }
    files: dict[str, ModelFile] = {}
    errors: dict[str, float] = {}
    for part, (module, inputs, output, width, path) in parts.items():
        _export_onnx(module, inputs, output, path)
        errors[part] = _check_against_torch(module, path, inputs, output)
        files[part] = ModelFile(
            file=path.name, sha256=file_sha256(path),
            inputs=[_spec(name, *tensor.shape[1:]) for name, tensor in inputs.items()],
            outputs=[_spec(output, width)],
        )
    rollout = write_rollout(out_dir / PREDICTOR_FILE, out_dir / ROLLOUT_FILE, config.latent_dim, config.action_dim)
    rollout_actions = torch.randn(7, 5, config.action_dim, generator=generator).numpy()
    errors["rollout"] = _check_rollout(out_dir / ROLLOUT_FILE, out_dir / PREDICTOR_FILE,
                                       predictor_inputs["latent"].numpy(), rollout_actions)
    reference = out_dir / REFERENCE_FILE
    save_reference(reference, config, encoder, predictor)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        name=interface.name,
        precision="fp32",
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        encoder=files["encoder"],
        predictor=files["predictor"],
        rollout=rollout,
        image=interface.image,
        proprio_dim=config.proprio_dim,
        proprio_names=interface.proprio_names,
        action_dim=config.action_dim,
        action_names=interface.action_names,
        action_low=interface.action_low,
        action_high=interface.action_high,
        action_units=interface.action_units,
        latent_dim=config.latent_dim,
        visual_dim=config.visual_dim,
        control_period_s=interface.control_period_s,
        scene=interface.scene,
        task=interface.task,
        # reference.pt holds both parts; their tensors are the encoder's and predictor's above.
        reference=ModelFile(file=reference.name, sha256=file_sha256(reference), inputs=[], outputs=[]),
        training={**interface.training, "export_max_abs_error": errors},
        parent_sha256=None,
        calibration_sha256=None,
        root=out_dir,
    )
    path = manifest.write(out_dir)
    load_manifest(path, verify=True)
    return path


def interface_of(manifest: Manifest) -> ModelInterface:
    """The robot, camera and training record of an exported model, to export it again."""
    training = {key: value for key, value in manifest.training.items() if key != "export_max_abs_error"}
    return ModelInterface(
        name=manifest.name, image=manifest.image, proprio_names=manifest.proprio_names,
        action_names=manifest.action_names, action_low=manifest.action_low, action_high=manifest.action_high,
        action_units=manifest.action_units, control_period_s=manifest.control_period_s, training=training,
        scene=manifest.scene, task=manifest.task)


def reexport(model_dir: str | Path, out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Export a model again from its reference weights (no training): the same networks, today's file format.

    Writes into `out_dir` (default: `model_dir` itself, replacing its files); keeps the manifest's interface
    and training record. Returns the new manifest's path, verified.
    """
    manifest = load_manifest(model_dir)
    if manifest.reference is None:
        raise ExportError(f"{manifest.root}: the manifest names no reference weights to export from")
    config, encoder, predictor = load_reference(manifest.path_of(manifest.reference))
    return export_world_model(encoder, predictor, out_dir if out_dir is not None else manifest.root, config,
                              interface_of(manifest), seed=seed)
