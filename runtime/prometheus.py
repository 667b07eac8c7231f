"""The loop's telemetry for Prometheus (docs/metrics.md): an HTTP endpoint that reads it at scrape time.

Nothing here runs per tick: a scrape copies the loop's LogHistograms and counters, so the loop pays nothing
while no one scrapes and one copy per scrape when someone does. Timings are exported in seconds (Prometheus'
convention) with buckets that resolve millisecond stages, counters as `edgeloop_<name>_total`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from runtime.telemetry import LogHistogram, Telemetry

if TYPE_CHECKING:
    from planning.planner import PlanResult
    from runtime.config import PrometheusSection
    from runtime.loop import ControlLoop

# Upper bounds in seconds: a 30 Hz tick is 33 ms; a stage from a quarter millisecond up to a second.
STAGE_BUCKETS_S = (0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
OUTAGE_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
ITERATION_BUCKETS = (1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
NAMESPACE = "edgeloop"
_NOT_A_NAME = re.compile(r"[^a-zA-Z0-9_]")


@dataclass(frozen=True)
class HistogramSource:
    """One LogHistogram exported as a Prometheus histogram; `scale` turns its values into the exported unit."""

    name: str
    help: str
    histogram: LogHistogram
    bounds: tuple[float, ...]
    scale: float = 1.0


@dataclass(eq=False)  # a registry keys its collectors by identity
class LoopMetrics(Collector):
    """What one run exposes, read at each scrape: the telemetry's stage and tick timings and counters, more
    histograms (planner iterations, outages), the link's own counters, the newest plan and a few labels."""

    telemetry: Telemetry
    histograms: list[HistogramSource] = field(default_factory=list)
    link_counters: Mapping[str, int] = field(default_factory=dict)
    last_plan: Callable[[], PlanResult | None] = lambda: None
    info: dict[str, str] = field(default_factory=dict)

    def collect(self) -> Iterator[Metric]:
        telemetry = self.telemetry
        stages = HistogramMetricFamily(f"{NAMESPACE}_stage_seconds", "Time spent in each stage of a tick.",
                                       labels=["stage"])
        for name, histogram in list(telemetry.stages.items()):  # the loop may add a stage meanwhile: a snapshot
            stages.add_metric([name], *_buckets(histogram, STAGE_BUCKETS_S, 1e-3))
        yield stages
        yield _histogram(HistogramSource(f"{NAMESPACE}_tick_seconds", "Time of a whole tick, start to end.",
                                         telemetry.tick_ms, STAGE_BUCKETS_S, 1e-3))
        for source in self.histograms:
            yield _histogram(source)
        yield from _counters(f"{NAMESPACE}_", "Run counter", dict(telemetry.counters))
        yield from _counters(f"{NAMESPACE}_link_", "The link's counter", dict(self.link_counters))
        yield GaugeMetricFamily(f"{NAMESPACE}_uptime_seconds", "Seconds since the run's telemetry started.",
                                value=telemetry.elapsed_s())
        plan = self.last_plan()
        for name, help_text, value in (
                ("planner_last_cost", "Best cost of the newest plan (+Inf: no candidate was finite).",
                 plan.cost if plan is not None else math.nan),
                ("planner_last_iterations", "Optimizer iterations of the newest plan.",
                 plan.iterations if plan is not None else math.nan),
                ("planner_last_spread", "Sampling spread of the newest plan's last iteration (normalized units).",
                 plan.spread if plan is not None else math.nan),
                ("planner_last_seconds", "Planner time of the newest plan.",
                 plan.ms / 1000 if plan is not None else math.nan)):
            yield GaugeMetricFamily(f"{NAMESPACE}_{name}", help_text, value=float(value))
        if self.info:
            yield InfoMetricFamily(f"{NAMESPACE}_run", "What this run is: model, backend, optimizer.", value=self.info)


def _buckets(histogram: LogHistogram, bounds: tuple[float, ...],
             scale: float) -> tuple[list[tuple[str, float]], float]:
    below, count = histogram.counts_at_most([bound / scale for bound in bounds])
    buckets = [(repr(float(bound)), float(n)) for bound, n in zip(bounds, below, strict=True)]
    return [*buckets, ("+Inf", float(count))], histogram.total * scale


def _histogram(source: HistogramSource) -> HistogramMetricFamily:
    family = HistogramMetricFamily(source.name, source.help)
    buckets, total = _buckets(source.histogram, source.bounds, source.scale)
    family.add_metric([], buckets, total)
    return family


def _counters(prefix: str, what: str, counters: dict[str, int]) -> Iterator[CounterMetricFamily]:
    for name, value in sorted(counters.items()):
        metric = prefix + _NOT_A_NAME.sub("_", name)
        yield CounterMetricFamily(metric, f"{what} {name!r} (summary.json names it so).", value=value)


def loop_metrics(loop: ControlLoop) -> LoopMetrics:
    """The metrics of a control loop: what it already keeps, read when scraped."""
    return LoopMetrics(
        loop.telemetry,
        histograms=[
            HistogramSource(f"{NAMESPACE}_plan_seconds", "Planner time per plan (its own clock).", loop.plan_ms,
                            STAGE_BUCKETS_S, 1e-3),
            HistogramSource(f"{NAMESPACE}_planner_iterations", "Optimizer iterations per plan.",
                            loop.plan_iterations, ITERATION_BUCKETS),
            HistogramSource(f"{NAMESPACE}_state_outage_seconds", "Each outage of the controller's state, from the "
                            "last state before it to the first after.", loop.outage_ms, OUTAGE_BUCKETS_S, 1e-3),
        ],
        link_counters=loop.link.counters,
        last_plan=lambda: loop.last_plan,
        info={"model_id": loop.model["model_id"], "backend": loop.world_model.backend,
              "optimizer": loop.config.planner.optimizer},
    )


class MetricsServer:
    """The /metrics endpoint of one run on its own registry (with the process' CPU and memory), in a daemon
    thread; `close` frees the port."""

    def __init__(self, collector: Collector, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        ProcessCollector(registry=registry)
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise OSError(f"prometheus: cannot serve metrics on {host}:{port} ({exc.strerror or exc}); set "
                          f"prometheus.port to a free port, or prometheus.enabled: false") from exc

    @property
    def address(self) -> tuple[str, int]:
        """The address and port it is bound to (the port resolved when 0 was asked for)."""
        host, port = self._server.socket.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def serve_loop_metrics(section: PrometheusSection, loop: ControlLoop) -> MetricsServer | None:
    """Start the run's endpoint when `prometheus.enabled`; None when it is off."""
    if not section.enabled:
        return None
    return MetricsServer(loop_metrics(loop), section.host, section.port)

