"""Scenes from any MJCF: the scene file checked against its MJCF, actuator modes, and a 3-link arm of the
test's own served by the sim controller and driven by the real runtime loop, with no code change."""

from __future__ import annotations

import json
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("mujoco")

from runtime.sim.controller import SimControllerSettings, run_sim_controller
from runtime.sim.scene import Scene
from runtime.sim.scene_file import SceneError, load_scene, scene_json_schema, shipped_scenes

ANY = "tcp://127.0.0.1:*"

THREE_LINK = textwrap.dedent("""\
    <mujoco model="three_link">
      <compiler angle="radian"/>
      <option gravity="0 0 0"/>
      <visual><global offwidth="64" offheight="64"/></visual>
      <default><joint damping="1" armature="0.01"/><geom contype="0" conaffinity="0"/></default>
      <worldbody>
        <geom type="plane" size="1 1 0.01" rgba="0.8 0.8 0.8 1"/>
        <camera name="top" pos="0 0 2" xyaxes="1 0 0 0 1 0" fovy="50"/>
        <body name="a"><joint name="j1" type="hinge" axis="0 0 1" range="-3 3"/>
          <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.03" rgba="1 0 0 1" mass="1"/>
          <body name="b" pos="0.25 0 0"><joint name="j2" type="hinge" axis="0 0 1" range="-2.5 2.5"/>
            <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.025" rgba="0 1 0 1" mass="0.6"/>
            <body name="c" pos="0.2 0 0"><joint name="j3" type="hinge" axis="0 0 1" range="-2.5 2.5"/>
              <geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.02" rgba="0 0 1 1" mass="0.3"/>
              <site name="tip" pos="0.15 0 0" size="0.02"/>
            </body>
          </body>
        </body>
      </worldbody>
      <actuator>
        <velocity name="v1" joint="j1" kv="30" ctrlrange="-2 2"/>
        <position name="p2" joint="j2" kp="20" ctrlrange="-2.5 2.5"/>
        <position name="d3" joint="j3" kp="30" ctrlrange="-2.5 2.5"/>
      </actuator>
    </mujoco>
    """)


def write_scene(folder: Path, **changes: object) -> Path:
    (folder / "three_link.xml").write_text(THREE_LINK)
    scene = {
        "name": "three-link", "mjcf": "three_link.xml", "camera": {"name": "top", "width": 48, "height": 40},
        "control_period_s": 0.05, "physics_substeps": 25,
        "actuators": [{"name": "v1", "mode": "velocity"}, {"name": "p2", "mode": "position"},
                      {"name": "d3", "mode": "position_delta"}],
        "action_low": [-2.0, -2.5, -0.2], "action_high": [2.0, 2.5, 0.2],
        "proprio": {"joints": ["j1", "j2", "j3"], "sites": [{"name": "tip", "axes": "xy"}]},
        "initial_q": {"j1": 0.3},
    } | changes
    path = folder / "three-link.yaml"
    path.write_text(yaml.safe_dump(scene))
    return path


def test_the_planar_arm_is_a_shipped_scene() -> None:
    assert "planar-arm" in shipped_scenes()
    spec = load_scene("planar-arm")
    assert spec.timestep == pytest.approx(0.002) and spec.proprio.joints == ["shoulder", "elbow"]
    assert "actuators" in scene_json_schema()["properties"]
    from typer.testing import CliRunner

    from runtime.cli.app import app

    printed = CliRunner().invoke(app, ["task", "scene-schema"])
    assert printed.exit_code == 0 and json.loads(printed.output) == scene_json_schema()


@pytest.mark.parametrize(("change", "message"), [
    ({"camera": {"name": "side"}}, r"camera.name: the MJCF three_link.xml has no camera named 'side'"),
    ({"actuators": [{"name": "v9", "mode": "velocity"}], "action_low": [-1.0], "action_high": [1.0]},
     r"actuators\[0\].name: .* no actuator named 'v9'"),
    ({"proprio": {"joints": ["j1", "elbow"]}}, r"proprio.joints\[1\]: .* no joint named 'elbow'"),
    ({"proprio": {"joints": ["j1"], "sites": [{"name": "hand"}]}}, r"proprio.sites\[0\].name: .* no site named"),
    ({"initial_q": {"j7": 0.1}}, r"initial_q.j7: .* no joint named 'j7'"),
])
def test_a_scene_naming_what_its_mjcf_lacks_is_refused_naming_it(tmp_path: Path, change: dict[str, object],
                                                                  message: str) -> None:
    path = write_scene(tmp_path, **change)
    with pytest.raises(SceneError, match=f"{path}: {message}"):
        Scene(load_scene(path))


@pytest.mark.parametrize(("change", "message"), [
    ({"action_low": None, "action_high": None}, r"action_low/action_high: needed, because actuator 'd3' is "
                                                r"position_delta"),
    ({"action_low": [0.0, 0.0]}, r"action_low: 2 values for 3 actuators"),
    ({"actuators": [{"name": "v1", "mode": "torque"}]}, r"actuators.0.mode: Input should be 'velocity'"),
    ({"physics_substeps": 0}, r"physics_substeps: Input should be greater than or equal to 1"),
    ({"proprio": {"joints": ["j1"], "sites": [{"name": "tip", "axes": "xq"}]}}, r"axes: .*distinct letters"),
])
def test_malformed_scene_files_are_refused_naming_the_key(tmp_path: Path, change: dict[str, object],
                                                          message: str) -> None:
    path = write_scene(tmp_path, **change)
    with pytest.raises(SceneError, match=f"{path}: .*{message}"):
        Scene(load_scene(path))
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    with pytest.raises(SceneError, match=r"broken\.yaml: not a readable YAML scene file"):
        load_scene(tmp_path / "broken.yaml")
    with pytest.raises(SceneError, match=r"nowhere\.yaml: no such scene file, and not a shipped scene"):
        load_scene(tmp_path / "nowhere.yaml")


def test_each_actuator_mode_does_what_it_says(tmp_path: Path) -> None:
    scene = Scene(load_scene(write_scene(tmp_path)))
    q, dq = scene.proprio()
    assert q == pytest.approx([0.3, 0.0, 0.0]) and np.all(dq == 0)  # initial_q
    assert scene.action_dim == 3 and scene.render().shape == (40, 48, 3)
    scene.apply(np.array([0.0, 0.8, 0.15]))
    for _ in range(20):  # one second
        scene.step_control()
    q, dq = scene.proprio()
    assert q[0] == pytest.approx(0.3, abs=0.02)  # velocity 0: the joint stays
    assert q[1] == pytest.approx(0.8, abs=0.03)  # position: the joint goes to the target and stays
    assert q[2] == pytest.approx(0.15, abs=0.03)  # position_delta: the target moved once, from 0 by 0.15
    scene.apply(np.array([1.0, 0.8, 9.0]))  # the delta is clipped to its bound 0.2, from where the joint is now
    for _ in range(20):
        scene.step_control()
    q, dq = scene.proprio()
    assert dq[0] == pytest.approx(1.0, abs=0.1)  # velocity: the joint turns at about the commanded rate
    assert q[2] == pytest.approx(0.35, abs=0.05)
    scene.hold_still()
    held = scene.proprio()[0]
    for _ in range(10):
        scene.step_control()
    assert np.abs(scene.proprio()[1]).max() < 0.05 and scene.proprio()[0][1:] == pytest.approx(held[1:], abs=0.02)
    assert scene.site_positions().shape == (2,)
    scene.close()


def test_the_sim_controller_serves_a_three_link_arm_to_the_runtime_loop(tmp_path: Path) -> None:
    """No code change: the scene file, a model for 3 joints, and the real loop over real sockets."""
    torch = pytest.importorskip("torch")
    from perception.export import ModelInterface, export_world_model
    from perception.manifest import ImageSpec
    from perception.nets import Encoder, NetConfig, Predictor
    from runtime.config import load_config
    from runtime.loop import ControlLoop

    scene_file = write_scene(tmp_path, camera={"name": "top", "width": 40, "height": 40})  # the nets take squares
    torch.manual_seed(0)
    config = NetConfig(image_size=40, channels=(4, 4, 4), visual_dim=4, proprio_dim=6, proprio_latent_dim=4,
                       action_dim=3, hidden=16)
    interface = ModelInterface(
        name="three-link-test", image=ImageSpec(width=40, height=40, channel_order="RGB", layout="NCHW",
                                                scale=1 / 255, mean=[0.5] * 3, std=[0.25] * 3),
        proprio_names=[f"j{i}.{kind}" for kind in ("position", "velocity") for i in (1, 2, 3)],
        action_names=["j1.velocity", "j2.position", "j3.position_delta"], action_low=[-2.0, -2.5, -0.2],
        action_high=[2.0, 2.5, 0.2], action_units="mixed", control_period_s=0.05)
    manifest = export_world_model(Encoder(config).eval(), Predictor(config).eval(), tmp_path / "model", config,
                                  interface)
    stop, ready, bound, counters = threading.Event(), threading.Event(), {}, {}
    settings = SimControllerSettings(command_endpoint=ANY, state_endpoint=ANY, frame_endpoint=ANY,
                                     scene=str(scene_file))

    def serve() -> None:
        counters.update(run_sim_controller(settings, stop, lambda endpoints: (bound.update(endpoints), ready.set())))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(30)
    try:
        run = load_config(None, [
            f"model.manifest={manifest}", "goal.state=[0.5,-0.4,0.3]", "planner.cost.goal.weight=0",
            f"link.command_endpoint={bound['command']}", f"link.state_endpoint={bound['state']}",
            f"source.uri={bound['frame'].replace('tcp://', 'zmq://')}", f"runs_dir={tmp_path / 'runs'}",
            "loop.status_line=false", "planner.samples=32", "planner.iterations=1"])
        loop = ControlLoop(run)
        loop.run(duration_s=2.0)
        summary = loop.close()
    finally:
        stop.set()
        thread.join(10)
    assert summary["counters"]["commands"] > 10 and summary["counters"]["wrong_state_dim"] == 0
    assert loop.state is not None and loop.state.q.size == 3 and loop.state.ee.size == 2
    assert counters["commands_applied"] > 10
