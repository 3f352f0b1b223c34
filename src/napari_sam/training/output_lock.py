"""One training run per checkpoint: the run holds the lock of its ``out`` (the batch's
:class:`napari_sam.batch.jobs.OutputLock`, a ``flock`` on
``<out folder>/.napari-sam-work/locks/<out name>.lock``) from before its first check until
it returns, and a second run of the same ``out`` is refused at once
(:class:`TrainingOutputBusy`, naming the process and host that hold it).

Without it two ``napari-sam train ... -o model.pt`` started together both trained and wrote
over each other's ``model.pt``, ``model.json`` and training state. The lock is the kernel's:
a killed run (even by SIGKILL) holds none, and the lock file it leaves behind blocks nobody.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

__all__ = ["TrainingOutputBusy", "holding_output"]

_HELD: dict[str, int] = {}  # lock files this process holds -> nesting depth
_GUARD = threading.Lock()


class TrainingOutputBusy(RuntimeError):
    """Another process is training into the same checkpoint."""


def busy_message(out: Path, pid: int | None, host: str | None) -> str:
    """The refusal of a second run of ``out``: who holds it and what to do."""
    who = "another napari-sam process" + (f" (pid {pid}" if pid else "")
    if pid:
        who += f" on {host})" if host and host != socket.gethostname() else ")"
    return (f"{out} is being trained by {who}: two runs into one checkpoint would write over "
            "each other's model and training state. Wait for that run to end (or stop it), or "
            "give this one another -o / out. A run that was killed holds no lock: if that "
            "process is gone, run again.")


@contextlib.contextmanager
def holding_output(out):
    """Hold the lock of checkpoint ``out`` (None: nothing to hold) while the body runs;
    :class:`TrainingOutputBusy` at once when another process holds it. Nested holds of one
    ``out`` in this process (the command line, then :func:`napari_sam.train`) are one. Where
    the lock cannot be made (no ``fcntl``, a folder that cannot be written: the run's own
    checks say so) the body runs without it."""
    from napari_sam.batch.jobs import OutputLock

    if out is None:
        yield
        return
    given = Path(out)  # its folder with links resolved: ``link/../m.pt`` is the kernel's file
    out = Path(os.path.realpath(given.parent)) / given.name
    lock = OutputLock(out)
    key = str(lock.path)
    with _GUARD:
        nested = key in _HELD
        if nested:
            _HELD[key] += 1
    if nested:
        try:
            yield
        finally:
            with _GUARD:
                _HELD[key] -= 1
        return
    made = [d for d in (out.parent, *out.parent.parents) if not d.exists()]
    try:
        locked = lock.__enter__()
    except OSError:  # the folder cannot be written: check_out refuses it
        yield
        return
    if not locked:
        raise TrainingOutputBusy(busy_message(given, lock.holder(), lock.holder_host()))
    with _GUARD:
        _HELD[key] = 1
    try:
        yield
    finally:
        with _GUARD:
            del _HELD[key]
        lock.__exit__(None, None, None)
        for d in made:  # the folders the lock made, where the run wrote nothing into them
            with contextlib.suppress(OSError):
                d.rmdir()
