"""Result files: every bench and eval result carries where it came from, and is refused without it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perception.manifest import file_sha256, load_manifest, model_id
from runtime import platform_info
from runtime.cli.app import app
from runtime.evaluation.results import ResultError, read_result

ROOT = Path(__file__).resolve().parents[3]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_a_bench_result_names_its_model_files_config_machine_commit_and_command(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["bench", "model", "--backend", "onnxruntime", "--repeats", "10", "--out", str(out),
            "--set", "planner.samples=16", "--set", "planner.iterations=1"]
    # A real process: the command line recorded is the process's own.
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "runtime.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    result = read_result(out)
    assert result["kind"] == "bench-model"
    found = result["provenance"]
    manifest = load_manifest("models/demo/manifest.json")
    assert found["model"]["manifest_sha256"] == file_sha256("models/demo/manifest.json")
    assert found["model"]["id"] == model_id(manifest)
    assert found["model"]["files"]["encoder"]["sha256"] == manifest.encoder.sha256 == file_sha256(
        "models/demo/encoder.onnx")
    assert found["model"]["files"]["predictor"]["sha256"] == manifest.predictor.sha256
    # The full resolved config, overrides applied, not the file's text.
    assert found["config"]["planner"]["samples"] == 16 and found["config"]["planner"]["iterations"] == 1
    assert found["config"]["loop"]["rate_hz"] > 0
    assert found["command"] == "edgeloop " + " ".join(args)
    assert found["git"]["commit"] == _git("rev-parse", "HEAD")
    assert found["git"]["dirty"] == bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                              ":!docs/results", ":!docs/benchmarks.md"))
    assert found["machine"]["cpu_count"] == platform_info.collect()["cpu_count"]
    assert found["packages"]["onnxruntime"] and found["packages"]["numpy"]
    assert found["utc"].endswith("+00:00")
    assert took / 2 < found["seconds"] <= took + 0.2  # the command's own run time (clock ticks are 10 ms)


def test_without_out_the_result_goes_under_the_runs_folder(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["bench", "model", "--backend", "onnxruntime", "--repeats", "10",
                                    "--set", f"runs_dir={tmp_path}", "--set", "planner.samples=16",
                                    "--set", "planner.iterations=1"])
    assert done.exit_code == 0, done.output
    written = list((tmp_path / "results").glob("bench-model-*.json"))
    assert len(written) == 1
    assert f"result: {written[0]}" in done.output
    assert read_result(written[0])["provenance"]["config"]["runs_dir"] == str(tmp_path)


def test_a_result_without_provenance_is_refused_naming_the_file(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"planners": {}}))
    with pytest.raises(ResultError, match=r"old\.json: no `kind` key"):
        read_result(old)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ResultError, match=r"broken\.json: not a result JSON"):
        read_result(broken)
    with pytest.raises(ResultError, match=r"missing\.json: no such result file"):
        read_result(tmp_path / "missing.json")
