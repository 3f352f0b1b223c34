"""How ``napari-sam`` ends on a signal (Ctrl-C's SIGINT, or SIGTERM: what ``timeout`` and
cluster schedulers send) whenever it lands: exit code 130 and ``napari-sam: error:
interrupted`` (or a command's own ``Interrupted: ...`` summary), never a traceback, nor the
death by the signal that a parent sees as -2 or -15 (Python ends by SIGINT when a
KeyboardInterrupt is not caught).

While a command runs (:func:`handled_by_the_command`), SIGTERM raises KeyboardInterrupt as
Ctrl-C does, and each command cleans up and says what it finished. Before that (torch and
the model loading at start-up) and after it (the command's own clean-up, the interpreter's
shutdown), :func:`exit_on_signals` ends the process at once with 130: nothing is half
written there (:func:`interrupted_exit`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from napari_sam.cli.errors import print_error

#: The exit code of an interrupted command (docs/cli.md, "Exit codes").
INTERRUPTED = 130

#: The signals that interrupt a command.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def sigterm_as_ctrl_c(signum, frame):  # pragma: no cover - signal handler
    """SIGTERM as Ctrl-C: a KeyboardInterrupt where the main thread is."""
    raise KeyboardInterrupt


def interrupted_exit(signum=None, frame=None):  # pragma: no cover - ends the process
    """End the process now with :data:`INTERRUPTED`, said on stderr (what was printed
    before is flushed first): a signal where no command handles it."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(Exception):
        print_error("interrupted")
        sys.stderr.flush()
    os._exit(INTERRUPTED)


def exit_on_signals() -> None:
    """From now on, SIGINT and SIGTERM end the process at once (:func:`interrupted_exit`);
    nothing in threads other than the main one (the handlers are the main thread's)."""
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig in SIGNALS:
            signal.signal(sig, interrupted_exit)


@contextlib.contextmanager
def handled_by_the_command():
    """While the block runs, SIGINT and SIGTERM raise KeyboardInterrupt (the command handles
    it: exit code 130, its summary); the handlers before it are put back after it (where it
    is not the main thread: nothing changes)."""
    old = {}
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig, handler in ((signal.SIGINT, signal.default_int_handler),
                             (signal.SIGTERM, sigterm_as_ctrl_c)):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
