"""TensorRT engines from a model's ONNX files: build, check against ONNX Runtime, cache per device (docs/tensorrt.md).

An engine runs only on the TensorRT version and GPU that built it, so each one is cached under a key: the
sha256 of a canonical JSON of the ONNX file's sha256, the TensorRT version, the GPU's name and compute
capability, the L4T release (Jetsons), the precision and the optimization profile's shapes. Cache layout:

    <cache>/<key>.engine               the bytes build_serialized_network returned
    <cache>/<key>.json                 every key field, the engine's sha256, build time, the ONNX Runtime check
    <cache>/timing/<device>.cache      TensorRT's timing cache for one GPU + TensorRT version + L4T release

<cache> is the caller's directory, else $EDGELOOP_ENGINE_CACHE, else $XDG_CACHE_HOME/edgeloop/engines
(~/.cache/edgeloop/engines). An entry is used only when its metadata records exactly the current key and its
engine file still has the recorded sha256, and then only if TensorRT deserializes it; anything else is rebuilt,
with a loud message saying why. A new engine is cached only after its outputs match ONNX Runtime's on the same
ONNX file within the precision's tolerance (`TOLERANCES`).

Everything but building and running is plain Python and imports without tensorrt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from perception.manifest import Manifest, ModelFile, canonical_json, file_sha256

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from perception.engines.base import Engine
    from perception.engines.tensorrt import TensorRTEngine

KEY_FORMAT = 1  # bump when the build settings change what an engine computes: every older entry then rebuilds
CACHE_ENV = "EDGELOOP_ENGINE_CACHE"
L4T_RELEASE_FILE = Path("/etc/nv_tegra_release")
DEFAULT_WORKSPACE_MB = 1024

Precision = Literal["fp32", "fp16", "int8"]
Part = Literal["encoder", "predictor", "rollout"]
Shape = tuple[int, ...]
Profile = dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max) shapes


class EngineBuildError(RuntimeError):
    """An engine that could not be built or did not match ONNX Runtime; the text names the file and the reason."""


# -- optimization profiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchRange:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise ValueError(f"batch range needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")


def predictor_batch(samples: int, max_batch: int | None = None) -> BatchRange:
    """The predictor's profile from the planner's samples N: it rolls all N sequences in one call per horizon step.

    TensorRT tunes its kernels for `opt` = N. The default `max` of 2N lets a hot-reloaded planner double its
    samples without a rebuild; `min` 1 keeps single-row calls (tests, tools) working.
    """
    return BatchRange(1, samples, max(samples, max_batch if max_batch is not None else 2 * samples))


# The runtime encodes one frame per tick and goal images one at a time: a fixed shape, so CUDA graphs apply.
ENCODER_BATCH = BatchRange(1, 1, 1)
# A runtime that finds no earlier build of the predictor builds for the planner's default 256 samples.
DEFAULT_PREDICTOR_BATCH = predictor_batch(256)


def rollout_horizon(steps: int) -> BatchRange:
    """The rollout's horizon profile from the planner's predictor steps per plan (horizon x action_block):
    tuned for those, up to twice as many (a hot-reloaded horizon), down to 1."""
    return BatchRange(1, steps, 2 * steps)


# A runtime that finds no earlier build of the rollout builds for the planner's default 5 steps.
DEFAULT_ROLLOUT_HORIZON = rollout_horizon(5)


def profile_shapes(spec: ModelFile, batch: BatchRange, horizon: BatchRange | None = None) -> Profile:
    """(min, opt, max) shape of every input: the manifest's symbolic batch axis (the first) set to each end of
    `batch`, any later symbolic axis (the rollout's horizon) to each end of `horizon`."""
    def shape(tensor_shape: list[int | str], size: int, steps: int) -> Shape:
        return tuple((size if axis == 0 else steps) if isinstance(dim, str) else dim
                     for axis, dim in enumerate(tensor_shape))

    steps = horizon or BatchRange(1, 1, 1)
    return {s.name: (shape(s.shape, batch.min, steps.min), shape(s.shape, batch.opt, steps.opt),
                     shape(s.shape, batch.max, steps.max)) for s in spec.inputs}


# -- the cache key ---------------------------------------------------------------------------------------------

def parse_l4t_release(text: str) -> str | None:
    """'R36.4.3' from /etc/nv_tegra_release ('# R36 (release), REVISION: 4.3, GCID: ...'); None if not in it."""
    found = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)", text)
    return f"R{found.group(1)}.{found.group(2).rstrip('.')}" if found else None


def l4t_release(path: Path = L4T_RELEASE_FILE) -> str | None:
    """This Jetson's L4T release; None off a Jetson (no release file)."""
    try:
        return parse_l4t_release(path.read_text(errors="replace"))
    except OSError:
        return None


@dataclass(frozen=True)
class Device:
    """What decides whether an engine or a timing cache built elsewhere can run here."""

    tensorrt: str
    gpu: str
    compute_capability: str
    l4t: str | None

    def digest(self) -> str:
        return hashlib.sha256(canonical_json(asdict(self)).encode()).hexdigest()


def current_device(device: int = 0) -> Device:
    """This machine's TensorRT version, GPU `device` and L4T release (needs tensorrt and a CUDA binding)."""
    import tensorrt as trt

    from perception.engines.cuda_memory import gpus

    visible = gpus()
    if len(visible) <= device:
        raise EngineBuildError(f"no CUDA GPU {device} is visible ({len(visible)} found)")
    return Device(trt.__version__, visible[device].name, visible[device].compute_capability, l4t_release())


@dataclass(frozen=True)
class EngineKey:
    onnx_sha256: str
    precision: Precision
    device: Device
    profile: Profile

    def fields(self) -> dict[str, Any]:
        """The key's fields as JSON values (what the metadata records and the digest covers)."""
        return {"key_format": KEY_FORMAT, "onnx_sha256": self.onnx_sha256, "precision": self.precision,
                **asdict(self.device),
                "profile": {name: [list(shape) for shape in shapes] for name, shapes in self.profile.items()}}

    @property
    def digest(self) -> str:
        return hashlib.sha256(canonical_json(self.fields()).encode()).hexdigest()


def describe_differences(recorded: dict[str, Any], current: dict[str, Any]) -> str:
    """'tensorrt 10.3.0 -> 10.7.0; precision ...': what changed between two sets of key fields."""
    changed = [f"{name} {recorded.get(name)} -> {current.get(name)}" for name in sorted(set(recorded) | set(current))
               if recorded.get(name) != current.get(name)]
    return "; ".join(changed) or "no field differs"


# -- the cache -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lookup:
    status: Literal["hit", "missing", "stale"]  # missing: never built for this model; stale: do not use, rebuild
    reason: str


class EngineCache:
    """Engines and timing caches in one directory (layout in this module's docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    @classmethod
    def default(cls) -> EngineCache:
        if configured := os.environ.get(CACHE_ENV):
            return cls(configured)
        return cls(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeloop" / "engines")

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest}.engine"

    def metadata_path(self, key: EngineKey) -> Path:
        return self.root / f"{key.digest}.json"

    def timing_cache_path(self, device: Device) -> Path:
        return self.root / "timing" / f"{device.digest()[:16]}.cache"

    def lookup(self, key: EngineKey) -> Lookup:
        """Whether the entry for `key` may be used; if not, why (the text goes into the rebuild announcement)."""
        metadata_path, engine_path = self.metadata_path(key), self.engine_path(key)
        if not metadata_path.exists():
            earlier = self.latest(key.onnx_sha256, key.precision)
            if earlier is None:
                return Lookup("missing", "no engine was built for this model and precision in this cache")
            return Lookup("stale", "the cached engine was built for a different key: "
                          + describe_differences(earlier["fields"], key.fields()))
        metadata = _read_metadata(metadata_path)
        if metadata is None:
            return Lookup("stale", f"{metadata_path.name} is unreadable or incomplete")
        if metadata["key"] != key.digest or metadata["fields"] != key.fields():
            return Lookup("stale", f"{metadata_path.name} records a different key: "
                          + describe_differences(metadata["fields"], key.fields()))
        if not engine_path.is_file():
            return Lookup("stale", f"{engine_path.name} is missing")
        if file_sha256(engine_path) != metadata["engine_sha256"]:
            return Lookup("stale", f"{engine_path.name} changed after it was built (truncated or overwritten)")
        return Lookup("hit", "cached")

    def latest(self, onnx_sha256: str, precision: str) -> dict[str, Any] | None:
        """Metadata of the newest readable entry for this ONNX file and precision, on any device or profile."""
        entries = [m for m in map(_read_metadata, self.root.glob("*.json")) if m is not None
                   and m["fields"].get("onnx_sha256") == onnx_sha256 and m["fields"].get("precision") == precision]
        return max(entries, key=lambda m: str(m.get("created", "")), default=None)

    def latest_batch(self, onnx_sha256: str, precision: str) -> BatchRange | None:
        """The batch range of the newest build of this file, so a runtime rebuild keeps the planner's profile."""
        entry = self.latest(onnx_sha256, precision)
        if entry is None:
            return None
        try:
            return BatchRange(*entry["batch"])
        except (KeyError, TypeError, ValueError):
            return None

    def stage(self, key: EngineKey, engine: bytes) -> Path:
        """Write a new engine beside its final name; `commit` makes it the entry once it has passed the check."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f"{key.digest}.engine.{os.getpid()}.partial"
        staged.write_bytes(engine)
        return staged

    def commit(self, key: EngineKey, staged: Path, record: dict[str, Any]) -> Path:
        """Rename the staged engine into place, then write the metadata (written last: it marks the entry whole)."""
        engine_path = self.engine_path(key)
        os.replace(staged, engine_path)
        metadata = {"key": key.digest, "fields": key.fields(), "engine_sha256": file_sha256(engine_path), **record}
        _write_atomically(self.metadata_path(key), (json.dumps(metadata, indent=2) + "\n").encode())
        return engine_path


def _read_metadata(path: Path) -> dict[str, Any] | None:
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    complete = (isinstance(metadata, dict) and isinstance(metadata.get("fields"), dict)
                and isinstance(metadata.get("key"), str) and isinstance(metadata.get("engine_sha256"), str))
    return metadata if complete else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


# -- precision and the check against ONNX Runtime --------------------------------------------------------------

@dataclass(frozen=True)
class Typing:
    """How to ask TensorRT for the ONNX file's precision."""

    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag names
    builder_flags: tuple[str, ...]  # BuilderFlag names


def network_typing(tensorrt_version: str, precision: Precision) -> Typing:
    """Strong typing wherever the installed TensorRT has it; precision builder flags only where it does not.

    A strongly typed network computes in the types the ONNX file states (FP16 tensors, INT8 Q/DQ), which is
    what an FP16 or Q/DQ file means. TensorRT 10 needs the STRONGLY_TYPED flag; from 11 strong typing is the
    only mode and the flag is gone. 8.5 and 8.6 (JetPack 5) have no strong typing: they need an explicit-batch
    network and the FP16 or INT8 builder flag to use the file's precision.
    """
    major, minor = (int(part) for part in re.findall(r"\d+", tensorrt_version)[:2])
    if major >= 11:
        return Typing((), ())
    if major == 10:
        return Typing(("STRONGLY_TYPED",), ())
    if (major, minor) >= (8, 5):
        return Typing(("EXPLICIT_BATCH",), {"fp32": (), "fp16": ("FP16",), "int8": ("INT8",)}[precision])
    raise EngineBuildError(f"TensorRT {tensorrt_version} is older than 8.5, the first with the name-based I/O "
                           "(set_tensor_address, execute_async_v3) this backend uses")


@dataclass(frozen=True)
class Tolerance:
    max_error: float  # largest |engine - ONNX Runtime|, relative to the largest |ONNX Runtime| output
    min_cosine: float  # smallest cosine similarity between an engine row and its ONNX Runtime row


# Engine against ONNX Runtime (CPU, float32 arithmetic) running the same ONNX file. FP32 with TF32 off differs
# only in summation order (~1e-6). FP16 keeps activations in half precision: about 1e-3 per layer, compounding.
# INT8 engines and ONNX Runtime round Q/DQ boundaries differently (never bit-identical), so a value can land one
# quantization step (1/127 of a tensor's range) apart and carry that through later layers.
TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_error=1e-3, min_cosine=0.99999),
    "fp16": Tolerance(max_error=2e-2, min_cosine=0.9995),
    "int8": Tolerance(max_error=1e-1, min_cosine=0.99),
}


@dataclass(frozen=True)
class Comparison:
    batch: int
    max_error: float
    min_cosine: float
    tolerance: Tolerance

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance.max_error and self.min_cosine >= self.tolerance.min_cosine

    def describe(self) -> str:
        return (f"batch {self.batch}: max error {self.max_error:.2e} (<= {self.tolerance.max_error:.0e}), "
                f"min cosine {self.min_cosine:.6f} (>= {self.tolerance.min_cosine})")


def compare_outputs(found: np.ndarray, reference: np.ndarray, precision: str, batch: int) -> Comparison:
    """Engine rows against ONNX Runtime rows, judged by the precision's tolerance."""
    found, reference = found.reshape(len(found), -1).astype(np.float64), reference.reshape(len(reference), -1)
    scale = max(float(np.max(np.abs(reference))), float(np.finfo(np.float32).tiny))
    norms = np.linalg.norm(found, axis=1) * np.linalg.norm(reference, axis=1)
    cosine = np.sum(found * reference, axis=1) / np.maximum(norms, np.finfo(np.float32).tiny)
    if not np.all(np.isfinite(found)):
        return Comparison(batch, float("inf"), -1.0, TOLERANCES[precision])
    return Comparison(batch, float(np.max(np.abs(found - reference))) / scale, float(np.min(cosine)),
                      TOLERANCES[precision])


def sample_feeds(manifest: Manifest, part: Part, batch: int, seed: int = 0, steps: int = 1) -> dict[str, np.ndarray]:
    """Check inputs: real frames (the model directory's goal images, when it has them) and the latents they encode.

    Frames without goal images are random pixels. Predictor rows pair encoded latents with uniform actions
    inside the model's bounds, which is what the planner feeds it; rollout rows, with `steps` such actions.
    """
    from perception.engines.ort import OnnxRuntimeEngine
    from perception.preprocess import Preprocessor

    rng = np.random.default_rng(seed)
    image = manifest.image
    goals = sorted((manifest.root / "goals").glob("*.png"))[:16]
    if goals:
        import cv2

        size = (image.width, image.height)
        frames = np.stack([cv2.resize(np.asarray(cv2.imread(str(path), cv2.IMREAD_COLOR)), size) for path in goals])
    else:
        frames = rng.integers(0, 256, (16, image.height, image.width, 3), dtype=np.uint8)
    encoder_feeds = {"image": Preprocessor(image)(frames[np.arange(batch) % len(frames)]),
                     "proprio": rng.uniform(-1, 1, (batch, manifest.proprio_dim)).astype(np.float32)}
    if part == "encoder":
        return encoder_feeds
    latent = OnnxRuntimeEngine(manifest.path_of(manifest.encoder), manifest.encoder).run(encoder_feeds)["latent"]
    if part == "rollout":
        actions = rng.uniform(manifest.action_low, manifest.action_high, (batch, steps, manifest.action_dim))
        return {"latent": latent, "actions": actions.astype(np.float32)}
    actions = rng.uniform(manifest.action_low, manifest.action_high, (batch, manifest.action_dim))
    return {"latent": latent, "action": actions.astype(np.float32)}


def check_engine(engine: Engine, manifest: Manifest, part: Part, batch: BatchRange,
                 horizon: BatchRange | None = None) -> list[Comparison]:
    """`engine` (a new TensorRT one) against ONNX Runtime on the same file at the profile's min, opt and max batch
    (the rollout at its profile's opt horizon)."""
    from perception.engines.ort import OnnxRuntimeEngine

    spec: ModelFile = getattr(manifest, part)
    reference = OnnxRuntimeEngine(manifest.path_of(spec), spec)
    comparisons = []
    for size in sorted({batch.min, batch.opt, batch.max}):
        feeds = sample_feeds(manifest, part, size, steps=horizon.opt if horizon is not None else 1)
        found, expected = engine.run(feeds), reference.run(feeds)
        comparisons += [compare_outputs(found[o.name], expected[o.name], manifest.precision, size)
                        for o in spec.outputs]
    return comparisons


# -- building --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EngineEntry:
    path: Path
    key: EngineKey
    batch: BatchRange
    built: bool  # False: taken from the cache
    metadata: dict[str, Any]


def open_engine(manifest: Manifest, part: Part, cache: EngineCache, *, batch: BatchRange | None = None,
                horizon: BatchRange | None = None, rebuild: str | None = None,
                workspace_mb: int = DEFAULT_WORKSPACE_MB, cuda_graph: bool = False,
                console: Console | None = None) -> tuple[TensorRTEngine, EngineEntry]:
    """A running engine for one part of the model, from the cache or freshly built and checked.

    `batch` defaults to the encoder's fixed batch, or for the predictor and rollout to the newest cached build's
    range (else `DEFAULT_PREDICTOR_BATCH`); the rollout's `horizon` to `DEFAULT_ROLLOUT_HORIZON`. The rollout
    engine runs a whole plan's rollout (TensorRT's loop over the horizon) in one execute_async_v3.
    `rebuild` (a reason) builds even when the cache has a usable entry. A
    cached engine TensorRT refuses to deserialize is rebuilt once, never used.
    """
    from rich.console import Console

    from perception.engines.tensorrt import EngineLoadError, TensorRTEngine

    console = console or Console(stderr=True)
    spec: ModelFile = getattr(manifest, part)
    if batch is None:
        batch = (ENCODER_BATCH if part == "encoder" else
                 cache.latest_batch(spec.sha256, manifest.precision) or DEFAULT_PREDICTOR_BATCH)
    if part == "rollout" and horizon is None:
        horizon = DEFAULT_ROLLOUT_HORIZON
    device = current_device()
    key = EngineKey(spec.sha256, manifest.precision, device, profile_shapes(spec, batch, horizon))
    lookup = cache.lookup(key)
    if lookup.status == "hit" and rebuild is None:
        try:
            engine = TensorRTEngine(cache.engine_path(key), spec, spec.file, cuda_graph=cuda_graph)
        except EngineLoadError as exc:
            rebuild = str(exc)
        else:
            return engine, EngineEntry(cache.engine_path(key), key, batch, False,
                                       _read_metadata(cache.metadata_path(key)) or {})
    reason = rebuild if rebuild is not None else lookup.reason
    _announce(console, manifest, part, key, batch, cache, reason)
    started = time.monotonic()
    from rich.progress import Progress

    with Progress(console=console, transient=True) as progress:
        staged = cache.stage(key, build_serialized(manifest.path_of(spec), key, cache, workspace_mb, progress))
    build_s = time.monotonic() - started
    try:  # an engine that does not load or fails the check leaves nothing in the cache
        engine = TensorRTEngine(staged, spec, spec.file, cuda_graph=cuda_graph)
        comparisons = check_engine(engine, manifest, part, batch, horizon)
        if not all(c.ok for c in comparisons):
            engine.close()
            raise EngineBuildError(f"{manifest.path_of(spec)}: the {manifest.precision} engine differs from ONNX "
                                   "Runtime beyond tolerance, so it was not cached: "
                                   + "; ".join(c.describe() for c in comparisons if not c.ok))
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    record = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "onnx_file": str(manifest.path_of(spec)), "model": manifest.name, "part": part,
              "batch": [batch.min, batch.opt, batch.max],
              "workspace_mb": workspace_mb, "build_s": round(build_s, 1), "reason": reason,
              "check": [{**asdict(c), "ok": c.ok} for c in comparisons]}
    path = cache.commit(key, staged, record)
    console.print(f"[bold green]TensorRT engine accepted[/] {path} after {build_s:.1f} s; against ONNX Runtime "
                  + "; ".join(c.describe() for c in comparisons))
    return engine, EngineEntry(path, key, batch, True, _read_metadata(cache.metadata_path(key)) or record)


def _announce(console: Console, manifest: Manifest, part: str, key: EngineKey, batch: BatchRange,
              cache: EngineCache, reason: str) -> None:
    from rich.panel import Panel

    device = key.device
    jetson = f", L4T {device.l4t}" if device.l4t else ""
    console.print(Panel(
        f"model {manifest.name} {part} ({key.precision}), {manifest.path_of(getattr(manifest, part))}\n"
        f"GPU {device.gpu} (compute {device.compute_capability}), TensorRT {device.tensorrt}{jetson}\n"
        f"batch profile min {batch.min} / opt {batch.opt} / max {batch.max}\n"
        f"why: {reason}\n"
        f"A build takes seconds on a desktop GPU and can take several minutes on a Jetson; the engine is "
        f"cached in {cache.root} as {key.digest[:16]}...",
        title="[bold]building a TensorRT engine[/]", border_style="bold yellow"))


def build_serialized(onnx_path: Path, key: EngineKey, cache: EngineCache, workspace_mb: int,
                     progress: Progress | None = None) -> bytes:
    """Parse the ONNX file, build for `key`'s precision and profile with the device's timing cache; engine bytes."""
    import tensorrt as trt

    from perception.engines.tensorrt import trt_logger

    typing = network_typing(trt.__version__, key.precision)
    builder = trt.Builder(trt_logger())
    flags = 0
    for name in typing.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger())
    if not parser.parse_from_file(str(onnx_path)):  # from the file, so weights in external data are found
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser refused it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for name in typing.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if key.precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # FP32 means FP32: TF32 matmuls would add ~1e-3 relative error
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in key.profile.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    timing_path = cache.timing_cache_path(key.device)
    _use_timing_cache(config, timing_path)
    monitor = _progress_monitor(trt, progress) if progress is not None and hasattr(trt, "IProgressMonitor") else None
    if monitor is not None:
        config.progress_monitor = monitor
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    _write_atomically(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def _use_timing_cache(config: Any, path: Path) -> None:
    """Start from the device's timing cache, or an empty one when there is none or it does not load."""
    blob = path.read_bytes() if path.is_file() else b""
    timing_cache = config.create_timing_cache(blob)
    # The file is named by device and TensorRT version, so a mismatch means damage: start over (the file is
    # replaced after this build) rather than tune with foreign timings.
    if timing_cache is None or not config.set_timing_cache(timing_cache, False):
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _progress_monitor(trt: Any, progress: Progress) -> Any:
    """TensorRT's build phases as rich progress bars (the builder calls this from its own thread)."""
    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._tasks: dict[str, Any] = {}
            self._depth: dict[str, int] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._depth[phase_name] = self._depth.get(parent_phase, -1) + 1 if parent_phase else 0
            self._tasks[phase_name] = progress.add_task("  " * self._depth[phase_name] + phase_name, total=num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            progress.update(self._tasks[phase_name], completed=step + 1)
            return True  # keep building

        def phase_finish(self, phase_name: str) -> None:
            progress.remove_task(self._tasks.pop(phase_name))

    return Monitor()
