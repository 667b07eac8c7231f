"""Work spread over a Ray cluster: connecting (or starting a private instance), and evaluation shards as tasks.

Every node needs the repository, the virtual environment and the model files at the same paths as the
driver (docs/tuning.md, docs/tasks.md). `edgeloop tune --ray` and `edgeloop eval --ray` take the same
addresses: 'local' (a private instance on this machine), 'auto' (the cluster this machine belongs to) or
ray://HOST:10001.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.evaluation.task_eval import Shard, run_shard


def connect(address: str) -> bool:
    """ray.init for `address` unless Ray is already initialized; True when this call started it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError("ray: not installed; install the tune extra: pip install -e '.[tune]'") from exc
    if ray.is_initialized():
        return False
    ray.init(address=None if address == "local" else address, include_dashboard=False, log_to_driver=False)
    return True


def _shard_on_node(shard: Shard) -> dict[str, Any]:
    import ray

    return run_shard(shard) | {"node": ray.get_runtime_context().get_node_id()}


class RayShards:
    """Evaluation shards as Ray tasks (one CPU each), spread over the nodes; results keep the shards' order."""

    def __init__(self, address: str) -> None:
        self._owns = connect(address)
        import ray

        self._ray = ray
        self._task = self._ray.remote(_shard_on_node).options(num_cpus=1, max_retries=0,
                                                              scheduling_strategy="SPREAD")

    def run(self, shards: list[Shard], on_done: Callable[[Shard], None]) -> list[dict[str, Any]]:
        refs = [self._task.remote(shard) for shard in shards]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[dict[str, Any] | None] = [None] * len(refs)
        pending = list(refs)
        while pending:
            ready, pending = self._ray.wait(pending, num_returns=1)
            for ref in ready:
                results[index[ref]] = self._ray.get(ref)  # a shard that failed raises here, naming its error
                on_done(shards[index[ref]])
        return [result for result in results if result is not None]

    def close(self) -> None:
        if self._owns:
            self._ray.shutdown()
