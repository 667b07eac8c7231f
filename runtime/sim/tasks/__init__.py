"""Tasks, one file each behind `Task` (runtime/sim/tasks/base.py); docs/tasks.md."""

from __future__ import annotations

from typing import Any

from runtime.sim.scene import Scene
from runtime.sim.scene_file import load_scene
from runtime.sim.tasks.arm_push import ArmPush
from runtime.sim.tasks.base import Task
from runtime.sim.tasks.push_t import PushT
from runtime.sim.tasks.reach import Reach
from runtime.sim.tasks.two_room import TwoRoom

TASKS: dict[str, type[Task]] = {task.name: task for task in (Reach, TwoRoom, PushT, ArmPush)}


def task_type(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task: unknown task {name!r}; expected one of {', '.join(TASKS)}") from None


def task_summary(kind: type[Task]) -> str:
    """The first paragraph of the task module's docstring, on one line."""
    import sys

    text = sys.modules[kind.__module__].__doc__ or kind.name
    return " ".join(text.strip().split("\n\n")[0].split())


def open_task(name: str, settings: dict[str, Any] | None = None,
              image_size: tuple[int, int] | None = None) -> tuple[Task, Scene]:
    """The task and a fresh scene of its shipped scene file; the scene file's task_settings, then `settings`."""
    kind = task_type(name)
    spec = load_scene(kind.scene)
    scene = Scene(spec, image_size)
    return kind(scene, spec.task_settings | (settings or {})), scene


__all__ = ["TASKS", "Task", "open_task", "task_summary", "task_type"]
