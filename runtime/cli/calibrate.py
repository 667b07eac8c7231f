"""`edgeloop calibrate board | intrinsics | extrinsics | synthesize`: camera calibration (docs/calibration.md)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from runtime.cli.common import fail

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

    from calibration.boards import BoardDetector, BoardSpec
    from calibration.capture import FrameSelector
    from calibration.images import ImageDetections

calibrate_app = typer.Typer(help="Camera calibration: intrinsics, undistortion and extrinsics (docs/calibration.md).",
                            no_args_is_help=True)


class LensModelOption(str, Enum):
    pinhole = "pinhole"
    fisheye = "fisheye"


BoardOption = Annotated[str, typer.Option(
    "--board", help="Board spec: checkerboard:COLSxROWS:SQUARE_M (inner corners) or "
                    "charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT (squares), lengths in metres.")]
SharpnessOption = Annotated[float, typer.Option(min=0, help="Reject views whose board is less sharp than this "
                                                            "(docs/calibration.md).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")]


def _spec(text: str) -> BoardSpec:
    from calibration.boards import BoardError, BoardSpec

    try:
        return BoardSpec.parse(text)
    except BoardError as exc:
        raise typer.BadParameter(str(exc), param_hint="--board") from exc


def _detector(board: str, min_sharpness: float) -> BoardDetector:
    from calibration.boards import BoardDetector

    return BoardDetector(_spec(board), min_sharpness=min_sharpness)


def _progress(*columns: ProgressColumn) -> Progress:
    """A progress bar on stderr (stdout carries the report), gone when done; nothing when not a terminal."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    return Progress(*columns, console=console, transient=True, disable=not console.is_terminal)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    from calibration.report import report_lines

    if as_json:
        typer.echo(json.dumps(report))
    else:
        for line in report_lines(report):
            typer.echo(line)


@calibrate_app.command("board")
def board_command(
    board: BoardOption,
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("board.png"),
    dpi: Annotated[int, typer.Option(min=72, help="Printer resolution the image is made for.")] = 300,
) -> None:
    """Write a printable image of a board, one square of margin around it."""
    import cv2

    from calibration.boards import board_image

    spec = _spec(board)
    px_per_square = round(spec.square_m / 0.0254 * dpi)
    image, _ = board_image(spec, px_per_square, margin_px=px_per_square)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = cv2.imwrite(str(out), image)
    except cv2.error:  # OpenCV raises, rather than returns False, for an extension it has no writer for
        written = False
    if not written:
        raise fail(f"{out}: cannot write an image there (is the extension .png?)")
    height, width = image.shape
    typer.echo(f"{out}: {width}x{height} px; printed at {dpi} dpi and 100% scale it is "
               f"{width / dpi * 25.4:.0f}x{height / dpi * 25.4:.0f} mm with {spec.square_m * 1000:g} mm squares: "
               "measure a square after printing and use the measured size in --board")


def _detect_files(pattern: str, detector: BoardDetector) -> ImageDetections:
    """Detections in a folder or glob of images, with a progress bar."""
    from calibration.images import detect_images, image_paths

    paths = image_paths(pattern)
    with _progress() as progress:
        task = progress.add_task(f"finding the board in {len(paths)} images", total=len(paths))
        return detect_images(paths, detector, lambda done: progress.update(task, completed=done))


def _capture(uri: str, selector: FrameSelector, timeout_s: float) -> str:
    """Offer frames from a source to the selector until it has enough, with a progress bar; returns why it stopped."""
    from rich.progress import BarColumn, TextColumn

    from calibration.capture import capture
    from runtime.sources import open_source

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"))
    with open_source(uri, pace="fast", loop=False) as source, _progress(*columns) as progress:
        task = progress.add_task("frames kept", total=selector.min_frames, status="waiting for frames")

        def show() -> None:
            rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(selector.rejected.items()))
            progress.update(task, completed=len(selector.frames),
                            status=f"{len(selector.frames)} kept of {selector.seen} seen, coverage "
                                   f"{selector.coverage:.0%} (target {selector.target_coverage:.0%})"
                                   + (f"; skipped: {rejected}" if rejected else ""))

        def read(timeout: float) -> np.ndarray | None:
            frame = source.read_latest(timeout)
            return None if frame is None else frame.image

        return capture(selector, read, lambda: source.finished, timeout_s, show)


@calibrate_app.command("intrinsics")
def intrinsics_command(
    board: BoardOption,
    images: Annotated[str | None, typer.Option(help="A folder of board images, or a quoted glob ('shots/*.jpg').")]
    = None,
    source: Annotated[str | None, typer.Option(help="Capture mode: frames from a source URI (file:, images:, mcap:, "
                                                    "v4l2:, gst:, zmq://).")] = None,
    model: Annotated[LensModelOption, typer.Option(help="Lens model.")] = LensModelOption.pinhole,
    out: Annotated[Path, typer.Option(help="Calibration file to write (OpenCV FileStorage YAML).")]
    = Path("camera.yaml"),
    ros_out: Annotated[Path | None, typer.Option(help="Also write a ROS camera_info YAML here.")] = None,
    plots: Annotated[Path | None, typer.Option(help="Folder for the plots (PNG) and report.json.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the report (JSON) here.")] = None,
    camera_name: Annotated[str, typer.Option(help="camera_name in the files.")] = "camera",
    min_frames: Annotated[int, typer.Option(min=4, help="Capture: keep at least this many frames.")] = 15,
    max_frames: Annotated[int, typer.Option(min=4, help="Capture: stop after keeping this many.")] = 40,
    coverage: Annotated[float, typer.Option(min=0.0, max=1.0, help="Capture: image area the kept boards must "
                                                                   "cover before min-frames is enough.")] = 0.6,
    frames_out: Annotated[Path | None, typer.Option(help="Capture: save the kept frames here as PNG.")] = None,
    timeout_s: Annotated[float, typer.Option(min=0.1, help="Capture: stop when no frame arrives for this long.")]
    = 10.0,
    min_sharpness: SharpnessOption = 30.0,
    json_: JsonOption = False,
) -> None:
    """Calibrate a camera's intrinsics from board images (--images) or a live or recorded source (--source)."""
    import cv2

    from calibration.capture import FrameSelector
    from calibration.images import read_image
    from calibration.intrinsics import BoardView
    from calibration.results import IntrinsicsOutputs, calibrate_and_write_intrinsics

    if (images is None) == (source is None):
        raise typer.BadParameter("give either --images or --source", param_hint="--images")
    if max_frames < min_frames:
        raise typer.BadParameter(f"must be at least --min-frames ({min_frames})", param_hint="--max-frames")
    detector = _detector(board, min_sharpness)
    try:
        if images is not None:
            found = _detect_files(images, detector)
            views, rejected, size = found.views, found.rejected, found.size
            rejected_frames: dict[str, int] = {}
            paths = found.paths

            def image_of(name: str) -> np.ndarray:
                return read_image(paths[name])
        else:
            selector = FrameSelector(detector, min_frames, max_frames, coverage)
            stopped = _capture(source or "", selector, timeout_s)
            if selector.size is None:
                raise fail(f"{source}: no frames ({stopped})")
            typer.echo(f"capture: {stopped}; kept {len(selector.frames)} of {selector.seen} frames, coverage "
                       f"{selector.coverage:.0%}", err=True)
            names = [f"frame_{i:03d}" for i in range(len(selector.frames))]
            views = [BoardView(n, d) for n, d in zip(names, selector.detections, strict=True)]
            frames = dict(zip(names, selector.frames, strict=True))

            def image_of(name: str) -> np.ndarray:
                return frames[name]

            rejected, rejected_frames, size = [], dict(selector.rejected), selector.size
            if frames_out is not None:
                frames_out.mkdir(parents=True, exist_ok=True)
                for name, frame in frames.items():
                    cv2.imwrite(str(frames_out / f"{name}.png"), frame)
        summary = calibrate_and_write_intrinsics(views, detector.spec, size, model.value, camera_name, rejected,
                                                 rejected_frames, image_of,
                                                 IntrinsicsOutputs(out, ros_out, plots, report))
    except (ValueError, OSError, ImportError) as exc:  # bad board images, spec or files (the text names them);
        raise fail(str(exc)) from exc                 # --plots without matplotlib (the text names the extra)
    _print_report(summary, json_)


@calibrate_app.command("extrinsics")
def extrinsics_command(
    board: BoardOption,
    camera: Annotated[Path, typer.Option(help="The camera's calibration file (either format); the extrinsics are "
                                              "written into it.")],
    poses: Annotated[Path, typer.Option(help="Robot poses file: images and base_T_gripper (docs/calibration.md).")],
    ros_out: Annotated[Path | None, typer.Option(help="Also write a ROS camera_info YAML here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the report (JSON) here.")] = None,
    min_sharpness: SharpnessOption = 30.0,
    json_: JsonOption = False,
) -> None:
    """Hand-eye calibration of a fixed camera: its pose in the robot base frame from images of a board the
    robot holds at known poses."""
    from calibration.results import calibrate_and_write_extrinsics

    detector = _detector(board, min_sharpness)
    try:
        with _progress() as progress:
            task = progress.add_task("finding the board", total=None)

            def show(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total,
                                description=f"finding the board in {total} images")

            summary = calibrate_and_write_extrinsics(camera, poses, detector, ros_out=ros_out, report=report,
                                                     progress=show)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from exc
    _print_report(summary, json_)


@calibrate_app.command("synthesize")
def synthesize_command(
    board: BoardOption,
    out: Annotated[Path, typer.Option(help="Folder for the images, truth.yaml and (--handeye) poses.yaml.")],
    model: Annotated[LensModelOption, typer.Option(help="Lens model of the simulated camera.")]
    = LensModelOption.pinhole,
    views: Annotated[int, typer.Option(min=1, help="Images to render.")] = 15,
    width: Annotated[int, typer.Option(min=64, help="Image width.")] = 640,
    height: Annotated[int, typer.Option(min=48, help="Image height.")] = 480,
    handeye: Annotated[bool, typer.Option("--handeye", help="A fixed camera watching a board the robot holds: "
                                                            "also write poses.yaml.")] = False,
    noise: Annotated[float, typer.Option(min=0.0, help="Sensor noise, in grey levels.")] = 1.5,
    seed: Annotated[int, typer.Option(help="Random seed of the board poses.")] = 0,
) -> None:
    """Render board views through a known camera (truth.yaml), to try calibration without a camera."""
    from calibration.synthetic import write_synthetic_set

    spec = _spec(board)
    try:
        written = write_synthetic_set(spec, model.value, (width, height), views, out, handeye=handeye, noise=noise,
                                      seed=seed)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    if written.gripper_T_board is not None:
        typer.echo(f"board on the gripper (gripper_T_board): {np.round(written.gripper_T_board, 4).tolist()}")
    typer.echo(f"{out}: {len(written.images)} views of {spec} through the camera in {written.truth}"
               + (f", robot poses in {written.poses}" if written.poses is not None else ""))
