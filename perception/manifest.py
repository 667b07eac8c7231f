"""The model manifest (docs/model-manifest.md): the contract between a trained model and the runtime.

`manifest.json` sits beside the model files. Loading it refuses a manifest whose tensors do not take
what its contract fields say (image size, proprio_dim, action_dim, latent_dim); with `verify=True` also
a model whose files are missing, whose bytes differ from the recorded sha256, or whose ONNX inputs and
outputs differ from the manifest in name, shape or dtype. Every error names the manifest and what differs.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
# Tensor names fixed by the contract (docs/model-manifest.md).
ENCODER_IMAGE, ENCODER_PROPRIO, ENCODER_LATENT = "image", "proprio", "latent"
PREDICTOR_LATENT, PREDICTOR_ACTION, PREDICTOR_NEXT = "latent", "action", "next_latent"
ROLLOUT_LATENT, ROLLOUT_ACTIONS, ROLLOUT_LATENTS = "latent", "actions", "latents"
# The manifest's model files, in the order they are verified.
MODEL_PARTS = ("encoder", "predictor", "rollout", "reference")
# ONNX Runtime's type strings for the dtypes a manifest may name.
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
               "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


class ManifestError(ValueError):
    """A manifest that cannot be used; the text names the manifest path and what differs."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Strict):
    name: str
    shape: list[int | str] = Field(description="Dimensions; a string names a symbolic (dynamic) axis.")
    dtype: Literal["float32", "float16", "int8", "uint8", "int32", "int64"]


class ModelFile(_Strict):
    file: str = Field(description="File name relative to the manifest's directory.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ImageSpec(_Strict):
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    channel_order: Literal["RGB", "BGR"]
    layout: Literal["NCHW"]
    scale: float = Field(gt=0, description="Multiplies raw uint8 pixels before mean and std.")
    mean: list[float] = Field(min_length=3, max_length=3)
    std: list[float] = Field(min_length=3, max_length=3)


class Manifest(_Strict):
    format_version: int
    name: str
    precision: Literal["fp32", "fp16", "int8"]
    created: str = Field(description="ISO 8601 UTC time the model files were written.")
    encoder: ModelFile
    predictor: ModelFile
    image: ImageSpec
    proprio_dim: int = Field(gt=0)
    proprio_names: list[str]
    action_dim: int = Field(gt=0)
    action_names: list[str]
    action_low: list[float]
    action_high: list[float]
    action_units: str
    latent_dim: int = Field(gt=0)
    visual_dim: int = Field(gt=0)
    control_period_s: float = Field(gt=0)
    scene: str | None = Field(None, description="The sim scene the model was trained in (docs/tasks.md), if any.")
    task: str | None = Field(None, description="The task its training data came from, if any.")
    rollout: ModelFile | None = Field(None, description=(
        "The predictor unrolled over a whole action sequence (perception/rollout.py); optional."))
    reference: ModelFile | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    parent_sha256: str | None = Field(None, description="A derived model's parent: the parent's model_id.")
    calibration_sha256: str | None = None
    root: Path = Field(Path("."), exclude=True, description="Directory holding the manifest and its files.")

    def path_of(self, part: ModelFile) -> Path:
        return self.root / part.file

    def variant_directory(self, directory: str | Path, precision: Literal["fp32", "fp16", "int8"]) -> Path:
        """`directory`, created, once it is safe to write a `precision` variant of this model there.

        Refused (ManifestError, before anything is written): this model's own directory, or one whose
        manifest.json is not a `precision` model, so a variant never overwrites the model it came from
        or another model.
        """
        path = Path(directory)
        if path.resolve() == self.root.resolve():
            raise ManifestError(f"{path}: this is the {self.precision} model's own directory; write the "
                                f"{precision} variant to another (its manifest.json would be overwritten)")
        existing = path / MANIFEST_FILE
        if existing.exists():
            try:
                found = json.loads(existing.read_text()).get("precision")
            except (OSError, ValueError, AttributeError):
                found = None
            if found != precision:
                raise ManifestError(f"{existing}: already holds a model (precision {found!r}); write the {precision} "
                                    "variant to an empty directory or one holding an earlier variant of it")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def derive(self, directory: str | Path, precision: Literal["fp32", "fp16", "int8"], encoder_file: str,
               predictor_file: str, calibration_sha256: str | None = None) -> Path:
        """Write the manifest of a variant of this model (FP16, INT8) whose ONNX files are already in `directory`.

        The variant keeps every contract field, records this model's `model_id` as its parent and drops the
        torch reference weights (they are the parent's). When this model has a rollout model, the variant's is
        made from the variant's predictor (perception/rollout.py), so it computes what stepping that predictor
        does; except INT8: ONNX Runtime does not fuse Q/DQ nodes inside the rollout's loop body, which made
        the demo's INT8 rollout 7x slower than stepping, so an INT8 variant steps its predictor.
        Returns the new manifest's path, verified.
        """
        directory = Path(directory)
        rollout = None
        if self.rollout is not None and precision != "int8":
            from perception.rollout import write_rollout

            name = predictor_file.replace("predictor", "rollout", 1)
            rollout = write_rollout(directory / predictor_file, directory / name, self.latent_dim, self.action_dim)
        variant = self.model_copy(deep=True, update={
            "precision": precision,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "encoder": self.encoder.model_copy(update={"file": encoder_file,
                                                       "sha256": file_sha256(directory / encoder_file)}),
            "predictor": self.predictor.model_copy(update={"file": predictor_file,
                                                           "sha256": file_sha256(directory / predictor_file)}),
            "rollout": rollout,
            "reference": None,
            "parent_sha256": model_id(self),
            "calibration_sha256": calibration_sha256,
            "root": directory,
        })
        path = variant.write(directory)
        load_manifest(path, verify=True)
        return path

    def write(self, directory: str | Path) -> Path:
        """Write manifest.json into `directory`; returns its path."""
        path = Path(directory) / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, ASCII only, so equal fields always hash the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# Manifest keys that record how and when a model was made, not what it computes: left out of its identity.
PROVENANCE_KEYS = frozenset({"name", "created", "training", "parent_sha256", "calibration_sha256"})


def identity_fields(manifest: Manifest) -> dict[str, Any]:
    """What a model's identity covers: every manifest field but `PROVENANCE_KEYS`, each model file without its
    file name (its sha256 and tensors stay). A field added to the format later is covered unless listed there."""
    fields = manifest.model_dump(mode="json", exclude=set(PROVENANCE_KEYS))
    for part in MODEL_PARTS:
        if fields.get(part) is not None:
            fields[part] = {key: value for key, value in fields[part].items() if key != "file"}
    return fields


def model_id(manifest: Manifest) -> str:
    """The model's identity: sha256 of `canonical_json(identity_fields(manifest))` (docs/model-manifest.md).

    Two models with the same id compute the same thing: the same file bytes under the same contract. The
    time, folder and training run that made them do not enter it.
    """
    return hashlib.sha256(canonical_json(identity_fields(manifest)).encode()).hexdigest()


def model_provenance(manifest: Manifest) -> dict[str, Any]:
    """What a result records about the model that produced it: its id and each model file's sha256."""
    files = {part: getattr(manifest, part).sha256 for part in MODEL_PARTS if getattr(manifest, part) is not None}
    return {"model_id": model_id(manifest), "model_files": files}


def _manifest_file(path: Path) -> Path:
    return path / MANIFEST_FILE if path.is_dir() else path


def load_manifest(path: str | Path, verify: bool = True) -> Manifest:
    """Read manifest.json (or the directory holding it); with `verify`, check every file it names."""
    path = _manifest_file(Path(path))
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, found {type(data).__name__}")
    if "root" in data:
        raise ManifestError(f"{path}: key 'root' is not allowed (the manifest's directory is its root)")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise ManifestError(f"{path}: {problems}") from exc
    manifest.root = path.parent
    if manifest.format_version != FORMAT_VERSION:
        raise ManifestError(f"{path}: format_version: expected {FORMAT_VERSION}, found {manifest.format_version}")
    _check_consistency(manifest, path)
    if verify:
        verify_files(manifest, path)  # first: a file that differs from its own tensor specs says so
    _check_contract(manifest, path)
    return manifest


def _describe(error: Any) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: missing"
    return f"{key}: {error['msg']} (found {error['input']!r})"


def _check_consistency(manifest: Manifest, path: Path) -> None:
    pairs = [("proprio_names", len(manifest.proprio_names), "proprio_dim", manifest.proprio_dim),
             ("action_names", len(manifest.action_names), "action_dim", manifest.action_dim),
             ("action_low", len(manifest.action_low), "action_dim", manifest.action_dim),
             ("action_high", len(manifest.action_high), "action_dim", manifest.action_dim)]
    for key, found, against, expected in pairs:
        if found != expected:
            raise ManifestError(f"{path}: {key}: expected {expected} entries ({against}), found {found}")
    bad = [i for i, (lo, hi) in enumerate(zip(manifest.action_low, manifest.action_high, strict=True)) if hi <= lo]
    if bad:
        raise ManifestError(f"{path}: action_high must exceed action_low, not at indices {bad}")
    if manifest.visual_dim > manifest.latent_dim:
        raise ManifestError(f"{path}: visual_dim ({manifest.visual_dim}) exceeds latent_dim ({manifest.latent_dim})")


# Stands for a dynamic (named) axis in `contract_tensors`: any string in the manifest's shape fits it.
DYNAMIC = "horizon"


def contract_tensors(manifest: Manifest) -> dict[str, dict[str, list[tuple[str, list[int | str], str]]]]:
    """What each model part must take and give, from the contract fields: per part, per direction, (name, the
    dimensions after the batch axis, the field that sets them); every tensor float32 with a leading batch axis.
    `DYNAMIC` marks the rollout's horizon axis."""
    image: list[int | str] = [3, manifest.image.height, manifest.image.width]
    latent = (manifest.latent_dim, "latent_dim")
    Tensors = dict[str, list[tuple[str, list[int | str], str]]]
    rollout: Tensors = {"inputs": [(ROLLOUT_LATENT, [latent[0]], latent[1]),
                          (ROLLOUT_ACTIONS, [DYNAMIC, manifest.action_dim], "action_dim")],
               "outputs": [(ROLLOUT_LATENTS, [DYNAMIC, latent[0]], latent[1])]}
    parts: dict[str, Tensors] = {
        "encoder": {"inputs": [(ENCODER_IMAGE, image, "image.height/width"),
                               (ENCODER_PROPRIO, [manifest.proprio_dim], "proprio_dim")],
                    "outputs": [(ENCODER_LATENT, [latent[0]], latent[1])]},
        "predictor": {"inputs": [(PREDICTOR_LATENT, [latent[0]], latent[1]),
                                 (PREDICTOR_ACTION, [manifest.action_dim], "action_dim")],
                      "outputs": [(PREDICTOR_NEXT, [latent[0]], latent[1])]},
    }
    return parts | ({"rollout": rollout} if manifest.rollout is not None else {})


def _check_contract(manifest: Manifest, path: Path) -> None:
    """The tensor specs against the contract fields, so a model the runtime cannot feed is refused at load,
    naming both, not on its first plan."""
    for part, directions in contract_tensors(manifest).items():
        for kind, wanted in directions.items():
            specs: list[TensorSpec] = getattr(getattr(manifest, part), kind)
            names = [spec.name for spec in specs]
            if names != [name for name, _, _ in wanted]:
                raise ManifestError(f"{path}: {part}.{kind}: names {names}; the runtime feeds and reads "
                                    f"{[name for name, _, _ in wanted]}")
            for spec, (name, dims, field) in zip(specs, wanted, strict=True):
                if spec.dtype != "float32":
                    raise ManifestError(f"{path}: {part}.{kind}: tensor '{name}' is {spec.dtype}; the runtime "
                                        f"exchanges float32")
                found = [DYNAMIC if isinstance(dim, str) else dim for dim in spec.shape[1:]]
                if found != dims:
                    raise ManifestError(f"{path}: {part}.{kind}: tensor '{name}' shape {spec.shape} does not fit "
                                        f"{field} (expected [batch, {', '.join(map(str, dims))}])")


def verify_files(manifest: Manifest, path: Path) -> None:
    """Every named file exists with its sha256; every ONNX file's I/O matches the manifest."""
    parts = {key: getattr(manifest, key) for key in MODEL_PARTS}
    for key, part in parts.items():
        if part is None:  # the optional files
            continue
        file = manifest.path_of(part)
        if not file.is_file():
            raise ManifestError(f"{path}: {key}.file: {file} does not exist")
        found = file_sha256(file)
        if found != part.sha256:
            raise ManifestError(f"{path}: {key}.sha256: {part.file} has sha256 {found}, expected {part.sha256}")
        if file.suffix == ".onnx":
            _verify_onnx_io(file, part, f"{path}: {key}")


def _verify_onnx_io(file: Path, part: ModelFile, where: str) -> None:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own exception types for unreadable models
        raise ManifestError(f"{where}: {file.name} does not load in ONNX Runtime ({exc})") from exc
    for kind, expected, found in (("inputs", part.inputs, session.get_inputs()),
                                  ("outputs", part.outputs, session.get_outputs())):
        expected_names = [spec.name for spec in expected]
        found_names = [node.name for node in found]
        if expected_names != found_names:
            raise ManifestError(f"{where}.{kind}: names expected {expected_names}, found {found_names} in {file.name}")
        for spec, node in zip(expected, found, strict=True):
            dtype = _ORT_DTYPES.get(node.type, node.type)
            if dtype != spec.dtype:
                raise ManifestError(f"{where}.{kind}: tensor '{spec.name}' dtype expected {spec.dtype}, "
                                    f"found {dtype} in {file.name}")
            if not _shape_matches(spec.shape, list(node.shape)):
                raise ManifestError(f"{where}.{kind}: tensor '{spec.name}' shape expected {spec.shape}, "
                                    f"found {list(node.shape)} in {file.name}")


def _shape_matches(expected: list[int | str], found: list[Any]) -> bool:
    """Fixed axes must be equal; a named (string) axis must be symbolic in the file, whatever its name."""
    if len(expected) != len(found):
        return False
    for want, have in zip(expected, found, strict=True):
        if isinstance(want, str):
            if isinstance(have, int):
                return False
        elif want != have:
            return False
    return True
