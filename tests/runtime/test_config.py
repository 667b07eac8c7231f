"""Run config: the shipped configs validate; bad files, keys and values are refused naming the key path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli.app import app
from runtime.config import ConfigError, dump_config, json_schema, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["demo.yaml", "replay.yaml"])
def test_shipped_configs_validate(name: str) -> None:
    config = load_config(ROOT / "configs" / name)
    assert config.model.manifest == Path("models/demo/manifest.json")


def test_overrides_apply_and_are_validated() -> None:
    config = load_config(None, ["planner.samples=64", "planner.cem.elites=8", "loop.rate_hz=30"])
    assert (config.planner.samples, config.planner.cem.elites, config.loop.rate_hz) == (64, 8, 30.0)
    with pytest.raises(ConfigError, match=r"planner\.samples"):
        load_config(None, ["planner.samples=0"])
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        load_config(None, ["planner.samples"])


def test_unknown_key_is_named_with_its_path_and_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("planner:\n  sampels: 10\nloop:\n  rate_hz: -5\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    text = str(error.value)
    assert f"{path}: planner.sampels: unknown key" in text
    assert f"{path}: loop.rate_hz:" in text


@pytest.mark.parametrize(("override", "named"), [
    ("planner.seed=-1", r"planner\.seed: .*greater than or equal to 0"),
    ("planner.cost.goal.weight=.inf", r"planner\.cost\.goal\.weight: .*finite"),
    ("planner.cost.action_rate.weight=.nan", r"planner\.cost\.action_rate\.weight: .*finite"),
    ("planner.pinned={0: .inf}", r"planner\.pinned\.0: .*finite"),
    ("planner.mppi.temperature=.inf", r"planner\.mppi\.temperature: .*finite"),
])
def test_planner_numbers_that_would_break_planning_are_refused(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_config(None, [override])


def test_elites_may_not_exceed_samples() -> None:
    with pytest.raises(ConfigError, match=r"elites \(20\) must not exceed samples \(10\)"):
        load_config(None, ["planner.samples=10", "planner.cem.elites=20"])


@pytest.mark.parametrize(
    ("text", "message"),
    [("planner: [1, 2\n", "not valid YAML"), ("- a\n- b\n", "top level must be a mapping")],
)
def test_malformed_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_binary_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "feed.mcap"
    path.write_bytes(b"\x89MCAP0\r\n\xff\xfe")
    with pytest.raises(ConfigError, match=r"feed\.mcap: not a text file \(byte 0 is not UTF-8\)"):
        load_config(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_resolved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "demo.yaml", ["planner.horizon=7"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_cli_validate_and_schema(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["config", "validate", str(ROOT / "configs" / "demo.yaml")])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("loop:\n  rate_hz: fast\n")
    refused = runner.invoke(app, ["config", "validate", str(bad)])
    assert refused.exit_code != 0
    assert "loop.rate_hz" in refused.output
    schema = runner.invoke(app, ["config", "schema"])
    assert json.loads(schema.output)["title"] == "RunConfig"
    assert "planner" in json_schema()["properties"]


def test_cli_validate_checks_the_files_and_the_model_fit_naming_each_key(tmp_path: Path) -> None:
    """Schema-valid but unusable: every file that is not there and every value the model refuses, all named."""
    demo = str(ROOT / "configs" / "demo.yaml")
    missing = ["--set", f"model.manifest={tmp_path / 'none' / 'manifest.json'}",
               "--set", f"goal.image={tmp_path / 'none.png'}", "--set", f"calibration.camera={tmp_path / 'none.yaml'}"]
    refused = CliRunner().invoke(app, ["config", "validate", demo, *missing])
    assert refused.exit_code == 2
    said = refused.output.replace("\n", " ")
    for named in (f"goal.image: {tmp_path / 'none.png'}: missing", f"calibration.camera: {tmp_path / 'none.yaml'}",
                  f"model.manifest: {tmp_path / 'none' / 'manifest.json'}: cannot read"):
        assert named in said, said
    unfit = ["--set", "goal.state=[0.1, 0.2, 0.3]", "--set", "planner.pinned={1: 9.0}"]
    refused = CliRunner().invoke(app, ["config", "validate", demo, *unfit])
    assert refused.exit_code == 2
    said = refused.output.replace("\n", " ")
    assert "goal.state: 3 joint positions given" in said and "takes 2" in said
    assert "planner.pinned.1: 9.0 is outside the action bounds [-2.0, 2.0]" in said


def test_a_model_whose_files_do_not_take_the_manifests_action_is_refused_by_validate_and_run(
        tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(ROOT / "models" / "demo", model, ignore=shutil.ignore_patterns("goals"))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest.update(action_dim=3, action_names=[*manifest["action_names"], "wrist"],
                    action_low=[*manifest["action_low"], -1.0], action_high=[*manifest["action_high"], 1.0])
    (model / "manifest.json").write_text(json.dumps(manifest))
    said = "predictor.inputs: tensor 'action' shape ['batch', 2] does not fit action_dim (expected [batch, 3])"
    for command in (["config", "validate"], ["run", "--config"]):  # run refuses before opening any socket
        refused = CliRunner().invoke(app, [*command, str(ROOT / "configs" / "demo.yaml"), "--set",
                                           f"model.manifest={model / 'manifest.json'}"])
        assert refused.exit_code == 2, (command, refused.output)
        assert said in refused.output.replace("\n", " "), (command, refused.output)


def _key_paths(schema: dict, node: dict, prefix: str = "") -> list[str]:
    paths = []
    for name, prop in node.get("properties", {}).items():
        ref = prop.get("$ref") or next((s.get("$ref") for s in prop.get("anyOf", []) if "$ref" in s), None)
        if ref:
            paths += _key_paths(schema, schema["$defs"][ref.split("/")[-1]], f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def test_every_config_key_is_documented() -> None:
    schema = json_schema()
    documented = (ROOT / "docs" / "config.md").read_text()
    missing = [path for path in _key_paths(schema, schema) if f"`{path}`" not in documented]
    assert not missing, f"docs/config.md lacks: {missing}"


def _secured(keys: Path, **files: str) -> list[str]:
    """--set overrides that turn link security on with the key files in `keys` (name -> file name)."""
    named = {"secret_key": "runtime.key_secret", "controller_key": "controller.key",
             "goal_clients": "[" + str(keys / "operator.key") + "]"} | files
    return ["--set", "link.security.enabled=true",
            *[item for key, value in named.items()
              for item in ("--set", f"link.security.{key}={value if key == 'goal_clients' else keys / value}")]]


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    from runtime.link.security import generate_keys

    for name in ("runtime", "controller", "operator"):
        generate_keys(name, tmp_path / "keys")
    return tmp_path / "keys"


def test_security_without_its_keys_is_refused_naming_each_missing_key() -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(None, ["link.security.enabled=true"])
    for key in ("link.security.secret_key", "link.security.controller_key", "link.security.goal_clients"):
        assert key in str(refused.value)
    assert load_config(None, ["link.security.enabled=false"]).link.load_security() is None


def test_cli_validate_names_every_key_file_that_cannot_be_used(keys: Path) -> None:
    demo = str(ROOT / "configs" / "demo.yaml")
    ok = CliRunner().invoke(app, ["config", "validate", demo, *_secured(keys)])
    assert ok.exit_code == 0, ok.output
    (keys / "controller.key").unlink()
    (keys / "runtime.key_secret").chmod(0o640)
    refused = CliRunner().invoke(app, ["config", "validate", demo, *_secured(keys, goal_clients=str(keys))])
    assert refused.exit_code == 2
    said = refused.output.replace("\n", " ")
    assert f"link.security.controller_key: {keys / 'controller.key'}: key file not found" in said, said
    assert f"link.security.secret_key: {keys / 'runtime.key_secret'}: a secret key others may read" in said, said
    assert "goal_clients" not in said  # a folder of public keys is an allowlist


def test_run_refuses_to_start_without_its_key_naming_the_file_and_key(keys: Path) -> None:
    (keys / "runtime.key_secret").unlink()
    refused = CliRunner().invoke(app, ["run", "--config", str(ROOT / "configs" / "demo.yaml"), *_secured(keys)])
    assert refused.exit_code == 2, refused.output
    assert f"link.security.secret_key: {keys / 'runtime.key_secret'}: key file not found" in refused.output
