"""`edgeloop bench report`: pages generated from real result files, refusing mixed models and machines, and the
shipped docs/benchmarks.md is what its template and stored results give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli.app import app
from runtime.evaluation.report.provenance_line import ReportError
from runtime.evaluation.report.render import render

pytest.importorskip("mujoco")
ROOT = Path(__file__).resolve().parents[3]


def _run(*args: str) -> None:
    done = CliRunner().invoke(app, list(args))
    assert done.exit_code == 0, done.output


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    quick = ["--set", "planner.samples=32", "--set", "planner.iterations=1"]
    _run("eval", "--task", "reach", "--goals", "3", "--planner", "cem", "--planner", "mppi",
         "--out", str(folder / "reach.json"), *quick)
    _run("eval", "--task", "reach", "--goals", "3", "--planner", "cem", "--out", str(folder / "reach-int8.json"),
         "--set", "model.manifest=models/demo-int8/manifest.json", *quick)
    for name, manifest in (("fp32", "models/demo/manifest.json"), ("int8", "models/demo-int8/manifest.json")):
        _run("bench", "model", "--backend", "onnxruntime", "--repeats", "10", "--out", str(folder / f"{name}.json"),
             "--set", f"model.manifest={manifest}", *quick)
    return folder


def _page(tmp_path: Path, results: Path, text: str) -> str:
    template = tmp_path / "page.template.md"
    template.write_text(text)
    return render(template, results)


def test_tables_and_values_come_from_the_stored_numbers(tmp_path: Path, results: Path) -> None:
    stored = json.loads((results / "reach.json").read_text())
    page = _page(tmp_path, results, "# Page\n\nCEM reached {{value reach planners.cem.success_rate .1%}}.\n\n"
                                    "{{table eval reach}}\n")
    assert f"CEM reached {stored['planners']['cem']['success_rate']:.1%}." in page
    rows = [line for line in page.splitlines() if line.startswith("| 25 |")]
    assert [row.split(" | ")[1] for row in rows] == ["cem", "mppi"]
    cem = stored["planners"]["cem"]
    assert f"{cem['successes']}/{cem['episodes']}" in rows[0]
    assert f"{cem['plan_ms_p50']:.2f} / {cem['plan_ms_p90']:.2f}" in rows[0]
    mppi = stored["paired"]["comparisons"]["mppi"]
    assert f"p {mppi['p_value']:.2g}" in rows[1] and rows[0].endswith("| — |")
    # The provenance line names the command, the model and the commit of the run.
    line = next(line for line in page.splitlines() if line.startswith("<sub>"))
    assert stored["provenance"]["command"] in line
    assert stored["provenance"]["model"]["id"][:12] in line
    assert stored["provenance"]["git"]["commit"][:10] in line


def test_a_table_refuses_two_models_unless_it_declares_the_comparison(tmp_path: Path, results: Path) -> None:
    with pytest.raises(ReportError, match=r"page\.template\.md:1: one table, results of different models"):
        _page(tmp_path, results, "{{table bench-model fp32 int8}}\n")
    page = _page(tmp_path, results, "{{table bench-model fp32 int8 compare=model}}\n")
    assert "Comparison across models." in page
    assert {line.split(" | ")[0] for line in page.splitlines() if line.startswith("| fp32") or
            line.startswith("| int8")} == {"| fp32", "| int8"}


def test_a_paired_table_gives_the_difference_on_the_same_goals(tmp_path: Path, results: Path) -> None:
    page = _page(tmp_path, results, "{{table paired reach reach-int8 compare=model}}\n")
    difference = next(line for line in page.splitlines() if line.startswith("| reach-int8 − reach"))
    fp32, int8 = (json.loads((results / f"{name}.json").read_text())["planners"]["cem"]
                  for name in ("reach", "reach-int8"))
    assert f"{(int8['success_rate'] - fp32['success_rate']) * 100:+.1f} points" in difference
    assert f"{int8['plan_ms_p50'] / fp32['plan_ms_p50']:.2f}× A's" in difference  # B's plan time against A's


@pytest.mark.parametrize(("text", "error"), [
    ("{{table nonsense reach}}\n", r"page\.template\.md:1: unknown table kind 'nonsense'"),
    ("x\n{{table eval missing}}\n", r"page\.template\.md:2: .*missing\.json: no such result file"),
    ("{{table demo reach}}\n", r"reach: a eval result where the table needs demo"),
    ("{{value reach planners.nope.success_rate}}\n", r"no 'planners\.nope\.success_rate' in the result"),
    ("{{table eval reach compare=everything}}\n", r"compare=model or compare=machine"),
    ("a {{value reach\nplanners.cem.success_rate}}\n", r"page\.template\.md:1: a '\{\{' that is no directive"),
])
def test_template_errors_name_the_line(tmp_path: Path, results: Path, text: str, error: str) -> None:
    with pytest.raises(ReportError, match=error):
        _page(tmp_path, results, text)


def test_the_published_page_is_what_its_template_and_results_give() -> None:
    done = CliRunner().invoke(app, ["bench", "report", "--check", "--template",
                                    str(ROOT / "docs/results/benchmarks.template.md"),
                                    "--results", str(ROOT / "docs/results"), "--out", str(ROOT / "docs/benchmarks.md")])
    assert done.exit_code == 0, done.output
