"""Export is reproducible: the same weights give the same file bytes and model id in any folder, at any time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from perception.manifest import load_manifest, model_id

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(path.parent for path in (REPO / "models").glob("*/manifest.json"))
# Tiny networks from a fixed seed, exported into argv[1]; run by a fresh interpreter from the folder it is in.
EXPORT_SCRIPT = """
import sys
import torch
from perception.export import ModelInterface, export_world_model
from perception.manifest import ImageSpec
from perception.nets import Encoder, NetConfig, Predictor

torch.manual_seed(0)
config = NetConfig(image_size=16, channels=(4, 4, 4), visual_dim=4, proprio_latent_dim=4, hidden=16)
image = ImageSpec(width=16, height=16, channel_order="RGB", layout="NCHW", scale=1 / 255, mean=[0.5] * 3,
                  std=[0.25] * 3)
interface = ModelInterface(name="tiny", image=image, proprio_names=["q0", "q1", "dq0", "dq1"],
                           action_names=["v0", "v1"], action_low=[-2.0, -2.0], action_high=[2.0, 2.0],
                           action_units="rad/s", control_period_s=0.05)
export_world_model(Encoder(config).eval(), Predictor(config).eval(), sys.argv[1], config, interface)
"""


def export_from(checkout: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-c", EXPORT_SCRIPT, str(out)], cwd=checkout, check=True, timeout=300)
    return out


def test_two_exports_from_two_checkouts_give_the_same_files_and_identity(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    elsewhere = tmp_path / "another" / "checkout"  # the exporter's stack traces would name this path
    for package in ("perception", "calibration"):
        shutil.copytree(REPO / package, elsewhere / package, ignore=shutil.ignore_patterns("__pycache__"))
    first = export_from(REPO, tmp_path / "first")
    second = export_from(elsewhere, tmp_path / "second")
    names = sorted(path.name for path in first.iterdir())
    assert names == ["encoder.onnx", "manifest.json", "predictor.onnx", "reference.pt", "rollout.onnx"]
    for name in names:
        if name != "manifest.json":
            assert (first / name).read_bytes() == (second / name).read_bytes(), name
            assert str(elsewhere).encode() not in (second / name).read_bytes()
    assert model_id(load_manifest(first)) == model_id(load_manifest(second))


def test_re_exporting_the_demo_from_its_weights_reproduces_its_files(demo_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from perception.export import reexport

    shipped = load_manifest(demo_model)
    again = load_manifest(reexport(demo_model, tmp_path))
    assert model_id(again) == model_id(shipped)
    assert again.training["settings"] == shipped.training["settings"]  # the training record is kept
    for part in ("encoder", "predictor", "rollout", "reference"):
        assert getattr(again, part).sha256 == getattr(shipped, part).sha256, part


@pytest.mark.parametrize("model", SHIPPED, ids=[path.name for path in SHIPPED])
def test_shipped_model_files_carry_no_paths_or_exporter_metadata(model: Path) -> None:
    onnx = pytest.importorskip("onnx")
    manifest = json.loads((model / "manifest.json").read_text())
    for part in [part for part in ("encoder", "predictor", "rollout") if manifest.get(part)]:
        path = model / manifest[part]["file"]
        assert b"/work/" not in path.read_bytes() and b"stack_trace" not in path.read_bytes(), path
        proto = onnx.load(str(path))
        assert not proto.metadata_props and not any(node.metadata_props or node.doc_string
                                                    for node in proto.graph.node), path
