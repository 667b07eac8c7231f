"""One progress bar for every long command (record, train, eval, bench, quantize), drawn with rich on stderr.

It shows only for a person at a terminal: silent when stdout or stderr is not a terminal (a pipe, a file, CI),
when CI is set, and with --json, so machine-read output is never interleaved with it. The work below reports
through plain callbacks (`advance`, `update`), so the lower layers know nothing of it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def shows_progress() -> bool:
    """Whether a bar would be drawn here: both output streams are terminals and this is not CI."""
    return sys.stdout.isatty() and sys.stderr.isatty() and not os.environ.get("CI")


class ProgressBar:
    """One bar: a description, steps done out of a total (None: not known yet). Without rich's progress behind
    it (`shown` false) every call does nothing."""

    def __init__(self, progress: Any = None, description: str = "") -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=None) if progress is not None else None

    @property
    def shown(self) -> bool:
        return self._progress is not None

    def update(self, done: int, total: int | None = None, description: str | None = None) -> None:
        if self._progress is not None:
            fields: dict[str, Any] = {"completed": done}
            if total is not None:
                fields["total"] = total
            if description is not None:
                fields["description"] = description
            self._progress.update(self._task, **fields)

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, steps)


@contextmanager
def progress_bar(description: str, total: int | None = None, *, quiet: bool = False) -> Iterator[ProgressBar]:
    """A bar on stderr for the duration of the block, gone when it ends; a silent one when `quiet` (--json) or
    when `shows_progress()` is false."""
    if quiet or not shows_progress():
        yield ProgressBar()
        return
    from rich import progress as rich
    from rich.console import Console

    columns = (rich.SpinnerColumn(), rich.TextColumn("{task.description}"), rich.BarColumn(),
               rich.MofNCompleteColumn(), rich.TimeElapsedColumn(), rich.TimeRemainingColumn())
    with rich.Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        bar = ProgressBar(progress, description)
        if total is not None:
            bar.update(0, total)
        yield bar
