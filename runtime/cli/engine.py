"""`edgeloop build-engine` and `edgeloop convert-fp16`: TensorRT engines for a model, and its FP16 variant."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from perception.trt_build import DEFAULT_WORKSPACE_MB
from runtime.cli.common import fail

if TYPE_CHECKING:
    from perception.trt_build import BatchRange


def build_engine(
    manifest: Annotated[Path, typer.Argument(help="Model manifest.json (or its directory): fp32, fp16 or int8.")],
    samples: Annotated[int | None, typer.Option(
        min=1, help="Planner samples N: the predictor's optimal batch (default: --config's, else the planner "
                    "default).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="Run config whose planner.samples sets the predictor's batch.")] = None,
    max_batch: Annotated[int | None, typer.Option(
        min=1, help="Largest predictor batch the engine takes (default: twice the samples).")] = None,
    workspace_mb: Annotated[int, typer.Option(
        min=16, help="TensorRT builder workspace (memory pool limit), MiB.")] = DEFAULT_WORKSPACE_MB,
    cache: Annotated[Path | None, typer.Option(
        help="Engine cache directory (default: $EDGELOOP_ENGINE_CACHE, else ~/.cache/edgeloop/engines).")] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even when the cache holds a usable engine.")] = False,
) -> None:
    """Build (or find in the cache) the model's TensorRT engines on this GPU, checked against ONNX Runtime."""
    from rich.console import Console
    from rich.table import Table

    from perception.engines.base import EngineError
    from perception.engines.tensorrt import tensorrt_unavailable
    from perception.manifest import ManifestError, load_manifest
    from perception.trt_build import (
        ENCODER_BATCH,
        EngineBuildError,
        EngineCache,
        open_engine,
        predictor_batch,
        rollout_horizon,
    )
    from planning.settings import PlannerSettings
    from runtime.config import ConfigError, load_config

    if samples is not None and config is not None:
        raise fail("give --samples or --config, not both: each sets the predictor's batch")
    missing = tensorrt_unavailable()
    if missing is not None:
        raise fail(f"TensorRT cannot run here: {missing}. Build engines on the GPU machine that runs them "
                   "(an engine runs only on the GPU and TensorRT version that built it; docs/tensorrt.md)")
    try:
        model = load_manifest(manifest)
        planner = load_config(config).planner if config is not None else PlannerSettings()
        samples = planner.samples if samples is None else samples
        horizon = rollout_horizon(planner.horizon * planner.action_block)
        if max_batch is not None and max_batch < samples:
            raise fail(f"--max-batch {max_batch} is below the planner's {samples} samples")
        store = EngineCache(cache) if cache is not None else EngineCache.default()
        console = Console(stderr=True)
        table = Table(title=f"TensorRT engines for {model.name} ({model.precision}) in {store.root}")
        for column in ("part", "batch min/opt/max", "engine", "source", "worst check vs ONNX Runtime"):
            table.add_column(column)
        parts: list[tuple[Literal["encoder", "predictor", "rollout"], BatchRange]] = [
            ("encoder", ENCODER_BATCH), ("predictor", predictor_batch(samples, max_batch))]
        if model.rollout is not None:  # its horizon profile: the config's predictor steps per plan
            parts.append(("rollout", predictor_batch(samples, max_batch)))
        for part, batch in parts:
            engine, entry = open_engine(model, part, store, batch=batch, horizon=horizon, workspace_mb=workspace_mb,
                                        console=console, rebuild="--force given" if force else None)
            engine.close()
            checks = entry.metadata.get("check", [])
            worst = (f"max error {max(c['max_error'] for c in checks):.1e}, "
                     f"min cosine {min(c['min_cosine'] for c in checks):.6f}") if checks else "not recorded"
            table.add_row(part, f"{batch.min}/{batch.opt}/{batch.max}", entry.path.name,
                          "built now" if entry.built else "cache", worst)
    except (ManifestError, ConfigError, EngineBuildError, EngineError) as exc:
        raise fail(str(exc)) from exc
    Console().print(table)


def convert_fp16(
    manifest: Annotated[Path, typer.Argument(help="FP32 model manifest.json (or its directory).")],
    out: Annotated[Path, typer.Option(help="Directory for the FP16 ONNX files and their manifest.")],
) -> None:
    """Write the FP16 variant (float16 weights and compute, float32 inputs and outputs) for TensorRT."""
    from perception.fp16 import FP16_TOLERANCE, Fp16Error, convert_to_fp16
    from perception.manifest import ManifestError, load_manifest

    try:
        result = convert_to_fp16(load_manifest(manifest), out)
    except (ManifestError, Fp16Error) as exc:
        raise fail(str(exc)) from exc
    errors = ", ".join(f"{part} {error:.1e}" for part, error in result.max_error.items())
    typer.echo(f"wrote {result.manifest_path} (fp16); largest error against fp32 on ONNX Runtime, relative to the "
               f"largest output: {errors} (tolerance {FP16_TOLERANCE:.0e})")
