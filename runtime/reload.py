"""Hot reload of the `planner` section: the running config file is watched (mtime polled) or SIGHUP'd.

On a change the whole file is read and validated again, with the run's --set overrides re-applied. Only
the planner section may differ from the config in force: an edit anywhere else needs a restart and is
refused whole, like an invalid one, so the settings in force stay as they are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from planning.settings import PlannerSettings
from runtime.config import ConfigError, RunConfig, load_config

# How often the loop looks at the file's mtime: one stat call, cheap enough to run from the loop itself.
POLL_INTERVAL_S = 0.5


class ReloadRefused(Exception):
    """An edit that cannot be applied; the text says why. The settings in force stay."""


@dataclass
class PlannerEdit:
    settings: PlannerSettings  # the edited planner section, validated
    changes: list[str]  # "planner.samples: 256 -> 128", one per key that changed


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat |= _flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: node}


def config_changes(old: RunConfig, new: RunConfig) -> list[str]:
    """Every dotted key whose value differs, as 'key: old -> new' (keys only one side has show <unset>)."""
    before = _flatten(old.model_dump(mode="json"), "")
    after = _flatten(new.model_dump(mode="json"), "")
    return [f"{key}: {before.get(key, '<unset>')} -> {after.get(key, '<unset>')}"
            for key in sorted(before.keys() | after.keys()) if before.get(key, "<unset>") != after.get(key, "<unset>")]


class ConfigWatcher:
    """Notices edits to a run's config file; `request` (the SIGHUP handler) forces a re-read."""

    def __init__(self, path: Path, overrides: Sequence[str] = (), poll_interval_s: float = POLL_INTERVAL_S) -> None:
        self.path = Path(path)
        self.overrides = list(overrides)
        self.poll_interval_s = poll_interval_s
        # No baseline: the first poll re-reads the file against the config in force, so an edit saved while
        # the runtime was starting (after the file was loaded, before this watcher existed) is not missed.
        self._signature: tuple[int, int, int] | None = None
        self._next_poll = time.monotonic() + poll_interval_s
        self._requested = False

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None  # mid-save by an editor that replaces the file; look again next time
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def request(self) -> None:
        """Re-read the file at the next poll, changed or not. Safe to call from a signal handler."""
        self._requested = True

    def poll(self, current: RunConfig) -> PlannerEdit | None:
        """A validated planner edit against the config in force `current`, or None when there is none.

        Raises ReloadRefused when the file changed (or a re-read was requested) but cannot be applied.
        """
        now = time.monotonic()
        if not self._requested and now < self._next_poll:
            return None
        self._next_poll = now + self.poll_interval_s
        signature = self._stat()
        if not self._requested and (signature is None or signature == self._signature):
            return None
        self._requested = False
        self._signature = signature
        try:
            edited = load_config(self.path, self.overrides)
        except ConfigError as exc:
            raise ReloadRefused(str(exc)) from exc
        outside = [change for change in config_changes(current, edited) if not change.startswith("planner.")]
        if outside:
            raise ReloadRefused(f"{self.path}: only the planner section reloads while running; restart for: "
                                + "; ".join(outside))
        changes = config_changes(current, edited)
        return PlannerEdit(edited.planner, changes) if changes else None
