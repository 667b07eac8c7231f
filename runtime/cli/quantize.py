"""`edgeloop quantize`: the INT8 Q/DQ model from an FP32 manifest and real recordings, with its accuracy report."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.common import fail
from runtime.cli.progress import progress_bar
from runtime.config import RunConfig

DEFAULT_CONFIG = Path("configs/demo.yaml")


def quantize(
    manifest: Annotated[Path, typer.Argument(help="FP32 model manifest.json (or its directory).")],
    out: Annotated[Path, typer.Option(help="Directory for the INT8 model, its manifest and accuracy report.")],
    calibration: Annotated[list[Path] | None, typer.Option(
        help="MCAP recording(s) to draw calibration frames from (repeatable; required).")] = None,
    frames: Annotated[int, typer.Option(min=1, help="Calibration frames, spread over the recordings.")] = 256,
    cache: Annotated[Path, typer.Option(help="Where calibration sets are cached, keyed by recordings + count.")]
    = Path("build/calibration"),
    report: Annotated[bool, typer.Option(help="Measure and write accuracy.md / accuracy.json.")] = True,
    goals: Annotated[int, typer.Option(min=1, help="Held-out goals for the accuracy report.")] = 50,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=(
        "Run config whose planner the report plans with, whose horizon the predictor's calibration rolls out "
        "and whose calibration.camera undistorts the calibration frames (default: configs/demo.yaml when "
        "present, else the defaults)."))] = None,
) -> None:
    """Quantize encoder and predictor to INT8 (symmetric, per-channel, Q/DQ) for ONNX Runtime and TensorRT."""
    from calibration.camera_file import CalibrationFileError
    from calibration.frame_sets import CalibrationSetError
    from calibration.undistort import FrameSizeError
    from perception.manifest import ManifestError, load_manifest
    from perception.quantize import QuantizationError
    from runtime.config import ConfigError
    from runtime.offline.quantize import quantize_from_recordings
    from runtime.recording import RecordingError

    if not calibration:
        raise fail("no calibration data: give --calibration RECORDING.mcap (real frames set the INT8 ranges; "
                    "there is no random fallback)")
    try:
        fp32 = load_manifest(manifest)
        config, run_config = _run_config(config)
        if report:  # before the work: a report that cannot run must not be found out after quantizing
            _check_goal_set(fp32.root / "manifest.json", goals)
        with progress_bar("quantizing: calibration frames, then the INT8 model"):
            quantized = quantize_from_recordings(fp32, calibration, out, run_config, frames=frames, cache=cache)
    except (ManifestError, ConfigError, CalibrationSetError, QuantizationError, RecordingError,
            CalibrationFileError, FrameSizeError) as exc:
        raise fail(str(exc)) from exc
    recordings, int8_path = quantized.recordings, quantized.manifest
    typer.echo(f"calibration set {quantized.calibration_sha256[:12]}: {quantized.calibration_frames} frames from "
               f"{len(recordings)} recording(s)")
    typer.echo(f"wrote {int8_path} (int8, zero points all 0)")
    if not report:
        return
    from runtime.evaluation.accuracy import accuracy_report, write_report

    try:
        with progress_bar("accuracy report: held-out goals, fp32 then int8", 2 * goals) as bar:
            result = accuracy_report(fp32.root / "manifest.json", int8_path, run_config.planner, goals=goals,
                                     on_goal=bar.advance)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        raise fail(f"accuracy report: {exc} (the INT8 model in {out} is written and usable)") from exc
    command = ["edgeloop", "quantize", str(manifest), *(f"--calibration={path}" for path in recordings),
               f"--out={out}", f"--frames={frames}", f"--goals={goals}",
               *([f"--config={config}"] if config is not None else [])]
    from runtime.evaluation.provenance import provenance

    result["provenance"] = provenance(run_config, manifest=int8_path, argv=command[1:])
    json_path, md_path = write_report(result, out, shlex.join(command))
    typer.echo(f"success fp32 {result['success_fp32']:.0%} int8 {result['success_int8']:.0%} | latent cosine "
               f"{result['latent_cosine_mean']:.4f} | encoder {result['encoder_speedup']:.2f}x | predictor "
               f"{result['predictor_speedup']:.2f}x | {md_path}, {json_path}")


def _check_goal_set(manifest_path: Path, goals: int) -> None:
    from runtime.evaluation.closed_loop import load_goal_set

    try:
        load_goal_set(manifest_path, goals)
    except (OSError, ValueError, KeyError) as exc:  # the held-out goal set: missing, unreadable or too small
        raise fail(f"accuracy report: {exc} (fewer --goals, or --no-report)") from exc


def _run_config(config: Path | None) -> tuple[Path | None, RunConfig]:
    """The config file used (None: none) and the run config; the demo config when none is named and it exists."""
    from runtime.config import load_config

    if config is None:
        if not DEFAULT_CONFIG.is_file():
            return None, load_config(None)
        config = DEFAULT_CONFIG
    return config, load_config(config)
