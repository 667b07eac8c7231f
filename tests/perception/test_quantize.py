"""INT8 Q/DQ quantization of the demo model with real ONNX Runtime, and its accuracy report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from calibration.frame_sets import CalibrationSet, EpisodeFrames, build_calibration_set
from perception.manifest import load_manifest, model_id
from perception.quantize import QuantizationError, check_zero_points, quantize_model
from planning.world_model import WorldModel
from runtime.cli.app import app
from runtime.recording import read_episode

FEED = Path(__file__).resolve().parents[2] / "data" / "demo_feed.mcap"


@pytest.fixture(scope="module")
def calibration() -> CalibrationSet:
    episode = read_episode(FEED)
    frames = EpisodeFrames(FEED.name, episode.frames, np.concatenate([episode.q, episode.dq], axis=1),
                           episode.actions)
    return build_calibration_set([frames], 48)


@pytest.fixture(scope="module")
def int8_model(calibration: CalibrationSet, demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize_model(load_manifest(demo_model), calibration, tmp_path_factory.mktemp("int8"))


def test_the_int8_manifest_records_precision_parent_and_calibration(int8_model: Path, demo_model: Path,
                                                                     calibration: CalibrationSet) -> None:
    manifest = load_manifest(int8_model)
    assert manifest.precision == "int8"
    assert manifest.parent_sha256 == model_id(load_manifest(demo_model))
    assert manifest.calibration_sha256 == calibration.sha256
    assert manifest.reference is None
    assert manifest.rollout is None  # ONNX Runtime runs a Q/DQ rollout loop unfused, slower than stepping
    parent = load_manifest(demo_model)
    assert manifest.encoder.inputs == parent.encoder.inputs and manifest.predictor.outputs == parent.predictor.outputs
    for part in (manifest.encoder, manifest.predictor):
        assert check_zero_points(manifest.path_of(part)) > 0


def test_the_int8_model_agrees_with_fp32_on_a_held_out_goal_image(int8_model: Path, demo_model: Path) -> None:
    import cv2

    frame = cv2.imread(str(demo_model / "goals" / "goal_003.png"), cv2.IMREAD_COLOR)
    fp32, int8 = WorldModel(load_manifest(demo_model)), WorldModel(load_manifest(int8_model))
    z32, z8 = fp32.encode(frame, None), int8.encode(frame, None)
    assert float(z32 @ z8 / (np.linalg.norm(z32) * np.linalg.norm(z8))) > 0.95
    actions = np.full((4, 2), 0.5, dtype=np.float32)
    latents = np.repeat(z32[None], 4, axis=0)
    step32, step8 = fp32.predict(latents, actions), int8.predict(latents, actions)
    assert np.linalg.norm(step8 - step32) / np.linalg.norm(step32) < 0.1


def test_q_dq_sits_on_the_inputs_of_weighted_layers_and_linear_outputs_stay_float(int8_model: Path) -> None:
    manifest = load_manifest(int8_model)
    for part in (manifest.encoder, manifest.predictor):
        graph = onnx.load(str(manifest.path_of(part))).graph
        producer = {output: node.op_type for node in graph.node for output in node.output}
        consumers: dict[str, list[str]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node.op_type)
        weighted = [node for node in graph.node if node.op_type in ("Conv", "Gemm", "MatMul")]
        assert weighted, part.file
        for node in weighted:
            # Activations and weights come in through DequantizeLinear (TensorRT's INT8 layers).
            assert [producer.get(name) for name in node.input[:2]] == ["DequantizeLinear"] * 2, node.name
            after = consumers.get(node.output[0], [])
            if node.op_type == "Conv":  # a Q after it: ONNX Runtime's CPU provider then runs it as QLinearConv
                assert after == ["QuantizeLinear"], node.name
            else:  # the GELU or the residual sum after a linear layer gets its unrounded output
                assert "QuantizeLinear" not in after, node.name
        # Nothing else is quantized: every Q/DQ pair follows a Conv or leads into a weighted layer.
        dq_output = {node.input[0]: node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
        for node in graph.node:
            if node.op_type == "QuantizeLinear":
                feeds = consumers.get(dq_output[node.output[0]], [])
                assert producer.get(node.input[0]) == "Conv" or {"Conv", "Gemm", "MatMul"} & set(feeds), node.name


def _qdq_graph(path: Path, zero_point: int) -> Path:
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zp"], ["q"], name="quant_x"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zp"], ["y"], name="dequant_x")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]),
                               helper.make_tensor("zp", TensorProto.INT8, [], [zero_point])])
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_a_non_zero_zero_point_is_refused_naming_the_node(tmp_path: Path, demo_model: Path) -> None:
    assert check_zero_points(_qdq_graph(tmp_path / "ok.onnx", 0)) == 2
    with pytest.raises(QuantizationError, match=r"quant_x.*TensorRT needs 0"):
        check_zero_points(_qdq_graph(tmp_path / "shifted.onnx", 3))
    with pytest.raises(QuantizationError, match="not a Q/DQ model"):
        check_zero_points(demo_model / "encoder.onnx")


def test_only_fp32_models_with_matching_calibration_data_are_quantized(int8_model: Path, demo_model: Path,
                                                                      calibration: CalibrationSet,
                                                                      tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="int8"):
        quantize_model(load_manifest(int8_model), calibration, tmp_path)
    wrong = CalibrationSet(calibration.frames, calibration.proprio[:, :3], calibration.actions, calibration.origins)
    with pytest.raises(QuantizationError, match="proprio"):
        quantize_model(load_manifest(demo_model), wrong, tmp_path)


def test_the_cli_refuses_to_quantize_without_calibration_data(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", "models/demo", "--out", str(tmp_path / "int8")])
    assert result.exit_code == 2
    assert "no calibration data" in result.output
    assert not (tmp_path / "int8").exists()


def test_the_cli_writes_the_model_and_an_accuracy_report(tmp_path: Path) -> None:
    pytest.importorskip("mujoco")
    out = tmp_path / "int8"
    result = CliRunner().invoke(app, ["quantize", "models/demo", "--calibration", str(FEED), "--out", str(out),
                                      "--frames", "32", "--goals", "2", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "accuracy.json").read_text())
    for key in ("success_fp32", "success_int8", "latent_cosine_mean", "encoder_speedup"):
        assert key in report
    assert report["int8_model"]["model_id"] == model_id(load_manifest(out))
    assert report["fp32_model"]["model_id"] == model_id(load_manifest("models/demo"))
    assert 0.9 < report["latent_cosine_mean"] <= 1.0
    assert len(report["predictor_drift"]) == 5
    markdown = (out / "accuracy.md").read_text()
    assert f"{report['latent_cosine_mean']:.4f}" in markdown and "edgeloop quantize models/demo" in markdown
    assert len(list((tmp_path / "cache").glob("calibration-*.npz"))) == 1


def test_losing_one_goal_in_fifty_is_exactly_the_two_point_limit() -> None:
    from runtime.evaluation.accuracy import ACCURACY_GOAL_POINTS, success_drop_points

    assert success_drop_points(1.0, 49 / 50) == 2.0 <= ACCURACY_GOAL_POINTS
    assert success_drop_points(1.0, 48 / 50) == 4.0 > ACCURACY_GOAL_POINTS
    assert success_drop_points(0.9, 1.0) == -10.0  # INT8 may do better


def test_the_cli_refuses_to_overwrite_the_model_it_quantizes(tmp_path: Path, demo_model: Path) -> None:
    import shutil

    model = tmp_path / "fp32"
    shutil.copytree(demo_model, model)
    before = (model / "manifest.json").read_bytes()
    result = CliRunner().invoke(app, ["quantize", str(model), "--calibration", str(FEED), "--out", str(model),
                                      "--frames", "8", "--no-report", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "own directory" in result.output
    assert (model / "manifest.json").read_bytes() == before
    assert not list(model.glob("*.int8.onnx"))
    other = tmp_path / "other"  # a directory that holds another model is refused too
    shutil.copytree(demo_model, other)
    result = CliRunner().invoke(app, ["quantize", str(model), "--calibration", str(FEED), "--out", str(other),
                                      "--frames", "8", "--no-report", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2 and f"{other / 'manifest.json'}: already holds a model" in result.output


def test_a_report_that_cannot_run_is_refused_before_quantizing(tmp_path: Path) -> None:
    out = tmp_path / "int8"
    result = CliRunner().invoke(app, ["quantize", "models/demo", "--calibration", str(FEED), "--out", str(out),
                                      "--frames", "8", "--goals", "500", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2
    assert "accuracy report:" in result.output and "asked for 500 goals" in result.output
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_without_a_report_no_run_config_is_needed(tmp_path: Path, demo_model: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/demo.yaml here: the planner defaults set the rollout length
    result = CliRunner().invoke(app, ["quantize", str(demo_model), "--calibration", str(FEED), "--out", "int8",
                                      "--frames", "8", "--no-report", "--cache", "cache"])
    assert result.exit_code == 0, result.output
    assert load_manifest(tmp_path / "int8").precision == "int8"


def test_calibration_frames_are_undistorted_with_the_configs_camera(tmp_path: Path) -> None:
    from calibration.camera_file import write_ros
    from calibration.synthetic import example_camera

    camera = tmp_path / "camera_640x480.yaml"  # the feed's frames are the sim camera's 64x64
    write_ros(example_camera("pinhole", (640, 480)), camera)
    config = tmp_path / "robot.yaml"
    config.write_text(f"calibration:\n  camera: {camera}\n")
    out = tmp_path / "int8"
    result = CliRunner().invoke(app, ["quantize", "models/demo", "--calibration", str(FEED), "--out", str(out),
                                      "--frames", "8", "--no-report", "--config", str(config),
                                      "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert str(camera) in result.output and "640x480" in result.output and "64x64" in result.output
    assert not list(out.glob("*.onnx"))
