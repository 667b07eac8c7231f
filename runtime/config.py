"""The run configuration: one typed schema for live, replay and sim runs (configs/*.yaml).

Unknown keys and bad values are refused with the dotted key path and the file they came from.
`--set dotted.key=value` overrides are applied before validation, so they are checked the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from planning.settings import PlannerSettings
from runtime.link import protocol
from runtime.link.security import LinkSecurity, SecurityError, read_allowlist, read_public_key, read_secret_key

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be used; the text names the file and the key path."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    manifest: Path = Field(Path("models/demo/manifest.json"), description="Model manifest.json to run.")
    backend: Literal["onnxruntime", "torch", "tensorrt", "auto"] = Field(
        "onnxruntime",
        description="Inference backend; auto: tensorrt where it can run (docs/tensorrt.md), else onnxruntime.",
    )
    threads: int = Field(1, ge=1, le=64, description="Intra-op threads per engine.")
    engine_cache: Path | None = Field(
        None,
        description="TensorRT engine cache directory; null: $EDGELOOP_ENGINE_CACHE, else ~/.cache/edgeloop/engines.",
    )
    cuda_graph: bool = Field(False, description="TensorRT: replay each batch size's enqueue from a CUDA graph.")


class SourceSection(_Section):
    uri: str = Field(
        "zmq://127.0.0.1:5557",
        description="Frame source: file:VIDEO, images:DIR, mcap:FILE, rosbag2:BAG?topic=TOPIC, v4l2:DEVICE, "
                    "gst:PIPELINE or zmq://HOST:PORT.",
    )
    pace: Literal["realtime", "fast"] = Field(
        "realtime", description="Recorded sources: wall-clock pacing or as fast as read."
    )
    loop: bool = Field(True, description="Recorded sources: start over at the end.")
    frame_timeout_ms: float = Field(
        500.0, gt=0, description="No new frame for this long: the loop sends stop instead of planning on a stale view."
    )


class SecuritySection(_Section):
    """CURVE on every socket of the link (docs/security.md); key files as `edgeloop keys generate` writes them."""

    enabled: bool = Field(False, description="Encrypt and authenticate every socket of the link with CURVE.")
    secret_key: Path | None = Field(
        None, description="This runtime's key pair: the NAME.key_secret file (mode 0600).")
    controller_key: Path | None = Field(
        None, description="The controller's public key file (NAME.key): its command, state and frame sockets.")
    goal_clients: list[Path] = Field(
        default_factory=list,
        description="The goal socket's allowlist: a folder of client public keys (*.key), or a list of key files "
                    "and folders.")

    @field_validator("goal_clients", mode="before")
    @classmethod
    def _one_path_is_a_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, Path)) else value


class LinkSection(_Section):
    command_endpoint: str = Field(
        protocol.DEFAULT_COMMAND_ENDPOINT, description="Controller's command socket (runtime connects a PUB)."
    )
    state_endpoint: str = Field(
        protocol.DEFAULT_STATE_ENDPOINT, description="Controller's state socket (runtime connects a SUB)."
    )
    command_ttl_ms: float = Field(200.0, gt=0, description="Time-to-live stamped on each command.")
    state_timeout_ms: float = Field(
        500.0, gt=0, description="No controller state for this long, or a state stamped this long ago, stops the "
                                 "robot (missing_state / stale_state); a state stamped this far ahead is dropped "
                                 "(future_states)."
    )
    command_hz: float = Field(
        100.0, gt=0, le=1000, description="loop.planning: async: commands per second, each from the newest plan."
    )
    goal_endpoint: str | None = Field(
        protocol.DEFAULT_GOAL_ENDPOINT,
        description="Where the runtime binds a PULL for goal messages at run time (null: no goal socket).",
    )
    security: SecuritySection = Field(default_factory=SecuritySection)

    @model_validator(mode="after")
    def _keys_named(self) -> LinkSection:
        security = self.security
        if security.enabled:
            needed = {"secret_key": security.secret_key is not None,
                      "controller_key": security.controller_key is not None,
                      "goal_clients (the goal socket's allowlist; or set link.goal_endpoint: null)":
                          self.goal_endpoint is None or bool(security.goal_clients)}
            missing = [f"link.security.{key}" for key, named in needed.items() if not named]
            if missing:
                raise ValueError(f"link.security.enabled is true but not set: {', '.join(missing)} "
                                 f"(docs/security.md)")
        return self

    def load_security(self) -> LinkSecurity | None:
        """The link's CURVE keys, read and checked (None when security is off). SecurityError names every key
        file that is missing, unreadable, malformed or readable by others, with its config key."""
        security = self.security
        if not security.enabled:
            return None
        assert security.secret_key is not None and security.controller_key is not None  # _keys_named
        problems: list[str] = []

        def read(reader: Callable[[Any, str], T], source: Any, key: str) -> T | None:
            try:
                return reader(source, f"link.security.{key}")
            except SecurityError as exc:
                problems.append(str(exc))
                return None

        keys = read(read_secret_key, security.secret_key, "secret_key")
        server_key = read(read_public_key, security.controller_key, "controller_key")
        allowed = read(read_allowlist, security.goal_clients, "goal_clients") if self.goal_endpoint else {}
        if problems or keys is None:
            raise SecurityError("\n".join(problems))
        return LinkSecurity(*keys, server_key=server_key, allowed_clients=allowed or {})


class LoopSection(_Section):
    rate_hz: float = Field(20.0, gt=0, le=1000, description="Control rate.")
    deadline_ms: float | None = Field(
        None, gt=0, description="A tick longer than this counts as a deadline miss (default: one period)."
    )
    duration_s: float | None = Field(None, gt=0, description="Stop after this long (default: until SIGINT/SIGTERM).")
    status_line: bool = Field(True, description="Show a live status line on a terminal.")
    planning: Literal["sync", "async"] = Field(
        "sync", description="sync: plan and send one command per tick; async: the planner runs in its own thread "
                            "(at most rate_hz plans per second) and commands go out at link.command_hz from the "
                            "newest plan (docs/planner.md, Asynchronous planning).")
    max_plan_age_ms: float = Field(
        150.0, gt=0, description="loop.planning: async: stop when the newest plan was captured longer ago than this.")
    interpolation: Literal["hold", "linear"] = Field(
        "hold", description="loop.planning: async: between a plan's steps, hold each action (what the predictor "
                            "assumed) or blend linearly to the next.")
    control_cpu: int | None = Field(
        None, ge=0, description="loop.planning: async: pin the command thread to this CPU and the planner thread "
                                "to the others (Linux); null: no pinning.")
    control_priority: int | None = Field(
        None, ge=1, le=99, description="loop.planning: async: run the command thread at this SCHED_FIFO real-time "
                                       "priority (Linux; needs CAP_SYS_NICE or an rtprio limit); null: as any thread.")

    @property
    def period_s(self) -> float:
        return 1.0 / self.rate_hz

    @property
    def deadline_s(self) -> float:
        return self.deadline_ms / 1000.0 if self.deadline_ms is not None else self.period_s


class GoalSection(_Section):
    """The goal at start: a view (an image file or a recording's frame), a joint state, or a view and a state."""

    image: Path | None = Field(
        Path("models/demo/goals/goal_000.png"),
        description="Goal view as an image file (PNG/JPEG). Default only when the section names no other goal.",
    )
    recording: Path | None = Field(None, description="Goal view from an MCAP recording (frame `goal.frame`).")
    frame: int | None = Field(None, ge=0, description="Index of the goal frame in `goal.recording`, from 0.")
    state: list[float] | None = Field(
        None, min_length=1, description="Goal joint positions (rad), held still; may join an image or recording."
    )

    @model_validator(mode="before")
    @classmethod
    def _default_image_only_alone(cls, data: Any) -> Any:
        # The default image is the goal only when nothing else is named: `goal: {state: [...]}` means a
        # state goal, not the default view plus a state.
        if isinstance(data, dict) and "image" not in data and any(
            data.get(key) is not None for key in ("recording", "state")
        ):
            return {**data, "image": None}
        return data

    @field_validator("state")
    @classmethod
    def _finite(cls, state: list[float] | None) -> list[float] | None:
        if state is not None and not all(math.isfinite(q) for q in state):
            raise ValueError("joint positions must be finite")
        return state

    @model_validator(mode="after")
    def _one_view(self) -> GoalSection:
        if self.image is not None and self.recording is not None:
            raise ValueError("give the goal view as either 'image' or 'recording', not both")
        if self.recording is not None and self.frame is None:
            raise ValueError("'recording' needs 'frame': the index of the goal frame")
        if self.frame is not None and self.recording is None:
            raise ValueError("'frame' needs 'recording': the MCAP file to take it from")
        return self


class CalibrationSection(_Section):
    camera: Path | None = Field(
        None, description="Camera calibration file (OpenCV FileStorage or ROS camera_info YAML): frames are "
                          "undistorted before preprocessing; frames of another size than calibrated are refused.",
    )


class SafetySection(_Section):
    max_rate: float = Field(
        40.0, gt=0, description="Largest change of any action dimension per second (action units/s)."
    )


class PrometheusSection(_Section):
    """The run's metrics endpoint for Prometheus (docs/metrics.md); read at scrape time, nothing per tick."""

    enabled: bool = Field(False, description="Serve the run's metrics at http://HOST:PORT/metrics.")
    host: str = Field("127.0.0.1", description="Address the endpoint binds; 0.0.0.0 opens it to every network "
                                               "the machine is on (there is no authentication).")
    port: int = Field(9464, ge=0, le=65535, description="TCP port of the endpoint; 0: any free port.")


class LiveViewSection(_Section):
    """A Foxglove WebSocket server that shows the run while it goes (docs/recording.md#live-view)."""

    enabled: bool = Field(False, description="Serve the live view (needs the `observe` extra: foxglove-sdk).")
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on; loopback keeps it on this machine.")
    port: int = Field(8765, ge=0, le=65535, description="TCP port; 0 takes a free one (the summary says which).")
    image_format: Literal["jpeg", "png"] = Field(
        "jpeg", description="Camera and goal images as sent to viewers: jpeg is several times faster to encode.")


class RunConfig(_Section):
    """Everything one `edgeloop run` needs. Relative paths resolve against the working directory."""

    model: ModelSection = Field(default_factory=ModelSection)
    source: SourceSection = Field(default_factory=SourceSection)
    link: LinkSection = Field(default_factory=LinkSection)
    loop: LoopSection = Field(default_factory=LoopSection)
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    goal: GoalSection = Field(default_factory=GoalSection)
    calibration: CalibrationSection = Field(default_factory=CalibrationSection)
    safety: SafetySection = Field(default_factory=SafetySection)
    prometheus: PrometheusSection = Field(default_factory=PrometheusSection)
    record: bool = Field(False, description="Write the run (frames, state, latents, plans, commands) to MCAP.")
    live_view: LiveViewSection = Field(default_factory=LiveViewSection)
    runs_dir: Path = Field(Path("runs"), description="Where runs/<id>/summary.json and recordings go.")


def format_errors(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
        lines.append(f"{origin}: {path}: {message}")
    return "\n".join(lines)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `dotted.key=value` override in place; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected dotted.key=value")
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {assignment!r}: '{part}' is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({exc})") from exc


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a config file (None: defaults only)."""
    origin = str(path) if path is not None else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not a text file (byte {exc.start} is not UTF-8): expected YAML") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = loaded or {}
    for assignment in overrides or []:
        apply_override(data, assignment)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin)) from exc


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, loadable by load_config."""
    return yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False)


def json_schema() -> dict[str, Any]:
    return RunConfig.model_json_schema()
