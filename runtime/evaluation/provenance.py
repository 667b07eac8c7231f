"""Where a result came from: the `provenance` key of every `edgeloop bench` and `edgeloop eval` result JSON.

The model (manifest and each file's sha256), the full resolved config, package versions, the machine
(runtime/platform_info.py), the git commit and whether the tree was dirty, the command line and the UTC time.
docs/benchmarks.md's tables are generated from results carrying it (runtime/evaluation/report/).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from perception.manifest import MANIFEST_FILE, MODEL_PARTS, file_sha256, load_manifest, model_id
from runtime import platform_info
from runtime.config import RunConfig

# What decides a result's numbers besides our own code; absent ones are recorded as null.
PACKAGES = ("edgeloop", "numpy", "onnxruntime", "onnxruntime-gpu", "torch", "mujoco", "tensorrt", "pycuda",
            "opencv-python-headless", "pyzmq", "msgpack", "msgspec", "pydantic", "optuna", "ray", "pytorch-mppi")
GIT_TIMEOUT_S = 5.0
REPOSITORY = Path(__file__).resolve().parents[2]


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (null outside a git checkout)."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    # The published results and page are what `make bench` rewrites as it goes: not a change to what is measured.
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/results", ":!docs/benchmarks.md")
    return {"commit": commit, "dirty": None if changes is None else bool(changes)}


def model_files(manifest_path: str | Path) -> dict[str, Any]:
    """The model's identity (perception/manifest.py model_id) and every model file it names with its sha256 as
    the manifest pins it (load_manifest verifies the bytes), plus the manifest file's own sha256."""
    manifest = load_manifest(manifest_path)
    files = {part: {"file": entry.file, "sha256": entry.sha256}
             for part in MODEL_PARTS if (entry := getattr(manifest, part)) is not None}
    manifest_file = manifest.root / MANIFEST_FILE
    return {"id": model_id(manifest), "manifest": str(manifest_path), "manifest_sha256": file_sha256(manifest_file),
            "name": manifest.name, "precision": manifest.precision, "task": manifest.task, "files": files}


def process_seconds() -> float | None:
    """Wall seconds since this process started (Linux /proc; None elsewhere): a command's run time, since one
    command writes one result as it ends."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 1)


def provenance(config: RunConfig | None, *, manifest: str | Path | None = None,
               argv: list[str] | None = None) -> dict[str, Any]:
    """Everything a reader needs to know where a result came from. `manifest` defaults to the config's model."""
    manifest = manifest if manifest is not None else (config.model.manifest if config is not None else None)
    command = ["edgeloop", *(sys.argv[1:] if argv is None else argv)]
    return {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seconds": process_seconds(),
        "command": shlex.join(command),
        "git": git_state(),
        "model": model_files(manifest) if manifest is not None else None,
        "config": config.model_dump(mode="json") if config is not None else None,
        "packages": package_versions(),
        "machine": platform_info.collect(),
        # Other work on the machine inflates every millisecond: the 1, 5 and 15 minute load averages at the end.
        "load_average": list(os.getloadavg()),
    }
