"""Trials as Ray tasks: the driver keeps the Optuna study (ask/tell, SQLite) and `max_concurrent` tasks in flight.

Each task runs `run_isolated` on some node of the cluster, which starts the trial's own child process and
sim controller there. Every node needs the repository, the virtual environment and the model files at the
same paths as the driver (docs/tuning.md); the trial's run directory is written on the node that ran it.
"""

from __future__ import annotations

from typing import Any

from runtime.evaluation.ray_cluster import connect
from runtime.evaluation.tuning.trial import failed, run_isolated


class RayRunner:
    def __init__(self, address: str, cpus_per_trial: float) -> None:
        self._owns = connect(address)
        import ray

        self._ray = ray
        self._task = ray.remote(run_isolated).options(num_cpus=cpus_per_trial, max_retries=0)

    def cluster_cpus(self) -> float:
        return float(self._ray.cluster_resources().get("CPU", 1.0))

    def submit(self, request: dict[str, Any]) -> object:
        return self._task.remote(request)

    def wait(self, handles: list[object], timeout_s: float) -> list[tuple[object, dict[str, Any]]]:
        ready, _ = self._ray.wait(handles, num_returns=1, timeout=timeout_s)
        results = []
        for ref in ready:
            try:
                results.append((ref, self._ray.get(ref)))
            except Exception as exc:  # a worker that died or a task Ray could not run: that trial failed
                results.append((ref, failed(f"ray task failed: {type(exc).__name__}: {str(exc)[-500:]}")))
        return results

    def cancel(self, handles: list[object]) -> None:
        for ref in handles:
            self._ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
