"""A scene file's MJCF as a robot: actions in, physics stepped, proprio and camera frames out.

Any MJCF works: the scene file (runtime/sim/scene_file.py) says which actuators the action drives and how,
which joints and sites the state reports and which camera sees it; all of them are checked here against the
MJCF, naming what it lacks.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from runtime.sim.scene_file import SceneError, SceneSpec

# EGL renders offscreen without a display; must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")


class Scene:
    """One MuJoCo world built from a scene file. Not thread-safe: one owner steps and renders it."""

    def __init__(self, spec: SceneSpec, image_size: tuple[int, int] | None = None) -> None:
        import mujoco

        self._mj = mujoco
        self.spec = spec
        where = str(spec.path or spec.name)
        try:
            self.model = mujoco.MjModel.from_xml_path(str(spec.mjcf_path))
        except ValueError as exc:  # MuJoCo's compiler error, with the line
            raise SceneError(f"{where}: mjcf {spec.mjcf_path}: {exc}") from exc
        self.model.opt.timestep = spec.timestep
        self.data = mujoco.MjData(self.model)
        self.height, self.width = image_size or (spec.camera.height, spec.camera.width)
        self._camera = self._id(mujoco.mjtObj.mjOBJ_CAMERA, spec.camera.name, "camera.name", where)
        self._actuators = np.array([self._id(mujoco.mjtObj.mjOBJ_ACTUATOR, a.name, f"actuators[{i}].name", where)
                                    for i, a in enumerate(spec.actuators)])
        for i, actuator in enumerate(self._actuators):
            if int(self.model.actuator_trntype[actuator]) != int(mujoco.mjtTrn.mjTRN_JOINT):
                raise SceneError(f"{where}: actuators[{i}].name: actuator {spec.actuators[i].name!r} does not "
                                 "drive a joint")
        self._modes = [a.mode for a in spec.actuators]
        # The joint each actuator drives, for position targets and holding still.
        driven = self.model.actuator_trnid[self._actuators, 0]
        self._driven_qpos = self.model.jnt_qposadr[driven]
        self._driven_dof = self.model.jnt_dofadr[driven]
        joints = [self._id(mujoco.mjtObj.mjOBJ_JOINT, name, f"proprio.joints[{i}]", where)
                  for i, name in enumerate(spec.proprio.joints)]
        one_dof = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
        for i, joint in enumerate(joints):
            if int(self.model.jnt_type[joint]) not in one_dof:
                raise SceneError(f"{where}: proprio.joints[{i}]: joint {spec.proprio.joints[i]!r} is not a hinge "
                                 "or slide joint (one position, one velocity)")
        self._proprio_qpos = self.model.jnt_qposadr[joints]
        self._proprio_dof = self.model.jnt_dofadr[joints]
        self._sites = [(self._id(mujoco.mjtObj.mjOBJ_SITE, s.name, f"proprio.sites[{i}].name", where),
                        ["xyz".index(axis) for axis in s.axes]) for i, s in enumerate(spec.proprio.sites)]
        self._initial = {self._id(mujoco.mjtObj.mjOBJ_JOINT, name, f"initial_q.{name}", where): value
                         for name, value in spec.initial_q.items()}
        ctrl_range = self.model.actuator_ctrlrange[self._actuators]
        limited = self.model.actuator_ctrllimited[self._actuators].astype(bool)
        if spec.action_low is not None and spec.action_high is not None:
            self.action_low = np.asarray(spec.action_low, dtype=np.float64)
            self.action_high = np.asarray(spec.action_high, dtype=np.float64)
        else:
            for i, mode in enumerate(self._modes):
                if mode == "position_delta" or not limited[i]:
                    raise SceneError(f"{where}: action_low/action_high: needed, because actuator "
                                     f"{spec.actuators[i].name!r} " + ("is position_delta" if mode == "position_delta"
                                                                       else "has no ctrlrange"))
            self.action_low, self.action_high = ctrl_range[:, 0].copy(), ctrl_range[:, 1].copy()
        self._ctrl_low = np.where(limited, ctrl_range[:, 0], -np.inf)
        self._ctrl_high = np.where(limited, ctrl_range[:, 1], np.inf)
        if spec.fast_rendering:
            self.model.vis.quality.shadowsize = 0
            self.model.vis.quality.offsamples = 0
            self.model.mat_reflectance[:] = 0.0
        self.model.vis.global_.offwidth = max(int(self.model.vis.global_.offwidth), self.width)
        self.model.vis.global_.offheight = max(int(self.model.vis.global_.offheight), self.height)
        self._renderer: Any = None
        self.reset()

    def _id(self, kind: Any, name: str, key: str, where: str) -> int:
        found = int(self._mj.mj_name2id(self.model, kind, name))
        if found < 0:
            what = str(kind).split("_")[-1].lower()
            raise SceneError(f"{where}: {key}: the MJCF {self.spec.mjcf_path.name} has no {what} named {name!r}")
        return found

    # -- the robot's interface ------------------------------------------------------------------------
    @property
    def action_dim(self) -> int:
        return len(self._actuators)

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(self) -> None:
        """The MJCF's initial state with the scene's initial_q; actuators hold the robot still."""
        self._mj.mj_resetData(self.model, self.data)
        for joint, value in self._initial.items():
            self.data.qpos[self.model.jnt_qposadr[joint]] = value
        self._mj.mj_forward(self.model, self.data)
        self.hold_still()

    def apply(self, action: np.ndarray) -> None:
        """Set the actuators from an action (clipped to the action bounds), each as its mode says."""
        self.data.ctrl[:] = self.controls(np.asarray(action, dtype=np.float64), self.data.qpos)

    def controls(self, actions: np.ndarray, qpos: np.ndarray) -> np.ndarray:
        """The ctrl vectors (..., nu) that actions (..., A), clipped to the action bounds, set from positions qpos
        (..., nq): `apply` for one state, or for a batch of simulated states; undriven actuators keep theirs."""
        actions = np.clip(actions, self.action_low, self.action_high)
        delta = np.array([mode == "position_delta" for mode in self._modes])
        target = np.where(delta, qpos[..., self._driven_qpos] + actions, actions)
        ctrl = np.broadcast_to(self.data.ctrl, (*actions.shape[:-1], self.model.nu)).copy()
        ctrl[..., self._actuators] = np.clip(target, self._ctrl_low, self._ctrl_high)
        return ctrl

    @property
    def proprio_qpos_indices(self) -> np.ndarray:
        """Where the proprio joints' positions sit in qpos."""
        return self._proprio_qpos.copy()

    def hold_still(self) -> None:
        """Velocity actuators to zero, position actuators to where their joints are now."""
        for i, mode in enumerate(self._modes):
            still = 0.0 if mode == "velocity" else float(self.data.qpos[self._driven_qpos[i]])
            self.data.ctrl[self._actuators[i]] = np.clip(still, self._ctrl_low[i], self._ctrl_high[i])

    def step(self, seconds: float) -> None:
        """Advance physics by `seconds`, rounded to whole physics steps (at least one)."""
        self._mj.mj_step(self.model, self.data, nstep=max(1, round(seconds / self.timestep)))

    def step_control(self) -> None:
        """One control period: `physics_substeps` physics steps."""
        self._mj.mj_step(self.model, self.data, nstep=self.spec.physics_substeps)

    def proprio(self) -> tuple[np.ndarray, np.ndarray]:
        """(q, dq) of the scene's proprio joints, copies."""
        return self.data.qpos[self._proprio_qpos].copy(), self.data.qvel[self._proprio_dof].copy()

    def site_positions(self) -> np.ndarray:
        """The proprio sites' positions (the state's ee), concatenated, each with its axes."""
        if not self._sites:
            return np.zeros(0)
        return np.concatenate([self.data.site_xpos[site][axes] for site, axes in self._sites])

    def set_proprio_q(self, q: np.ndarray) -> None:
        """Put the proprio joints at positions `q` (in proprio order), at rest; actuators hold them there."""
        q = np.asarray(q, dtype=np.float64)
        if q.shape != self._proprio_qpos.shape:
            raise SceneError(f"{self.spec.path or self.spec.name}: {q.size} joint positions for the "
                             f"{self._proprio_qpos.size} proprio joints {self.spec.proprio.joints}")
        self.data.qpos[self._proprio_qpos] = q
        self.data.qvel[:] = 0.0
        self._mj.mj_forward(self.model, self.data)
        self.hold_still()

    def qpos(self) -> np.ndarray:
        """The full physics state's positions (every joint of the MJCF), a copy: tasks judge it."""
        return self.data.qpos.copy()

    def set_qpos(self, qpos: np.ndarray, qvel: np.ndarray | None = None) -> None:
        self.data.qpos[:] = qpos
        self.data.qvel[:] = 0.0 if qvel is None else qvel
        self._mj.mj_forward(self.model, self.data)
        self.hold_still()

    def render(self) -> np.ndarray:
        """The scene camera's view as a BGR uint8 image (height, width, 3)."""
        if self._renderer is None:
            self._renderer = self._mj.Renderer(self.model, self.height, self.width)
        self._renderer.update_scene(self.data, camera=self._camera)
        return np.ascontiguousarray(self._renderer.render()[:, :, ::-1])

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
