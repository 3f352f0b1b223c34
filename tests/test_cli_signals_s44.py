"""A signal at any moment of ``napari-sam`` (session 44): exit code 130 and ``napari-sam:
error: interrupted``, never a traceback nor the death by the signal. A serial run's SIGTERM
test once saw -2: SIGTERM raised KeyboardInterrupt outside ``main``'s handler (in its
clean-up, ``finally``), which Python, not catching it, turns into death by SIGINT. Each test
sends a real signal to the process at one moment, from a ``sitecustomize`` on its path."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from cli_runner import cli_env

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="POSIX signals")

#: ``sitecustomize``: the process signals itself (``SIG``) at ``WHEN``: in ``main``'s clean-up
#: (its ``finally`` removes a log filter), in the interpreter's shutdown (an atexit
#: function), or while the command runs (its first ``print``), then waits ``PAUSE`` seconds
#: for the signal to take effect.
SIGNAL_AT = """
import atexit, builtins, logging, os, signal, time
SIG, WHEN, PAUSE = signal.{sig}, "{when}", {pause}
def fire():
    os.kill(os.getpid(), SIG)
    time.sleep(PAUSE)
if WHEN == "command":
    _print = builtins.print
    def print(*args, **kwargs):
        builtins.print = _print
        fire()
        return _print(*args, **kwargs)
    builtins.print = print
elif WHEN == "finally":
    _remove = logging.Logger.removeFilter
    def removeFilter(self, f):
        if self.name == "napari_sam.models.registry":
            fire()
        return _remove(self, f)
    logging.Logger.removeFilter = removeFilter
else:
    atexit.register(fire)
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("when", ["finally", "shutdown"])
def test_a_signal_outside_the_commands_handler_exits_130_and_says_so(tmp_path, sig, when):
    """``napari-sam models list`` signalled in ``main``'s clean-up exited -2 (the
    KeyboardInterrupt SIGTERM raised there escaped ``main``; Python then ends by SIGINT)
    with a traceback; signalled as the interpreter shuts down, SIGTERM killed it (-15) and
    SIGINT printed a traceback and exited 0. Each exits 130 and says "interrupted"."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SIGNAL_AT.format(sig=sig, when=when, pause=5))
    proc = subprocess.run([sys.executable, "-m", "napari_sam.cli", "models", "list"],
                          env=cli_env(tmp_path, site), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr.splitlines()[-1] == "napari-sam: error: interrupted", proc.stderr
    assert "Traceback" not in proc.stderr and "KeyboardInterrupt" not in proc.stderr
    assert "vit_b" in proc.stdout  # what it printed before is not lost (flushed)


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("when", ["command", "finally", "shutdown"])
def test_a_signal_ignored_at_start_stays_ignored(tmp_path, sig, when):
    """A ``napari-sam`` started with the signal ignored (a shell script's background job,
    ``napari-sam auto ... &``, whose SIGINT the shell ignores; ``trap '' INT TERM``) runs
    on when it comes, as Python leaves an ignored SIGINT: it exited 130, "interrupted", at
    any moment (the handlers were installed over the inherited ``SIG_IGN``)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SIGNAL_AT.format(sig=sig, when=when, pause=0.5))
    signum = getattr(signal, sig)
    proc = subprocess.run([sys.executable, "-m", "napari_sam.cli", "models", "list"],
                          env=cli_env(tmp_path, site), capture_output=True, text=True,
                          timeout=120, preexec_fn=lambda: signal.signal(signum, signal.SIG_IGN))
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    assert "interrupted" not in proc.stderr and "Traceback" not in proc.stderr
    assert "vit_b" in proc.stdout
