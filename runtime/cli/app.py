"""The `edgeloop` command line: the typer app, each verb from its own module in this folder."""

from __future__ import annotations

import logging
import sys

import typer

from runtime.cli.bench import bench_async, bench_fuzz, bench_link, bench_model, bench_planner, bench_report, bench_soak
from runtime.cli.calibrate import calibrate_app
from runtime.cli.config import config_schema, config_validate
from runtime.cli.controller import controller_sim
from runtime.cli.engine import build_engine, convert_fp16
from runtime.cli.export import export_app
from runtime.cli.goal import goal_capture, goal_from_recording, goal_send
from runtime.cli.keys import keys_generate
from runtime.cli.model import export, goals, record, train
from runtime.cli.quantize import quantize
from runtime.cli.run import demo, run
from runtime.cli.task import eval_app, task_app
from runtime.cli.tune import tune

app = typer.Typer(help="edgeloop: perception model -> world-model planner -> commands over ZeroMQ.",
                  no_args_is_help=True, add_completion=False)


@app.callback()
def _logging() -> None:
    """Warnings the library logs (a peer refused, the first bad message of a kind) reach stderr, stamped."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s edgeloop %(name)s: %(message)s")


app.command("run")(run)
app.command("demo")(demo)

controller_app = typer.Typer(help="Controller processes that speak docs/protocol.md.", no_args_is_help=True)
controller_app.command("sim")(controller_sim)
app.add_typer(controller_app, name="controller")

app.command("record")(record)
app.command("train")(train)
app.command("goals")(goals)

goal_app = typer.Typer(help="Goal images and run-time goal switching (docs/goals.md).", no_args_is_help=True)
goal_app.command("capture")(goal_capture)
goal_app.command("send")(goal_send)
goal_app.command("from-recording")(goal_from_recording)
app.add_typer(goal_app, name="goal")

app.add_typer(task_app, name="task")
app.add_typer(eval_app, name="eval")
export_app.command("model")(export)
app.add_typer(export_app, name="export")

app.add_typer(calibrate_app, name="calibrate")
app.command("quantize")(quantize)
app.command("build-engine")(build_engine)
app.command("convert-fp16")(convert_fp16)
app.command("tune")(tune)

bench_app = typer.Typer(help="Benchmarks: every variant side by side in one run.", no_args_is_help=True)
bench_app.command("model")(bench_model)
bench_app.command("planner")(bench_planner)
bench_app.command("soak")(bench_soak)
bench_app.command("fuzz")(bench_fuzz)
bench_app.command("report")(bench_report)
bench_app.command("link")(bench_link)
bench_app.command("async")(bench_async)
app.add_typer(bench_app, name="bench")

keys_app = typer.Typer(help="CURVE key pairs for the link's security (docs/security.md).", no_args_is_help=True)
keys_app.command("generate")(keys_generate)
app.add_typer(keys_app, name="keys")

config_app = typer.Typer(help="Validate configs and export their JSON Schema.", no_args_is_help=True)
config_app.command("validate")(config_validate)
config_app.command("schema")(config_schema)
app.add_typer(config_app, name="config")
