"""Scene files (docs/tasks.md): which MJCF, which camera, what the action drives and how, what the state reports.

A scene file is YAML; `edgeloop controller sim --scene NAME|FILE` serves any scene over the command protocol.
Names resolve to the scenes shipped in runtime/sim/scenes/. Every name a scene gives (camera, actuators,
joints, sites) is checked against its MJCF when the scene is built (runtime/sim/scene.py), naming what is
missing.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

ActuatorMode = Literal["velocity", "position", "position_delta"]


class SceneError(ValueError):
    """A scene file that cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class CameraSpec(_Strict):
    name: str = Field(description="An MJCF camera.")
    width: int = Field(64, ge=8, le=1024, description="Rendered image width, pixels.")
    height: int = Field(64, ge=8, le=1024, description="Rendered image height, pixels.")


class ActuatorSpec(_Strict):
    name: str = Field(description="An MJCF actuator that drives a joint.")
    mode: ActuatorMode = Field(description="What the action value is: the actuator's velocity target "
                                           "(velocity), its position target (position), or a change of the "
                                           "position target from the joint's position each control period "
                                           "(position_delta).")


class SiteSpec(_Strict):
    name: str = Field(description="An MJCF site whose world position the state reports.")
    axes: str = Field("xyz", description="Which coordinates, in order: any of x, y, z.")

    @field_validator("axes")
    @classmethod
    def _axes(cls, value: str) -> str:
        if not value or any(axis not in "xyz" for axis in value) or len(set(value)) != len(value):
            raise ValueError(f"expected distinct letters of 'xyz', not {value!r}")
        return value


class ProprioSpec(_Strict):
    joints: list[str] = Field(min_length=1, description="Joints whose positions (state q) and velocities "
                                                        "(state dq) the state reports, in this order.")
    sites: list[SiteSpec] = Field(default_factory=list, description="Sites the state reports as ee, "
                                                                    "concatenated in this order.")


class SceneSpec(_Strict):
    name: str = Field(description="The scene's name, as manifests and results name it.")
    mjcf: Path = Field(description="The MJCF file, relative to the scene file.")
    camera: CameraSpec
    actuators: list[ActuatorSpec] = Field(min_length=1, description="The action's dimensions, in order.")
    action_low: list[float] | None = Field(None, description="Lower action bounds; default: each actuator's "
                                                             "ctrlrange (required for position_delta).")
    action_high: list[float] | None = Field(None, description="Upper action bounds, as action_low.")
    proprio: ProprioSpec
    control_period_s: float = Field(gt=0, le=1.0, description="How long each action is applied, seconds.")
    physics_substeps: int = Field(ge=1, le=10_000, description="Physics steps per control period: the "
                                                              "timestep is control_period_s / physics_substeps.")
    initial_q: dict[str, float] = Field(default_factory=dict, description="Joint positions at reset (others: "
                                                                         "the MJCF's qpos0).")
    fast_rendering: bool = Field(True, description="Shadows, multisampling and reflections off: offscreen "
                                                   "rendering on a CPU is about 20x faster.")
    task: str | None = Field(None, description="The task played in this scene (docs/tasks.md).")
    task_settings: dict[str, Any] = Field(default_factory=dict, description="The task's own settings.")
    _path: Path | None = PrivateAttr(None)  # the scene file, once loaded

    @model_validator(mode="after")
    def _bounds(self) -> SceneSpec:
        for key in ("action_low", "action_high"):
            values = getattr(self, key)
            if values is not None and len(values) != len(self.actuators):
                raise ValueError(f"{key}: {len(values)} values for {len(self.actuators)} actuators")
        if (self.action_low is None) != (self.action_high is None):
            raise ValueError("action_low and action_high: give both or neither")
        if self.action_low is not None and self.action_high is not None \
                and any(h <= lo for lo, h in zip(self.action_low, self.action_high, strict=True)):
            raise ValueError("action_high: every bound must exceed its action_low")
        return self

    @property
    def path(self) -> Path | None:
        """The scene file it was loaded from (None: built in code, relative paths from the working directory)."""
        return self._path

    @property
    def mjcf_path(self) -> Path:
        return (self._path.parent if self._path is not None else Path.cwd()) / self.mjcf

    @property
    def timestep(self) -> float:
        return self.control_period_s / self.physics_substeps


def shipped_scenes() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("runtime.sim").joinpath("scenes").iterdir()
                  if p.name.endswith(".yaml"))


def load_scene(reference: str | Path) -> SceneSpec:
    """A scene by shipped name (runtime/sim/scenes/NAME.yaml) or by file path."""
    text_reference = str(reference)
    if text_reference in shipped_scenes():
        path = Path(str(resources.files("runtime.sim").joinpath("scenes", f"{text_reference}.yaml")))
    else:
        path = Path(reference)
        if not path.is_file():
            raise SceneError(f"{reference}: no such scene file, and not a shipped scene "
                             f"({', '.join(shipped_scenes())})")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SceneError(f"{path}: not a readable YAML scene file ({exc})") from exc
    if not isinstance(data, dict):
        raise SceneError(f"{path}: a scene file is a mapping of keys (docs/tasks.md)")
    try:
        spec = SceneSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
                             for error in exc.errors())
        raise SceneError(f"{path}: {problems}") from exc
    spec._path = path.resolve()
    if not spec.mjcf_path.is_file():
        raise SceneError(f"{path}: mjcf: {spec.mjcf_path} does not exist")
    return spec


def scene_json_schema() -> dict[str, Any]:
    return SceneSpec.model_json_schema()
