"""The Prometheus endpoint: a real HTTP server on 127.0.0.1, scraped with urllib and parsed with
prometheus_client's own text parser, over real telemetry and a real closed loop."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_loop import SimControllerThread, loop_config

from runtime.config import PrometheusSection, RunConfig, load_config
from runtime.loop import ControlLoop
from runtime.prometheus import LoopMetrics, MetricsServer, serve_loop_metrics
from runtime.telemetry import Telemetry


def scrape(url: str) -> dict[str, float]:
    """Every sample of one scrape by name and labels, e.g. `edgeloop_stage_seconds_bucket{le=0.001,stage=encode}`."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest.fixture
def telemetry_endpoint() -> Iterator[tuple[Telemetry, MetricsServer]]:
    telemetry = Telemetry()
    server = MetricsServer(LoopMetrics(telemetry, link_counters={"states": 3}), "127.0.0.1", 0)
    yield telemetry, server
    server.close()


def test_stage_timings_are_histograms_in_seconds_with_millisecond_buckets(
        telemetry_endpoint: tuple[Telemetry, MetricsServer]) -> None:
    telemetry, server = telemetry_endpoint
    for ms in (0.3, 2.0, 40.0):
        telemetry.record_stage("encode", ms)
    telemetry.counters["ticks"] += 5
    first = scrape(server.url)
    bucket = "edgeloop_stage_seconds_bucket{le=%s,stage=encode}"
    assert first[bucket % "0.00025"] == 0
    assert first[bucket % "0.0005"] == 1
    assert first[bucket % "0.0025"] == 2
    assert first[bucket % "0.025"] == 2
    assert first[bucket % "0.05"] == 3
    assert first[bucket % "+Inf"] == 3
    assert first["edgeloop_stage_seconds_count{stage=encode}"] == 3
    assert first["edgeloop_stage_seconds_sum{stage=encode}"] == pytest.approx(0.0423)
    assert first["edgeloop_ticks_total"] == 5
    assert first["edgeloop_deadline_misses_total"] == 0
    assert first["edgeloop_link_states_total"] == 3
    assert "edgeloop_planner_last_cost" in first  # NaN until a plan

    telemetry.record_stage("encode", 700.0)
    telemetry.record_stage("plan", 12.0)
    telemetry.counters["ticks"] += 1
    telemetry.counters["deadline_misses"] += 1
    second = scrape(server.url)
    assert second[bucket % "0.5"] == 3 and second[bucket % "1.0"] == 4
    assert second["edgeloop_stage_seconds_count{stage=plan}"] == 1
    assert second["edgeloop_ticks_total"] == 6
    assert second["edgeloop_deadline_misses_total"] == 1
    assert "process_resident_memory_bytes" in second


def test_the_endpoint_binds_loopback_unless_told_otherwise() -> None:
    section = RunConfig().prometheus
    assert (section.enabled, section.host, section.port) == (False, "127.0.0.1", 9464)
    server = MetricsServer(LoopMetrics(Telemetry()), section.host, 0)
    try:
        assert server.address[0] == "127.0.0.1"
        assert server.url == f"http://127.0.0.1:{server.address[1]}/metrics"
    finally:
        server.close()


def test_a_taken_port_is_refused_naming_the_key(telemetry_endpoint: tuple[Telemetry, MetricsServer]) -> None:
    _, server = telemetry_endpoint
    with pytest.raises(OSError, match=r"prometheus: cannot serve metrics on 127\.0\.0\.1:\d+ .*prometheus\.port"):
        MetricsServer(LoopMetrics(Telemetry()), "127.0.0.1", server.address[1])


def test_a_bad_port_is_refused_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"prometheus\.port"):
        load_config(None, ["prometheus.port=70000"])


def test_a_running_loop_is_scraped_while_it_ticks(tmp_path: Path) -> None:
    controller = SimControllerThread()
    config = loop_config(controller.endpoints, tmp_path, "prometheus.enabled=true", "prometheus.port=0")
    loop = ControlLoop(config)
    assert serve_loop_metrics(PrometheusSection(), loop) is None  # off unless enabled
    server = serve_loop_metrics(config.prometheus, loop)
    assert server is not None
    try:
        loop.run(duration_s=1.5)
        first = scrape(server.url)
        loop.run(duration_s=1.0)
        second = scrape(server.url)
    finally:
        server.close()
        summary = loop.close()
        controller.stop()
    for stage in ("source", "state", "encode", "plan", "send"):
        count = f"edgeloop_stage_seconds_count{{stage={stage}}}"
        assert 0 < first[count] < second[count], stage
    assert 0 < first["edgeloop_tick_seconds_count"] < second["edgeloop_tick_seconds_count"]
    assert first["edgeloop_ticks_total"] == first["edgeloop_tick_seconds_count"]  # scraped between runs
    assert 0 < first["edgeloop_commands_total"] < second["edgeloop_commands_total"]
    assert second["edgeloop_link_commands_sent_total"] >= second["edgeloop_commands_total"]
    assert second["edgeloop_planner_iterations_count"] == second["edgeloop_plans_total"] > 0
    assert second["edgeloop_plan_seconds_count"] == second["edgeloop_plans_total"]
    assert second["edgeloop_planner_last_iterations"] == config.planner.iterations
    assert second["edgeloop_planner_last_seconds"] > 0
    info = f"edgeloop_run_info{{backend=onnxruntime,model_id={summary['model_id']},optimizer=" \
           f"{config.planner.optimizer}}}"
    assert second[info] == 1
    assert summary["counters"]["ticks"] >= second["edgeloop_ticks_total"]
