"""Trials on this machine: each in its own child process, up to `concurrency` at once (one thread waits on each)."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from runtime.evaluation.tuning.trial import TrialProcesses, failed, run_isolated


class LocalRunner:
    def __init__(self, concurrency: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="trial")
        # Per runner, not per module: a closed runner starts nothing more, and the next study's runner is fresh.
        self._processes = TrialProcesses()

    def submit(self, request: dict[str, Any]) -> object:
        return self._pool.submit(run_isolated, request, self._processes)

    def wait(self, handles: list[object], timeout_s: float) -> list[tuple[object, dict[str, Any]]]:
        futures: list[Future[dict[str, Any]]] = handles  # type: ignore[assignment]
        done, _ = wait(futures, timeout=timeout_s, return_when=FIRST_COMPLETED)
        results: list[tuple[object, dict[str, Any]]] = []
        for future in done:
            error = future.exception()
            results.append((future, failed(f"could not run: {error!r}") if error else future.result()))
        return results

    def cancel(self, handles: list[object]) -> None:
        # Every trial of this runner, started or about to start: cancel comes only on the way out (Ctrl-C).
        self._processes.kill_all()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
