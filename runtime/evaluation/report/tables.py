"""The table kinds `edgeloop bench report` draws from result files: each takes the results named in a template
line (by file stem) and returns a header and rows; every cell is computed from the stored numbers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.evaluation.report.provenance_line import ReportError
from runtime.evaluation.statistics import compare_paired

Rows = tuple[list[str], list[list[str]]]


def _percent(value: float) -> str:
    return f"{value * 100:.1f} %".replace(".0 %", " %")


def _interval(low: float, high: float) -> str:
    return f"{low * 100:.1f}–{high * 100:.1f} %"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _signed_points(value: float) -> str:
    return f"{value * 100:+.1f}"


def _expect(result: dict[str, Any], name: str, *kinds: str) -> None:
    if result["kind"] not in kinds:
        raise ReportError(f"{name}: a {result['kind']} result where the table needs {' or '.join(kinds)}")


def eval_table(named: dict[str, dict[str, Any]]) -> Rows:
    """One row per planner per result (`edgeloop eval`): success with its interval, distances, ticks, plan ms,
    and the paired difference against the result's first planner."""
    covered = any(entry.get("coverage_mean") is not None
                  for result in named.values() for entry in result["planners"].values())
    header = ["k", "planner", "success", "95 % interval", "final distance mean / median", *(
        ["goal coverage mean / ≥ 95 %"] if covered else []), "ticks", "plan p50 / p90 ms", "period ms",
        "paired vs first (points, 95 % interval, McNemar p)"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "eval")
        comparisons = result["paired"]["comparisons"]
        for planner, entry in result["planners"].items():
            coverage = ([f"{_percent(entry['coverage_mean'])} / {_percent(entry['coverage_success_mean'])}"]
                        if covered else [])
            paired = comparisons.get(planner)
            against = ("—" if paired is None else
                       f"{_signed_points(paired['difference'])} [{_signed_points(paired['difference_interval'][0])}, "
                       f"{_signed_points(paired['difference_interval'][1])}], p {paired['p_value']:.2g}")
            rows.append([str(result["k"]), planner,
                         f"{entry['successes']}/{entry['episodes']} ({_percent(entry['success_rate'])})",
                         _interval(*entry["success_interval_95"]),
                         f"{entry['final_distance_mean']:.4f} / {entry['final_distance_median']:.4f}", *coverage,
                         f"{entry['ticks_mean']:.1f}", f"{_ms(entry['plan_ms_p50'])} / {_ms(entry['plan_ms_p90'])}",
                         f"{entry['control_period_ms']:.0f}", against])
    return header, rows


def paired_table(named: dict[str, dict[str, Any]]) -> Rows:
    """Two `edgeloop eval` results on the same goals (e.g. FP32 and INT8), each one's first planner, and B − A
    paired: the difference with Newcombe's interval and McNemar's p on the discordant goals."""
    if len(named) != 2:
        raise ReportError(f"a paired table compares two results, given {len(named)}: {', '.join(named)}")
    (name_a, a), (name_b, b) = named.items()
    for name, result in named.items():
        _expect(result, name, "eval")
    same = ("task", "k", "goal_set_seed", "goals")
    if any(a[key] != b[key] for key in same):
        raise ReportError(f"{name_a} and {name_b} are not on the same goals: " + ", ".join(
            f"{key} {a[key]} vs {b[key]}" for key in same if a[key] != b[key]))
    entries = [next(iter(result["planners"].items())) for result in (a, b)]
    paired = compare_paired(entries[0][1]["outcomes"], entries[1][1]["outcomes"])
    header = ["run", "model", "planner", "success", "95 % interval", "plan p50 ms"]
    rows = [[name, f"{result['provenance']['model']['name']} ({result['provenance']['model']['precision']})",
             planner, f"{entry['successes']}/{entry['episodes']} ({_percent(entry['success_rate'])})",
             _interval(*entry["success_interval_95"]), _ms(entry["plan_ms_p50"])]
            for (name, result), (planner, entry) in zip(named.items(), entries, strict=True)]
    low, high = paired.difference_interval
    plan_ratio = entries[1][1]["plan_ms_p50"] / entries[0][1]["plan_ms_p50"]
    rows.append([f"{name_b} − {name_a}", "", "", f"{_signed_points(paired.difference)} points",
                 f"{_signed_points(low)} to {_signed_points(high)}",
                 f"{plan_ratio:.2f}× A's; only A {paired.only_a}, only B {paired.only_b}, "
                 f"McNemar p {paired.p_value:.2g}"])
    return header, rows


def bench_model_table(named: dict[str, dict[str, Any]]) -> Rows:
    """Median ms per stage per backend (`edgeloop bench model`)."""
    header = ["run", "backend", "preprocess", "encode (batch 1)", "predictor (batch N)", "rollout of the plan's steps",
              "plan", "planner's own share", "samples × horizon × iterations"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-model")
        shape = f"{result['samples']} × {result['horizon']} × {result['iterations']}"
        rows += [[name, backend, f"{row['preprocess_ms']:.3f}", f"{row['encode_ms']:.3f}",
                  f"{row['predict_batch_ms']:.3f}",
                  f"{row['rollout_ms']:.3f} ({'one call' if row['rollout_model'] else 'steps'})",
                  _ms(row["plan_ms"]), _percent(row["planner_overhead"]), shape]
                 for backend, row in result["backends"].items()]
    return header, rows


def bench_planner_table(named: dict[str, dict[str, Any]]) -> Rows:
    """Our planners beside pytorch-mppi on the same goals (`edgeloop bench planner`)."""
    header = ["run", "planner", "engine", "iterations", "reached", "plan p50 / p90 ms", "ticks to goal",
              "speed vs pytorch-mppi", "predictor GFLOP/s (of the GEMM floor)"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-planner")
        for planner, entry in result["planners"].items():
            reached = sum(goal["reached"] for goal in entry["goals"])
            ratio = entry.get("speedup_vs_pytorch_mppi")
            efficiency = entry["efficiency"]
            rows.append([name, planner, entry["engine"], f"{entry['mean_iterations']:.0f}",
                         f"{reached}/{len(entry['goals'])}",
                         f"{_ms(entry['ms_per_plan'])} / {_ms(entry['ms_per_plan_p90'])}",
                         f"{entry['mean_ticks']:.1f}", "—" if ratio is None else f"{ratio:.2f}×",
                         f"{efficiency['achieved_gflops']:.0f} ({_percent(efficiency['fraction_of_floor'])})"])
    return header, rows


def sweep_table(named: dict[str, dict[str, Any]]) -> Rows:
    """Success and plan ms varying one of samples, horizon, iterations (`edgeloop bench planner --sweep`)."""
    header = ["varied", "samples", "horizon", "iterations", "success", "plan ms", "ticks", "final distance"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-planner-sweep")
        rows += [[row["varied"], str(row["samples"]), str(row["horizon"]), str(row["iterations"]),
                  _percent(row["success_rate"]), _ms(row["ms_per_plan"]), f"{row['mean_ticks']:.1f}",
                  f"{row['mean_final_distance']:.4f}"] for row in result["sweep"]]
    return header, rows


def demo_table(named: dict[str, dict[str, Any]]) -> Rows:
    """The whole runtime closed loop against the sim controller process (`edgeloop demo`)."""
    header = ["run", "model", "reached", "loop", "tick p50 / p99 ms", "plan p50 ms", "deadline misses"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "demo")
        model = result["provenance"]["model"]
        reached = sum(goal["reached"] for goal in result["goals"])
        counters = result["counters"]
        rows.append([name, f"{model['name']} ({model['precision']})", f"{reached}/{len(result['goals'])}",
                     f"{result['loop_hz']:.1f} Hz", f"{result['tick_ms']['p50']:.1f} / {result['tick_ms']['p99']:.1f}",
                     f"{result['plan_ms_p50']:.1f}", f"{counters['deadline_misses']} of {counters['ticks']} ticks"])
    return header, rows


def link_table(named: dict[str, dict[str, Any]]) -> Rows:
    """Our link's round trip beside a raw pyzmq echo of the same bytes (`edgeloop bench link`)."""
    header = ["run", "side", "round trip p50 / p90 / p99 µs", "round trips", "held back by ZeroMQ, sent again",
              "ratio to raw pyzmq p50 / p99"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-link")
        for side, entry in result["sides"].items():
            ratio = (f"{result['ratio_p50']:.2f}× / {result['ratio_p99']:.2f}×" if side == "edgeloop" else "1×")
            rows.append([name, side, f"{entry['p50_us']:.1f} / {entry['p90_us']:.1f} / {entry['p99_us']:.1f}",
                         str(entry["round_trips"]), str(entry["held_back_by_zeromq"]), ratio])
    return header, rows


def per_call_table(named: dict[str, dict[str, Any]]) -> Rows:
    """One plan's ms against the horizon at a small batch (`edgeloop bench planner --per-call`)."""
    header = ["samples", "horizon", "ours, rollout model (ms)", "ours, stepping (ms)", "pytorch-mppi (ms)",
              "pytorch-mppi / ours"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-planner-per-call")
        for row in result["per_call"]:
            theirs = row.get("pytorch_mppi_ms")
            rows.append([str(row["samples"]), str(row["horizon"]), f"{row['rollout_model_ms']:.3f}",
                         f"{row['stepping_ms']:.3f}", "—" if theirs is None else f"{theirs:.3f}",
                         "—" if theirs is None else f"{theirs / row['rollout_model_ms']:.2f}×"])
    return header, rows


def async_table(named: dict[str, dict[str, Any]]) -> Rows:
    """The synchronous loop and asynchronous planning on the same goals (`edgeloop bench async`)."""
    header = ["run", "variant", "reached", "s per goal", "commands/s", "interval p50 / p99 ms", "jitter p99 ms",
              "plans/s", "plan age p50 / p99 ms", "commands per plan", "differs from sync on goals"]
    rows = []
    for name, result in named.items():
        _expect(result, name, "bench-async")
        for row in result["variants"]:
            reached = f"{sum(row['reached'])}/{len(row['reached'])}"
            if "commands_per_s" not in row:  # the synchronous loop: one command a tick
                rows.append([name, row["variant"], reached, f"{row['seconds_per_goal']:.2f}", "one a tick", "—", "—",
                             "one a tick", "—", "1", "—"])
                continue
            rows.append([name, row["variant"], reached, f"{row['seconds_per_goal']:.2f}",
                         f"{row['commands_per_s']:.1f}", f"{row['interval_ms_p50']:.2f} / {row['interval_ms_p99']:.2f}",
                         f"{row['jitter_ms_p99']:.2f}", f"{row['plans_per_s']:.1f}",
                         f"{row['plan_age_ms_p50']:.1f} / {row['plan_age_ms_p99']:.1f}",
                         f"{row['commands_per_plan']:.2f}", ", ".join(map(str, row["disagrees_with_sync"])) or "none"])
    return header, rows


TABLES: dict[str, Callable[[dict[str, dict[str, Any]]], Rows]] = {
    "eval": eval_table, "paired": paired_table, "bench-model": bench_model_table,
    "bench-planner": bench_planner_table, "sweep": sweep_table, "demo": demo_table,
    "link": link_table, "per-call": per_call_table, "async": async_table,
}
