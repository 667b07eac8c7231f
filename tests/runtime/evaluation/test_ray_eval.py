"""edgeloop eval over a real two-node Ray cluster on this machine: both nodes play episodes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("mujoco")

from runtime.config import load_config  # noqa: E402
from runtime.evaluation.ray_cluster import RayShards  # noqa: E402
from runtime.evaluation.task_eval import evaluate_task  # noqa: E402
from runtime.sim.goal_sets import make_goal_set  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def two_node_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`ray start --head`, then a second node joining it; one CPU each, stopped afterwards."""
    if not RAY.exists() or shutil.which("ray", path=str(RAY.parent)) is None:
        pytest.skip("the ray command line is not installed")
    address = f"127.0.0.1:{_free_port()}"
    # Ray 2.60's head asks joining nodes and drivers for a token unless auth is off for all of them: loopback only.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = os.environ | {"RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(ROOT)}
    # A private, short session folder: Ray's socket paths must fit in 107 bytes.
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    started = []
    try:
        for args in (["--head", "--port", address.split(":")[1], f"--temp-dir={temp}", "--include-dashboard=false",
                      "--disable-usage-stats"], ["--address", address]):
            subprocess.run([str(RAY), "start", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", "1"],
                           check=True, env=env, capture_output=True, timeout=120)
            started.append(args)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if started:
            subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_eval_spreads_episodes_over_both_nodes_of_a_cluster(two_node_cluster: str) -> None:
    config = load_config(ROOT / "configs" / "tasks" / "reach.yaml", ["planner.samples=32", "planner.iterations=1",
                                                                     "planner.cem.elites=4"])
    goal_set = make_goal_set("reach", count=8, k=6, seed=2)
    runner = RayShards(two_node_cluster)
    try:
        spread = evaluate_task(config, goal_set, ["cem"], runner=runner, shard_goals=1)
    finally:
        runner.close()
    here = evaluate_task(config, goal_set, ["cem"])
    assert len(spread["planners"]["cem"]["nodes"]) == 2  # both nodes played episodes
    # The same episodes as on one machine, in goal order: sharding changes where, not what.
    assert spread["planners"]["cem"]["outcomes"] == here["planners"]["cem"]["outcomes"]
    assert [e["goal"] for e in spread["planners"]["cem"]["episodes_detail"]] == list(range(8))
