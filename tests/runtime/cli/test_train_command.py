"""`edgeloop train --set key=value`: any training setting from the command line, bad ones refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("mujoco")

import torch

from runtime.cli.app import app
from runtime.sim.explore import record_episodes

SMALL = ["--set", "batch_size=8", "--set", "horizon=2", "--set", "visual_dim=4", "--set", "proprio_latent_dim=4",
         "--set", "channels=[4, 4, 4]", "--set", "val_fraction=0.0"]


def test_settings_given_with_set_reach_the_training_and_its_manifest(tmp_path: Path) -> None:
    record_episodes(tmp_path / "episodes", episodes=1, steps=12, seed=2)
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "episodes"), "--out", str(tmp_path / "model"),
                                      "--epochs", "1", "--threads", "1", *SMALL, "--set", "hidden=24"])
    assert result.exit_code == 0, result.output
    settings = json.loads((tmp_path / "model" / "manifest.json").read_text())["training"]["settings"]
    assert (settings["hidden"], settings["visual_dim"], settings["epochs"]) == (24, 4, 1)
    assert settings["channels"] == [4, 4, 4]


@pytest.mark.parametrize(("assignment", "said"), [
    ("hiden=512", "hiden: unknown key"),
    ("hidden=many", "hidden: Input should be a valid integer"),
    ("hidden", "expected dotted.key=value"),
])
def test_a_bad_setting_is_refused_naming_it_before_anything_is_read(tmp_path: Path, assignment: str,
                                                                     said: str) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "model"),
                                      "--set", assignment])
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "model").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the device is fine")
def test_a_cuda_device_without_one_is_refused_naming_it_before_anything_is_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "model"),
                                      "--device", "cuda"])
    assert result.exit_code == 2 and "device" in result.output and "no CUDA device" in result.output, result.output
    assert not (tmp_path / "model").exists()
