"""Dropped messages, as both sides of the link keep them: counted by reason, the first of each reason logged."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class Drops:
    """Adds each dropped message to `counters[reason]` (the link's own counters), keeps why the last one was dropped
    and logs the first of each reason once, naming the socket: a flood of bad input costs one line per reason."""

    def __init__(self, counters: dict[str, int], where: str, event: str = "dropped a message") -> None:
        self.counters = counters
        self.where = where
        self.event = event  # what each one is, for the log
        self.last_error: str | None = None
        self._logged: set[str] = set()

    def __call__(self, reason: str, detail: str) -> None:
        self.counters[reason] += 1
        self.last_error = detail
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("%s: %s counted as %s: %s (later ones are counted, not logged)",
                        self.where, self.event, reason, detail)
