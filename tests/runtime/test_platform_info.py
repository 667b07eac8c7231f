"""Platform facts for summary.json: the parsers on real tool output, the readers against fake tools, and
collect() on this machine and on a simulated Jetson."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import platform_info

# An L4T R36.4.3 /etc/nv_tegra_release (JetPack 6.2): the release line, then the lines that follow it.
RELEASE_R36 = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
               "DATE: Wed Jan  8 01:49:37 UTC 2025\n"
               "# KERNEL_VARIANT: oot\n"
               "TARGET_USERSPACE_LIB_DIR=nvidia\n")
RELEASE_R32 = ("# R32 (release), REVISION: 7.1, GCID: 29689809, BOARD: t186ref, EABI: aarch64, "
               "DATE: Wed Feb  2 21:33:23 UTC 2022")

NVPMODEL_Q = "NV Power Mode: MAXN\n0\n"
NVPMODEL_Q_VERBOSE = """NVPM VERB: Config file: /etc/nvpmodel.conf
NVPM VERB: parsing done for /etc/nvpmodel.conf
NVPM VERB: Current mode: NV Power Mode: 25W
1
NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: REAL_VAL: 1 CONF_VAL: 1
"""

# `sudo jetson_clocks --show` on an AGX Orin, clocks not locked (trimmed to two CPUs).
CLOCKS_ORIN = """SOC family:tegra234  Machine:NVIDIA Jetson AGX Orin Developer Kit
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1497600 IdleStates: WFI=1 c7=1
cpu1:  Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
DLA0_CORE:   Online=1 MinFreq=0 MaxFreq=1600000000 CurrentFreq=1600000000
FAN Dynamic Speed control=active hwmon2_pwm1=55
NV Power Mode: MAXN
"""
# The same on a Nano after `sudo jetson_clocks`: floors raised to the ceilings.
CLOCKS_NANO_LOCKED = """\
cpu0: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
cpu1: Online=1 Governor=schedutil MinFreq=1479000 MaxFreq=1479000 CurrentFreq=1479000 IdleStates: WFI=0 c7=0
GPU MinFreq=921600000 MaxFreq=921600000 CurrentFreq=921600000
EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1
Fan: PWM=0
NV Power Mode: MAXN
"""
TEGRASTATS_LINE = ("04-24-2023 00:01:24 RAM 1282/62795MB (lfb 15152x4MB) SWAP 0/31398MB (cached 0MB) "
                   "CPU [0%@729,0%@729] EMC_FREQ 0% GR3D_FREQ 0% cpu@41.5C VDD_GPU_SOC 2400mW/2400mW")


# -- parsers -------------------------------------------------------------------------------------------------
def test_nv_tegra_release_gives_the_l4t_release_and_board() -> None:
    assert platform_info.parse_nv_tegra_release(RELEASE_R36) == {
        "release": "36.4.3", "major": 36, "board": "generic", "gcid": "38968081"}
    assert platform_info.parse_nv_tegra_release(RELEASE_R32)["release"] == "32.7.1"  # type: ignore[index]


@pytest.mark.parametrize("text", ["", "Ubuntu 22.04\n", "R36 REVISION 4.3"])
def test_nv_tegra_release_refuses_other_text(text: str) -> None:
    assert platform_info.parse_nv_tegra_release(text) is None


def test_nvpmodel_query_gives_mode_name_and_id() -> None:
    assert platform_info.parse_nvpmodel_query(NVPMODEL_Q) == {"name": "MAXN", "id": 0}
    assert platform_info.parse_nvpmodel_query(NVPMODEL_Q_VERBOSE) == {"name": "25W", "id": 1}
    assert platform_info.parse_nvpmodel_query("NV Power Mode: 15W\n") == {"name": "15W", "id": None}
    assert platform_info.parse_nvpmodel_query("nvpmodel: command failed\n") is None


NVPMODEL_CONF = """< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online
< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1
< PM_CONFIG DEFAULT=1 >
"""


def test_nvpmodel_status_file_names_the_mode_from_the_conf() -> None:
    assert platform_info.parse_nvpmodel_status("pmode:0002 fmode:quiet\n", NVPMODEL_CONF) == {
        "name": "MAXN_SUPER", "id": 2}
    assert platform_info.parse_nvpmodel_status("pmode:0000", "") == {"name": None, "id": 0}
    assert platform_info.parse_nvpmodel_status("", NVPMODEL_CONF) is None


def test_jetson_clocks_show_gives_each_unit_and_whether_clocks_are_locked() -> None:
    parsed = platform_info.parse_jetson_clocks_show(CLOCKS_ORIN)
    assert parsed is not None
    units = parsed["units"]
    assert set(units) == {"cpu0", "cpu1", "GPU", "EMC", "DLA0_CORE"}
    assert units["cpu0"] == {"min": 729600, "max": 2201600, "current": 1497600, "online": 1, "governor": "schedutil"}
    assert units["GPU"] == {"min": 306000000, "max": 1300500000, "current": 306000000}
    assert units["EMC"]["override"] == 0
    assert parsed["power_mode"] == "MAXN"
    assert parsed["locked"] is False

    locked = platform_info.parse_jetson_clocks_show(CLOCKS_NANO_LOCKED)
    assert locked is not None and locked["locked"] is True
    assert platform_info.parse_jetson_clocks_show("Error: Run this script as a root user\n") is None


def test_offline_cpus_do_not_decide_whether_clocks_are_locked() -> None:
    units = {"cpu0": {"min": 5, "max": 5, "online": 1}, "cpu1": {"min": 1, "max": 5, "online": 0},
             "GPU": {"min": 9, "max": 9}}
    assert platform_info.clocks_locked(units) is True
    assert platform_info.clocks_locked({"EMC": {"min": 1, "max": 2}}) is None


def test_sysfs_clocks_are_read_from_cpufreq_and_devfreq(tmp_path: Path) -> None:
    for cpu, (low, high) in {"cpu0": (729600, 2201600), "cpu10": (2201600, 2201600)}.items():
        folder = tmp_path / "sys/devices/system/cpu" / cpu / "cpufreq"
        folder.mkdir(parents=True)
        for name, value in (("scaling_min_freq", low), ("scaling_max_freq", high), ("scaling_cur_freq", high)):
            (folder / name).write_text(f"{value}\n")
    gpu = tmp_path / "sys/class/devfreq/17000000.gpu"
    gpu.mkdir(parents=True)
    for name, value in (("min_freq", 306000000), ("max_freq", 1300500000), ("cur_freq", 306000000)):
        (gpu / name).write_text(f"{value}\n")

    clocks = platform_info.read_sysfs_clocks(tmp_path)
    assert clocks is not None
    assert list(clocks["units"]) == ["cpu0", "cpu10", "GPU"]
    assert clocks["units"]["cpu0"] == {"min": 729600, "max": 2201600, "current": 2201600}
    assert clocks["units"]["GPU"]["max"] == 1300500000
    assert clocks["locked"] is False
    assert platform_info.read_sysfs_clocks(tmp_path / "empty") is None


def test_json_safe_turns_what_json_cannot_hold_into_text() -> None:
    from datetime import datetime, timedelta

    value = {"time": datetime(2025, 1, 8, 1, 49, 37), "uptime": timedelta(seconds=90), 3: (1, None, object)}
    safe = platform_info.json_safe(value)
    assert safe["time"] == "2025-01-08T01:49:37"
    assert safe["uptime"] == 90.0
    assert safe["3"][:2] == [1, None] and isinstance(safe["3"][2], str)
    json.dumps(safe)


# -- readers against fake tools --------------------------------------------------------------------------------
def _tool(folder: Path, name: str, script: str) -> None:
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder that is the only place commands are looked up."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setattr(platform_info, "_SEARCH_PATH", str(folder))
    return folder


def test_run_query_gives_none_for_missing_failing_and_hanging_commands(tools: Path) -> None:
    _tool(tools, "fails", "echo partial; exit 3\n")
    _tool(tools, "hangs", "exec sleep 30\n")
    _tool(tools, "works", 'echo "ok $1"\n')
    assert platform_info.run_query(["missing"]) is None
    assert platform_info.run_query(["fails"]) is None
    started = time.monotonic()
    assert platform_info.run_query(["hangs"], timeout_s=0.3) is None
    assert time.monotonic() - started < 5
    assert platform_info.run_query(["works", "-q"]) == "ok -q\n"


def test_tegrastats_sample_is_its_first_line_and_the_tool_is_stopped(tools: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    _tool(tools, "tegrastats", f'echo $$ > {pid_file}\nwhile true; do echo "{TEGRASTATS_LINE}"; sleep 0.1; done\n')
    assert platform_info.tegrastats_sample() == TEGRASTATS_LINE
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_tegrastats_that_prints_nothing_gives_none_within_the_timeout(tools: Path) -> None:
    _tool(tools, "tegrastats", "exec sleep 30\n")
    started = time.monotonic()
    assert platform_info.tegrastats_sample(timeout_s=0.3) is None
    assert time.monotonic() - started < 5


FAKE_JTOP = '''
import os, time
from datetime import datetime, timedelta


class jtop:
    def __enter__(self):
        if os.environ.get("FAKE_JTOP") == "hang":
            time.sleep(30)
        if os.environ.get("FAKE_JTOP") == "down":
            raise RuntimeError("The jetson_stats.service is not active")
        return self

    def __exit__(self, *exc):
        return False

    def ok(self):
        return True

    @property
    def stats(self):
        return {"time": datetime(2025, 1, 1), "uptime": timedelta(seconds=5), "nvp model": "MAXN", "GPU": 12.5}
'''


@pytest.fixture
def fake_jtop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """jetson-stats' client as a module on sys.path, gone again after the test."""
    (tmp_path / "jtop").mkdir()
    (tmp_path / "jtop" / "__init__.py").write_text(FAKE_JTOP)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("jtop", None)
    yield
    sys.modules.pop("jtop", None)


@pytest.mark.usefixtures("fake_jtop")
def test_jtop_stats_are_sampled_once_and_made_json_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_JTOP", "ok")
    assert platform_info.jtop_stats() == {"time": "2025-01-01T00:00:00", "uptime": 5.0, "nvp model": "MAXN",
                                          "GPU": 12.5}


@pytest.mark.usefixtures("fake_jtop")
@pytest.mark.parametrize("mode", ["down", "hang"])
def test_jtop_without_its_service_gives_none(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setenv("FAKE_JTOP", mode)
    started = time.monotonic()
    assert platform_info.jtop_stats(timeout_s=0.3) is None
    assert time.monotonic() - started < 5


# -- collect() ---------------------------------------------------------------------------------------------------
def test_collect_on_this_machine_gives_the_host_facts() -> None:
    facts = platform_info.collect()
    json.dumps(facts)
    assert facts["machine"] == platform.machine()
    assert facts["python"] == platform.python_version()
    assert facts["cpu_count"] == os.cpu_count()
    assert facts["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert isinstance(facts["os"], str) and facts["os"]
    assert {"cpu_model", "kernel", "tensorrt", "cuda", "image", "jetson"} <= set(facts)
    if not platform_info.NV_TEGRA_RELEASE.exists() and platform_info.jetson_model() is None:
        assert facts["jetson"] is None


def test_collect_records_null_for_what_fails_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> str:
        raise RuntimeError("unreadable")

    monkeypatch.setattr(platform_info, "cpu_model", broken)
    facts = platform_info.collect()
    assert facts["cpu_model"] is None
    assert facts["python"] == platform.python_version()

    monkeypatch.setattr(platform, "machine", broken)
    assert platform_info.collect() == {"error": "RuntimeError: unreadable"}


def test_collect_on_a_simulated_jetson_queries_and_never_changes_settings(
        tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(RELEASE_R36)
    model = tmp_path / "model"
    model.write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    monkeypatch.setattr(platform_info, "NV_TEGRA_RELEASE", release)
    monkeypatch.setattr(platform_info, "MODEL_FILES", (model,))
    calls = tmp_path / "calls"
    for name, output in (("nvpmodel", NVPMODEL_Q), ("jetson_clocks", CLOCKS_ORIN), ("dpkg-query", "6.2.1+b38")):
        _tool(tools, name, f'echo "{name} $*" >> {calls}\ncat <<"EOF"\n{output}\nEOF\n')
    _tool(tools, "tegrastats", f'echo "{TEGRASTATS_LINE}"; exec sleep 30\n')

    jetson = platform_info.collect()["jetson"]
    assert jetson["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert jetson["l4t"]["release"] == "36.4.3"
    assert jetson["jetpack"] == "6.2.1+b38"
    assert jetson["power_mode"] == {"name": "MAXN", "id": 0}
    assert jetson["clocks"]["source"] == "jetson_clocks --show"
    assert jetson["clocks"]["units"]["GPU"]["max"] == 1300500000
    assert jetson["stats"] == {"source": "tegrastats", "sample": TEGRASTATS_LINE}
    assert sorted(calls.read_text().splitlines()) == [
        "dpkg-query -W -f=${Version} nvidia-jetpack", "jetson_clocks --show", "nvpmodel -q"]


def test_without_nvpmodel_the_power_mode_comes_from_its_status_file(
        tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(RELEASE_R36)
    status, conf = tmp_path / "status", tmp_path / "nvpmodel.conf"
    status.write_text("pmode:0001\n")
    conf.write_text(NVPMODEL_CONF)
    for name, value in (("NV_TEGRA_RELEASE", release), ("NVPMODEL_STATUS", status), ("NVPMODEL_CONF", conf)):
        monkeypatch.setattr(platform_info, name, value)
    assert platform_info.collect()["jetson"]["power_mode"] == {"name": "25W", "id": 1}


def test_jetson_clocks_refused_without_root_falls_back_to_sysfs(
        tools: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = tmp_path / "nv_tegra_release"
    release.write_text(RELEASE_R36)
    monkeypatch.setattr(platform_info, "NV_TEGRA_RELEASE", release)
    _tool(tools, "jetson_clocks", 'echo "Error: Run this script($0) as a root user"; exit 1\n')
    from_sysfs = {"units": {"GPU": {"min": 1, "max": 2}}, "power_mode": None, "locked": False}
    monkeypatch.setattr(platform_info, "read_sysfs_clocks", lambda: dict(from_sysfs))
    assert platform_info.collect()["jetson"]["clocks"] == {**from_sysfs, "source": "sysfs"}


def test_run_summary_holds_the_platform_collected_once_at_loop_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.config import load_config
    from runtime.link.runtime_side import RuntimeLink
    from runtime.loop import ControlLoop
    from runtime.sources import open_source

    root = Path(__file__).resolve().parents[2]
    calls: list[int] = []

    def collect() -> dict[str, str]:
        calls.append(1)
        return {"machine": "collected"}

    monkeypatch.setattr(platform_info, "collect", collect)
    config = load_config(root / "configs" / "demo.yaml", [
        f"model.manifest={root / 'models' / 'demo' / 'manifest.json'}",
        f"goal.image={root / 'models' / 'demo' / 'goals' / 'goal_000.png'}",
        f"runs_dir={tmp_path}", "link.goal_endpoint=null", "loop.status_line=false"])
    # No controller listens there: the loop only starts and closes, sending a stop nobody receives.
    loop = ControlLoop(config, source=open_source(f"mcap:{root / 'data' / 'demo_feed.mcap'}"),
                       link=RuntimeLink("tcp://127.0.0.1:1", "tcp://127.0.0.1:2"))
    assert loop.summary()["platform"] == {"machine": "collected"}
    summary = loop.close()
    assert json.loads((Path(summary["run_dir"]) / "summary.json").read_text())["platform"] == {"machine": "collected"}
    assert len(calls) == 1
