"""`edgeloop export rosbag2`: a run or recording in another tool's format (docs/rosbag2.md)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from runtime.cli.common import fail

export_app = typer.Typer(help="Export a model again from its weights, or a run or recording for other tools "
                                "(docs/training.md, docs/rosbag2.md).", no_args_is_help=True)


class StorageOption(str, Enum):
    sqlite3 = "sqlite3"
    mcap = "mcap"


class ImagesOption(str, Enum):
    raw = "raw"
    png = "png"
    jpeg = "jpeg"


@export_app.command("rosbag2")
def export_rosbag2(
    run: Annotated[Path, typer.Argument(help="A run folder (runs/<id>, holding run.mcap) or an MCAP recording.")],
    out: Annotated[Path, typer.Option(help="The bag folder to create (must not exist).")],
    storage: Annotated[StorageOption, typer.Option(help="rosbag2 storage: sqlite3 (.db3) or mcap.")]
    = StorageOption.sqlite3,
    images: Annotated[ImagesOption, typer.Option(help="Frames as sensor_msgs/Image bgr8 (raw) or CompressedImage "
                                                      "(png, jpeg).")] = ImagesOption.raw,
    joint_names: Annotated[str | None, typer.Option(help="Comma-separated joint names for JointState "
                                                         "(default joint_0, joint_1, ...).")] = None,
) -> None:
    """Write a run's frames, joint states, commands and stops to a ROS 2 bag."""
    from runtime.offline.rosbag2_export import ExportError
    from runtime.offline.rosbag2_export import export_rosbag2 as export
    from runtime.recording import RecordingError

    names = [name.strip() for name in joint_names.split(",")] if joint_names is not None else None
    if names is not None and not all(names):
        raise typer.BadParameter(f"expected comma-separated names, not {joint_names!r}", param_hint="--joint-names")
    try:
        topics = export(run, out, storage=storage.value, images=images.value, joint_names=names)
    except (ExportError, RecordingError) as exc:
        raise fail(str(exc)) from exc
    for topic, (msgtype, count) in topics.items():
        typer.echo(f"{topic}: {count} {msgtype}")
    typer.echo(f"wrote {out} ({storage.value})")
