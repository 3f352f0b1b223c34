"""How ``napari-sam`` ends on a signal (Ctrl-C's SIGINT, or SIGTERM: what ``timeout`` and
cluster schedulers send) whenever it lands: exit code 130 and ``napari-sam: error:
interrupted`` (or a command's own ``Interrupted: ...`` summary), never a traceback, nor the
death by the signal that a parent sees as -2 or -15 (Python ends by SIGINT when a
KeyboardInterrupt is not caught).

While a command runs (:func:`handled_by_the_command`: loading torch and the model included),
SIGTERM raises KeyboardInterrupt as Ctrl-C does, and each command cleans up and says what it
finished. Before that (the arguments parsed, the CLI's own modules imported) and after it
(``main``'s clean-up, the interpreter's shutdown), :func:`exit_on_signals` ends the process
at once with 130: nothing is half written there (:func:`interrupted_exit`; no ``atexit``
function of the command line's needs to run).

A signal that was ignored when ``napari-sam`` started stays ignored throughout (as Python
leaves an ignored SIGINT): a background job of a shell script (``napari-sam auto ... &``,
whose SIGINT the shell ignores), ``trap '' INT TERM``, or a parent that ignores them on
purpose; Ctrl-C meant for the script does not stop it."""

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


def ignored(sig) -> bool:
    """Whether ``sig`` is ignored in this process (``SIG_IGN``: inherited from the parent,
    e.g. a shell's background job, or set by ``trap ''``): left so by this module."""
    return signal.getsignal(sig) == signal.SIG_IGN


def exit_on_signals() -> None:
    """From now on, SIGINT and SIGTERM end the process at once (:func:`interrupted_exit`),
    but for one that is ignored (:func:`ignored`: it stays so); nothing in threads other
    than the main one (the handlers are the main thread's)."""
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig in SIGNALS:
            if not ignored(sig):
                signal.signal(sig, interrupted_exit)


@contextlib.contextmanager
def handled_by_the_command():
    """While the block runs, SIGINT and SIGTERM raise KeyboardInterrupt (the command handles
    it: exit code 130, its summary); the handlers before it are put back after it (where it
    is not the main thread: nothing changes). A signal ignored as the block starts
    (:func:`ignored`) stays ignored."""
    old = {}
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig, handler in ((signal.SIGINT, signal.default_int_handler),
                             (signal.SIGTERM, sigterm_as_ctrl_c)):
            if not ignored(sig):
                old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
