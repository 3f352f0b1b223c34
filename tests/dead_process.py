"""The id of a process that ran and exited: a temporary file's writer that is dead."""

from __future__ import annotations

import subprocess
import sys


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
