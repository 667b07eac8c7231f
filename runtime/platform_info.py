"""The machine a run ran on, for the `platform` key of runs/<id>/summary.json (docs/deploy-jetson.md).

Everywhere: CPU model and cores, OS, Python, ONNX Runtime, TensorRT and CUDA versions. On a Jetson also the
L4T release, JetPack, power mode (`nvpmodel -q`, else nvpmodel's status file), clocks (`jetson_clocks --show`,
else sysfs) and one sample of jtop (jetson-stats) or tegrastats.

Read only: the commands run are queries, each with a short timeout, and `jetson_clocks` is only ever run with
`--show`. Whatever cannot be read is recorded as null; `collect()` never raises.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
# The device tree's model, and where jetson-containers' run.sh copies it: containers cannot mount /proc files.
MODEL_FILES = (Path("/proc/device-tree/model"), Path("/tmp/nv_jetson_model"))
CUDA_VERSION_FILE = Path("/usr/local/cuda/version.json")
# What nvpmodel itself reads and writes: the mode in force (`pmode:0002`) and the modes' names. Plain files, so a
# container or a user without nvpmodel can still read the power mode.
NVPMODEL_STATUS = Path("/var/lib/nvpmodel/status")
NVPMODEL_CONF = Path("/etc/nvpmodel.conf")
# nvpmodel and jetson_clocks live in /usr/sbin and /usr/bin, which a non-root PATH may lack.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
COMMAND_TIMEOUT_S = 3.0

_RELEASE_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")
_POWER_MODE_RE = re.compile(r"NV Power Mode:\s*(\S.*?)\s*$")
_PMODE_RE = re.compile(r"pmode:0*(\d+)")
_POWER_MODEL_RE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")
_FREQ_UNIT_RE = re.compile(r"^(\w+):?\s+.*\bMinFreq=")
_KEY_VALUE_RE = re.compile(r"(\w+)=(\S+)")


# -- parsers (pure: tested on sample texts) ---------------------------------------------------------------
def parse_nv_tegra_release(text: str) -> dict[str, Any] | None:
    """`# R36 (release), REVISION: 4.3, GCID: …, BOARD: generic, …` -> {"release": "36.4.3", "major": 36, …}."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    match = _RELEASE_RE.match(first)
    if match is None:
        return None
    fields = {}
    for part in first.split(",")[2:]:
        key, sep, value = part.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    return {"release": f"{match.group(1)}.{match.group(2)}", "major": int(match.group(1)),
            "board": fields.get("board"), "gcid": fields.get("gcid")}


def parse_nvpmodel_query(text: str) -> dict[str, Any] | None:
    """`nvpmodel -q` (optionally --verbose) -> {"name": "MAXN", "id": 0}; the id line follows the name."""
    lines = [line.strip() for line in text.splitlines()]
    for index, line in enumerate(lines):
        match = _POWER_MODE_RE.search(line)
        if match is None:
            continue
        mode_id = next((int(after) for after in lines[index + 1:] if after.isdigit()), None)
        return {"name": match.group(1), "id": mode_id}
    return None


def parse_nvpmodel_status(status: str, conf: str) -> dict[str, Any] | None:
    """/var/lib/nvpmodel/status (`pmode:0002`) with /etc/nvpmodel.conf (`< POWER_MODEL ID=2 NAME=MAXN_SUPER >`)
    -> {"name": "MAXN_SUPER", "id": 2}; the name is None when the conf does not define that id."""
    match = _PMODE_RE.search(status)
    if match is None:
        return None
    mode_id = int(match.group(1))
    names = {int(found.group(1)): found.group(2) for found in _POWER_MODEL_RE.finditer(conf)}
    return {"name": names.get(mode_id), "id": mode_id}


def parse_jetson_clocks_show(text: str) -> dict[str, Any] | None:
    """`jetson_clocks --show` -> {"units": {"cpu0": {"min": …, "max": …, "current": …, …}, "GPU": …, "EMC": …},
    "power_mode": "MAXN", "locked": bool}. CPU frequencies are in kHz, the others in Hz, as the tool prints them.
    """
    units: dict[str, dict[str, Any]] = {}
    power_mode = None
    for line in text.splitlines():
        line = line.strip()
        mode = _POWER_MODE_RE.search(line)
        if mode is not None:
            power_mode = mode.group(1)
            continue
        unit = _FREQ_UNIT_RE.match(line)
        if unit is None:
            continue
        values = dict(_KEY_VALUE_RE.findall(line.split("IdleStates:")[0]))
        entry: dict[str, Any] = {}
        for key, name in (("MinFreq", "min"), ("MaxFreq", "max"), ("CurrentFreq", "current"),
                          ("Online", "online"), ("FreqOverride", "override")):
            if values.get(key, "").isdigit():
                entry[name] = int(values[key])
        if "Governor" in values:
            entry["governor"] = values["Governor"]
        units[unit.group(1)] = entry
    if not units:
        return None
    return {"units": units, "power_mode": power_mode, "locked": clocks_locked(units)}


def clocks_locked(units: dict[str, dict[str, Any]]) -> bool | None:
    """True when every online CPU and the GPU run with their floor raised to the ceiling (what jetson_clocks
    does; the rule jetson-stats uses too). None when no CPU or GPU entry was read."""
    checked = [entry for name, entry in units.items()
               if (name.startswith("cpu") and entry.get("online", 1) == 1) or name == "GPU"]
    if not checked:
        return None
    return all("min" in entry and entry.get("min") == entry.get("max") for entry in checked)


# -- readers ----------------------------------------------------------------------------------------------
def _safe(read: Callable[[], T]) -> T | None:
    try:
        return read()
    except Exception:  # one unreadable fact must not cost the others, nor the run
        return None


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def run_query(args: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> str | None:
    """stdout of a query command, or None when it is missing, fails or times out."""
    executable = _which(args[0])
    if executable is None:
        return None
    try:
        done = subprocess.run([executable, *args[1:]], capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip() or None
    except OSError:
        return None


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_version() -> str | None:
    version = _dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13")
    if version is None and importlib.util.find_spec("tensorrt") is not None:
        # JetPack's python3-libnvinfer has no pip metadata: ask the module, which the TensorRT backend loads anyway.
        import tensorrt

        version = str(tensorrt.__version__)
    return version


def cuda_version() -> str | None:
    text = _read_text(CUDA_VERSION_FILE)
    if text is not None:
        return str(json.loads(text)["cuda"]["version"])
    # Older toolkits have no version.json; /usr/local/cuda links to cuda-X.Y.
    target = Path("/usr/local/cuda").resolve().name
    return target.removeprefix("cuda-") if target.startswith("cuda-") else None


# The instruction-set extensions that decide ONNX Runtime's and NumPy's kernels (x86 and ARM spellings).
RELEVANT_CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                      "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "neon", "asimd", "asimdhp", "asimddp", "sve",
                      "sve2", "i8mm", "bf16")


def parse_cpu_flags(cpuinfo: str) -> list[str]:
    """/proc/cpuinfo's first `flags` (x86) or `Features` (ARM) line, filtered to RELEVANT_CPU_FLAGS, in that order."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return [flag for flag in RELEVANT_CPU_FLAGS if flag in present]
    return []


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """`nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader,nounits`."""
    gpus = []
    for line in text.strip().splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 4:
            gpus.append({"name": fields[0], "driver": fields[1], "memory_mib": _number(fields[2]),
                         "max_sm_clock_mhz": _number(fields[3])})
    return gpus


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # "[N/A]" on GPUs that do not report it
        return None


def gpus() -> list[dict[str, Any]] | None:
    """Discrete NVIDIA GPUs by nvidia-smi; None where it is absent (a Jetson's GPU is described under `jetson`)."""
    if _which("nvidia-smi") is None:
        return None
    query = run_query(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                       "--format=csv,noheader,nounits"])
    return parse_nvidia_smi(query or "")


def cpu_model() -> str | None:
    cpuinfo = _read_text(Path("/proc/cpuinfo")) or ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    # ARM kernels name no model in /proc/cpuinfo; lscpu decodes the part number (e.g. Cortex-A78AE).
    for line in (run_query(["lscpu"]) or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Model name" and value.strip():
            return value.strip()
    return platform.processor() or None


def os_name() -> str:
    try:
        return platform.freedesktop_os_release()["PRETTY_NAME"]
    except (OSError, KeyError):
        return platform.platform()


def jetson_model() -> str | None:
    """The device tree's model when it names a Jetson, else None (other ARM boards have a device tree too)."""
    for path in MODEL_FILES:
        model = _read_text(path)
        if model is not None and ("jetson" in model.lower() or "nvidia" in model.lower()):
            return model
    return None


def read_sysfs_clocks(root: Path = Path("/")) -> dict[str, Any] | None:
    """CPU (kHz) and GPU (Hz) frequency ranges from sysfs: readable without root, unlike `jetson_clocks --show`."""
    units: dict[str, dict[str, Any]] = {}
    cpus = sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq"),
                  key=lambda path: int(path.parent.name[3:]))
    for cpufreq in cpus:
        units[cpufreq.parent.name] = _frequencies(cpufreq, "scaling_min_freq", "scaling_max_freq", "scaling_cur_freq")
    for devfreq in sorted((root / "sys/class/devfreq").glob("*gpu*")):
        units["GPU"] = _frequencies(devfreq, "min_freq", "max_freq", "cur_freq")
        break
    units = {name: entry for name, entry in units.items() if entry}
    if not units:
        return None
    return {"units": units, "power_mode": None, "locked": clocks_locked(units)}


def _frequencies(folder: Path, low: str, high: str, current: str) -> dict[str, int]:
    found = {}
    for name, file in (("min", low), ("max", high), ("current", current)):
        text = _read_text(folder / file)
        if text is not None and text.isdigit():
            found[name] = int(text)
    return found


def tegrastats_sample(timeout_s: float = COMMAND_TIMEOUT_S) -> str | None:
    """One line of tegrastats (it prints one per interval until stopped, so it is stopped after the first)."""
    executable = _which("tegrastats")
    if executable is None:
        return None
    try:
        process = subprocess.Popen([executable, "--interval", "100"], stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    assert process.stdout is not None
    received = b""
    deadline = time.monotonic() + timeout_s
    try:
        while b"\n" not in received and (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([process.stdout], [], [], left)
            chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
            if ready and not chunk:
                break  # it exited
            received += chunk
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    line = received.split(b"\n", 1)[0].decode(errors="replace").strip()
    return line or None


def jtop_stats(timeout_s: float = COMMAND_TIMEOUT_S) -> dict[str, Any] | None:
    """jetson-stats' `jtop().stats` when its service answers within the timeout (its client has no timeout of
    its own, so it runs in a daemon thread that is abandoned if the service hangs)."""
    if importlib.util.find_spec("jtop") is None:
        return None
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            from jtop import jtop

            with jtop() as jetson:
                if jetson.ok():
                    result["stats"] = jetson.stats
        except Exception:  # service not running, socket not mounted, version mismatch
            return

    reader = threading.Thread(target=read, name="jtop sample", daemon=True)
    reader.start()
    reader.join(timeout_s)
    stats = result.get("stats")
    return json_safe(stats) if isinstance(stats, dict) else None


def json_safe(value: Any) -> Any:
    """Dicts, lists and scalars as JSON can hold them; anything else (datetimes, enums, objects) as text."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def power_mode() -> dict[str, Any] | None:
    queried = parse_nvpmodel_query(run_query(["nvpmodel", "-q"]) or "")
    if queried is not None:
        return queried
    return parse_nvpmodel_status(_read_text(NVPMODEL_STATUS) or "", _read_text(NVPMODEL_CONF) or "")


def _jetson(model: str | None, release: dict[str, Any] | None) -> dict[str, Any]:
    clocks = _safe(lambda: parse_jetson_clocks_show(run_query(["jetson_clocks", "--show"]) or ""))
    if clocks is not None:
        clocks["source"] = "jetson_clocks --show"
    else:
        clocks = _safe(read_sysfs_clocks)
        if clocks is not None:
            clocks["source"] = "sysfs"
    jtop = _safe(jtop_stats)
    tegrastats = None if jtop is not None else _safe(tegrastats_sample)
    return {
        "model": model,
        "l4t": release,
        # JetPack's meta-package; absent in containers and on flashes without it, where `l4t` identifies JetPack.
        "jetpack": _safe(lambda: (run_query(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]) or "").strip()
                         or None),
        "power_mode": _safe(power_mode),
        "clocks": clocks,
        "stats": ({"source": "jtop", "sample": jtop} if jtop is not None
                  else {"source": "tegrastats", "sample": tegrastats} if tegrastats is not None else None),
    }


def collect() -> dict[str, Any]:
    """Everything above that this machine can tell, with null for the rest. Never raises."""
    try:
        release = _safe(lambda: parse_nv_tegra_release(_read_text(NV_TEGRA_RELEASE) or ""))
        model = _safe(jetson_model)
        return {
            "machine": platform.machine(),
            "os": _safe(os_name),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cpu_model": _safe(cpu_model),
            "cpu_count": os.cpu_count(),
            "cpu_flags": _safe(lambda: parse_cpu_flags(_read_text(Path("/proc/cpuinfo")) or "")),
            "gpus": _safe(gpus),
            "onnxruntime": _safe(lambda: _dist_version("onnxruntime", "onnxruntime-gpu")),
            "tensorrt": _safe(tensorrt_version),
            "cuda": _safe(cuda_version),
            "image": os.environ.get("EDGELOOP_IMAGE"),  # set by docker/Dockerfile*: which image, on which base
            "jetson": _jetson(model, release) if release is not None or model is not None else None,
        }
    except Exception as exc:  # a summary without platform facts beats a run that cannot end
        return {"error": f"{type(exc).__name__}: {exc}"}
