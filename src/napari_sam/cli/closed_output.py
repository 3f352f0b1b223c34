"""A standard output closed by its reader (``napari-sam models list | head -1``): the
command ends quietly with exit code 141, as a Unix tool killed by SIGPIPE does (a shell
reports such a tool as 128 + 13), never with ``napari-sam: error: BrokenPipeError``. A
command that failed keeps its own code (:func:`closed_output_code`): a batch with a failed
file piped into ``head -1`` exits 1, so that ``set -o pipefail`` and checks of ``$?`` see
that work is missing.

Python ignores SIGPIPE, so a write to a pipe whose reader has gone raises
``BrokenPipeError``; Python's documented recipe (the ``signal`` module's "Note on
SIGPIPE") points the output at ``os.devnull`` so that the interpreter's last flush, at its
shutdown, does not fail again (``Exception ignored ... BrokenPipeError``)."""

from __future__ import annotations

import contextlib
import os
import sys

#: The exit code of a command whose standard output was closed (docs/cli.md, "Exit codes").
OUTPUT_CLOSED = 141


def stdout_is_closed() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has gone: a
    ``BrokenPipeError`` of its own, not one of a connection the command made (a dask
    scheduler's). True where it cannot be told (no ``poll``, no file descriptor)."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
    except (AttributeError, OSError, ValueError):
        return True
    poller.register(fd, select.POLLOUT)
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


def end_quietly() -> int:
    """Point standard output at ``os.devnull`` (what is still buffered for it is dropped)
    and return :data:`OUTPUT_CLOSED`."""
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return OUTPUT_CLOSED


def closed_output_code(code: int | None) -> int:
    """The exit code of a command whose standard output its reader closed, ``code`` being the
    one it would have given otherwise (None: not known, the command did not finish): its
    output is pointed at ``os.devnull`` (:func:`end_quietly`). A failure's code (1: a file
    of a batch failed, 2, 130: interrupted) wins, as what a script must see; 0 or None gives
    :data:`OUTPUT_CLOSED`."""
    closed = end_quietly()
    return code if code else closed
