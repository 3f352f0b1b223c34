"""The suite started as a background job of a shell script (SIGINT ignored, as POSIX shells
start such jobs) runs its Ctrl-C checks as from a terminal (``tests/conftest.py``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent

#: A Ctrl-C check of each kind: the CLI in a child process, and slice workers in this one.
CTRL_C_CHECKS = (
    "test_cli_signals_s44.py::test_a_signal_outside_the_commands_handler_exits_130_and_says_so"
    "[finally-SIGINT]",
    "test_slice_workers.py::test_ctrl_c_stops_the_workers_at_their_next_progress_report",
)


def _ignore_sigint():  # pragma: no cover - runs in the child before exec
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.skipif(os.name == "nt", reason="no SIGINT disposition to inherit on Windows")
def test_ctrl_c_checks_pass_in_a_suite_started_with_sigint_ignored(tmp_path):
    """``pytest`` started with SIGINT ignored (``.ci/run &`` in a script): the CLI's and the
    slice workers' Ctrl-C checks failed (the CLI rightly kept the inherited ignored SIGINT);
    they pass."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(TESTS.parent), *(str(TESTS / c) for c in CTRL_C_CHECKS)],
        cwd=TESTS.parent, preexec_fn=_ignore_sigint, capture_output=True, text=True,
        timeout=600, env={**os.environ, "PYTEST_ADDOPTS": ""})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout[-3000:]
