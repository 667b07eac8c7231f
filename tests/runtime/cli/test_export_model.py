"""`edgeloop export model`: the shipped demo exported again from its reference weights keeps its identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from perception.manifest import load_manifest, model_id
from runtime.cli.app import app

pytest.importorskip("torch")


def test_exporting_the_demo_again_reproduces_its_files_and_identity(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["export", "model", "models/demo", "--out", str(tmp_path / "again")])
    assert done.exit_code == 0, done.output
    shipped, again = load_manifest("models/demo"), load_manifest(tmp_path / "again")
    assert model_id(again) == model_id(shipped)
    assert (again.encoder.sha256, again.predictor.sha256) == (shipped.encoder.sha256, shipped.predictor.sha256)
