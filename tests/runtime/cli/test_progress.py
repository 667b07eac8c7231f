"""The progress bar: drawn on a terminal, silent on a pipe, in CI and with --json."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.progress import progress_bar, shows_progress

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import time
from runtime.cli.progress import progress_bar
with progress_bar("recording", 4) as bar:
    for _ in range(4):
        bar.advance()
        time.sleep(0.15)
print(f"done, shown={bar.shown}")
"""


def test_silent_when_the_output_is_not_a_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    assert not shows_progress()  # pytest captures both streams: not terminals
    with progress_bar("recording", 3) as bar:
        assert not bar.shown
        bar.advance()
        bar.update(2, 3, "still recording")
    assert capfd.readouterr() == ("", "")


def _on_a_terminal(env: dict[str, str]) -> str:
    """Run SCRIPT with stdout and stderr on a pseudo-terminal; everything it wrote there."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=follower,
                               stderr=follower, env=env)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(30) == 0
    return output.decode(errors="replace")


def test_drawn_on_a_terminal_and_not_in_ci() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"TERM": "xterm", "COLUMNS": "100"}
    shown = _on_a_terminal(env)
    assert "recording" in shown and "4/4" in shown and "done, shown=True" in shown
    in_ci = _on_a_terminal(env | {"CI": "true"})
    assert "recording" not in in_ci and "done, shown=False" in in_ci
