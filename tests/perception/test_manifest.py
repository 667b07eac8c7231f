"""The manifest contract: round trip, and refusal with a message naming what differs."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perception.manifest import Manifest, ManifestError, canonical_json, identity_fields, load_manifest, model_id


def edit_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path = directory / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_shipped_manifest_verifies_and_describes_the_model(demo_model: Path) -> None:
    manifest = load_manifest(demo_model / "manifest.json")
    assert manifest.root == demo_model
    assert manifest.encoder.outputs[0].shape == ["batch", manifest.latent_dim]
    assert manifest.predictor.inputs[1].shape == ["batch", manifest.action_dim]
    assert len(manifest.action_low) == manifest.action_dim == len(manifest.action_names)
    assert 0 < manifest.visual_dim < manifest.latent_dim


def test_round_trip_through_json_keeps_every_field(model_copy: Path, tmp_path: Path) -> None:
    manifest = load_manifest(model_copy)
    assert "root" not in json.loads(manifest.model_dump_json())
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again.model_dump() | {"root": None} == manifest.model_dump() | {"root": None}
    written = manifest.write(model_copy)
    reloaded = load_manifest(written)
    assert reloaded == manifest


def test_model_id_is_the_documented_hash_of_the_contract_and_file_hashes(model_copy: Path) -> None:
    manifest = load_manifest(model_copy)
    fields = identity_fields(manifest)
    assert model_id(manifest) == hashlib.sha256(canonical_json(fields).encode()).hexdigest()
    assert fields["encoder"]["sha256"] == manifest.encoder.sha256 and "file" not in fields["encoder"]
    assert not {"created", "name", "training", "parent_sha256", "calibration_sha256", "root"} & fields.keys()


@pytest.mark.parametrize("change", [
    lambda data: data.update(created="2030-01-01T00:00:00+00:00"),
    lambda data: data.update(name="renamed"),
    lambda data: data["training"].update(metrics={}, export_max_abs_error={"encoder": 1.0}),
    lambda data: data.update(parent_sha256="f" * 64, calibration_sha256="e" * 64),
], ids=["created", "name", "training", "provenance hashes"])
def test_model_id_ignores_when_and_how_a_model_was_made(model_copy: Path, change: Callable[[dict[str, Any]], None]) \
        -> None:
    before = model_id(load_manifest(model_copy))
    assert model_id(load_manifest(edit_manifest(model_copy, change))) == before


@pytest.mark.parametrize("change", [
    lambda data: data.update(action_high=[1.5, 2.0]),
    lambda data: data.update(control_period_s=0.1),
    lambda data: data["image"].update(std=[0.1, 0.1, 0.1]),
    lambda data: data.update(precision="int8"),
    lambda data: data["encoder"].update(sha256="0" * 64),
], ids=["bounds", "control period", "normalization", "precision", "a file's sha256"])
def test_model_id_changes_with_anything_that_changes_behaviour(model_copy: Path,
                                                               change: Callable[[dict[str, Any]], None]) -> None:
    before = model_id(load_manifest(model_copy))
    assert model_id(load_manifest(edit_manifest(model_copy, change), verify=False)) != before


def test_missing_file_is_refused_naming_it(model_copy: Path) -> None:
    (model_copy / "predictor.onnx").unlink()
    with pytest.raises(ManifestError, match=r"manifest\.json: predictor\.file: .*predictor\.onnx does not exist"):
        load_manifest(model_copy / "manifest.json")


def test_changed_bytes_are_refused_with_both_hashes(model_copy: Path) -> None:
    expected = json.loads((model_copy / "manifest.json").read_text())["encoder"]["sha256"]
    with (model_copy / "encoder.onnx").open("ab") as stream:
        stream.write(b"\0")
    found = hashlib.sha256((model_copy / "encoder.onnx").read_bytes()).hexdigest()
    with pytest.raises(ManifestError, match=rf"encoder\.sha256: encoder\.onnx has sha256 {found}, expected {expected}"):
        load_manifest(model_copy)


def test_unverified_load_skips_the_files(model_copy: Path) -> None:
    (model_copy / "encoder.onnx").unlink()
    assert load_manifest(model_copy, verify=False).encoder.file == "encoder.onnx"


def test_wrong_input_name_is_refused_with_expected_and_found(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m["encoder"]["inputs"][0].update(name="pixels"))
    message = re.escape("encoder.inputs: names expected ['pixels', 'proprio'], found ['image', 'proprio'] "
                        "in encoder.onnx")
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_wrong_shape_is_refused_with_expected_and_found(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m["encoder"]["inputs"][0].update(shape=["batch", 3, 96, 96]))
    with pytest.raises(ManifestError, match=re.escape(
            "encoder.inputs: tensor 'image' shape expected ['batch', 3, 96, 96], found ['batch', 3, 64, 64]")):
        load_manifest(path)


def test_fixed_batch_axis_disagrees_with_a_dynamic_file(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m["predictor"]["outputs"][0]["shape"].__setitem__(0, 256))
    with pytest.raises(ManifestError, match=r"predictor\.outputs: tensor 'next_latent' shape expected \[256, "):
        load_manifest(path)


def test_wrong_dtype_is_refused(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m["predictor"]["inputs"][1].update(dtype="float16"))
    with pytest.raises(ManifestError, match="tensor 'action' dtype expected float16, found float32"):
        load_manifest(path)


def test_unknown_key_is_refused_naming_it(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m["image"].update(colour="RGB"))
    with pytest.raises(ManifestError, match=r"manifest\.json: image\.colour: unknown key"):
        load_manifest(path)


def test_missing_key_is_refused_naming_it(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m.pop("visual_dim"))
    with pytest.raises(ManifestError, match="visual_dim: missing"):
        load_manifest(path)


def test_inconsistent_bounds_are_refused(model_copy: Path) -> None:
    path = edit_manifest(model_copy, lambda m: m.update(action_low=[-2.0]))
    with pytest.raises(ManifestError, match=r"action_low: expected 2 entries \(action_dim\), found 1"):
        load_manifest(path)


def test_malformed_json_is_refused(model_copy: Path) -> None:
    path = model_copy / "manifest.json"
    path.write_text(path.read_text()[:-10])
    with pytest.raises(ManifestError, match=r"manifest\.json: not valid JSON"):
        load_manifest(path)


def test_missing_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"nothing\.json: cannot read the manifest"):
        load_manifest(tmp_path / "nothing.json")


def _three_actions(m: dict[str, Any]) -> None:
    m.update(action_dim=3, action_names=[*m["action_names"], "wrist"], action_low=[*m["action_low"], -1.0],
             action_high=[*m["action_high"], 1.0])


@pytest.mark.parametrize(("change", "said"), [
    (_three_actions, "predictor.inputs: tensor 'action' shape ['batch', 2] does not fit action_dim "
                     "(expected [batch, 3])"),
    (lambda m: m.update(latent_dim=48), "encoder.outputs: tensor 'latent' shape ['batch', 32] does not fit "
                                        "latent_dim (expected [batch, 48])"),
    (lambda m: m["image"].update(width=96, height=96), "encoder.inputs: tensor 'image' shape ['batch', 3, 64, 64] "
                                                       "does not fit image.height/width (expected [batch, 3, 96, 96])"),
    (lambda m: m.update(proprio_dim=6, proprio_names=[*m["proprio_names"], "a", "b"]),
     "encoder.inputs: tensor 'proprio' shape ['batch', 4] does not fit proprio_dim (expected [batch, 6])"),
])
def test_files_that_match_their_specs_but_not_the_contract_fields_are_refused_naming_both(
        model_copy: Path, change: Callable[[dict[str, Any]], None], said: str) -> None:
    path = edit_manifest(model_copy, change)
    with pytest.raises(ManifestError, match=re.escape(said)):
        load_manifest(path)
    with pytest.raises(ManifestError, match=re.escape(said)):
        load_manifest(path, verify=False)  # the contract needs no file
