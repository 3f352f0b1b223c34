"""The worker processes of a local dask cluster (``--workers N``), ended after the cluster
closed: through handles of their own, never a process that took a worker's id.

A worker still running seconds after the close is killed, but its process id may by then be
another process's (the worker ended meanwhile, and the system gave its id to a new
process). So a worker is held as an :class:`OwnProcess`: a pidfd on Linux (a signal sent
through it reaches that process only, or none once it has ended), elsewhere its id with the
start time the system records for it, checked again just before the signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from napari_sam.io.dead_temporaries import is_running


def process_runs(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not); True
    where that cannot be told (:func:`~napari_sam.io.dead_temporaries.is_running`: no
    signal is sent on Windows, where ``os.kill(pid, 0)`` is a Ctrl-C to the console)."""
    if not is_running(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS): as os.kill said
        return True


def start_time(pid: int) -> str | None:
    """When process ``pid`` started, as the system records it: with its id, what tells it
    from a later process given the same id. Linux: field 22 of ``/proc/PID/stat`` (clock
    ticks since boot); elsewhere ``ps -o lstart=`` (macOS, the BSDs: to the second). None
    when no process has that id or it cannot be told."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[19]
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # (a /proc without that process: it has ended)
    except (OSError, IndexError):
        return None
    try:
        done = subprocess.run(["ps", "-o", "lstart=", "-p", str(int(pid))], text=True,
                              capture_output=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


@dataclass
class OwnProcess:
    """A process this one may end (a local cluster's worker), known while it ran.

    Attributes
    ----------
    pid : int
        Its process id.
    started : str or None
        Its :func:`start_time` when the handle was made (None: not known).
    fd : int or None
        A pidfd of it (Linux 5.3 and later), else None.
    """

    pid: int
    started: str | None
    fd: int | None = None

    @classmethod
    def of(cls, pid: int) -> OwnProcess:
        """The handle of process ``pid``, which must run now (a worker its nanny says runs)."""
        fd = None
        with contextlib.suppress(AttributeError, OSError):  # (no pidfd here)
            fd = os.pidfd_open(int(pid))
        return cls(int(pid), start_time(pid), fd)

    def is_itself(self) -> bool:
        """Whether the process with id :attr:`pid` is this one (not a later process that
        the system gave that id); False where that cannot be told."""
        return self.started is not None and start_time(self.pid) == self.started

    def runs(self) -> bool:
        """Whether it runs (a zombie does not): never says so of another process."""
        if self.fd is not None:
            import select

            poller = select.poll()
            poller.register(self.fd, select.POLLIN)  # readable once the process has ended
            return not poller.poll(0)
        return process_runs(self.pid) and (self.started is None or self.is_itself())

    def kill(self) -> None:
        """SIGKILL to it, through its pidfd; without one, or where the system refuses a
        signal through it (a container's seccomp filter that allows ``pidfd_open`` but not
        ``pidfd_send_signal``: EPERM, ENOSYS), only when :meth:`is_itself` says its id is
        still its own (else nothing: no process is signalled that is not it)."""
        sig = getattr(signal, "SIGKILL", signal.SIGTERM)
        if self.fd is not None:
            try:
                signal.pidfd_send_signal(self.fd, sig)
                return
            except ProcessLookupError:  # it has ended
                return
            except OSError:  # refused: by its id, checked (was: not killed, silently)
                pass
        with contextlib.suppress(OSError):  # (it has ended)
            if self.is_itself():
                os.kill(self.pid, sig)

    def close(self) -> None:
        """Close its pidfd (once the handle is no longer needed)."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def worker_processes(cluster) -> list[OwnProcess]:
    """Handles of a local cluster's worker processes now (none for ``None``: a
    ``--scheduler``'s workers are not this machine's to end). Each handle is kept only when
    its nanny still says the worker runs once it is made (so it is the worker's, not that of
    a process that took the id of a worker that ended meanwhile); close them after use.
    None on Windows (:func:`end_worker_processes` ends none there)."""
    if os.name == "nt":
        return []
    handles = []
    for nanny in list(getattr(cluster, "workers", {}).values()):
        with contextlib.suppress(Exception):  # (a worker still starting, or gone)
            pid = nanny.pid
            if pid:
                handle = OwnProcess.of(pid)
                if nanny.pid == pid:
                    handles.append(handle)
                else:
                    handle.close()
    return handles


def end_worker_processes(workers: Iterable[OwnProcess], until: float) -> None:
    """Wait until the worker processes ``workers`` (:func:`worker_processes`, taken before
    the cluster was closed) have ended, up to ``until`` (a ``time.monotonic()`` deadline),
    then kill those still running and wait for them (a few seconds at most).

    Closing a cluster lets each worker finish the task it runs, then ends it; a close that
    timed out (a loaded machine) left them running, and a worker that finished a file after
    the summary was built wrote an output the summary called "not run". Once this returns
    no worker of this run writes anything: the summary, built after it, is the truth about
    every output the command leaves. A process that took the id of a worker that ended is
    neither waited for nor signalled (:class:`OwnProcess`). Not on Windows, where whether a
    process id runs cannot be told (it is not waited for, nor killed)."""
    if os.name == "nt":
        return
    left = [w for w in workers if w.runs()]
    while left and time.monotonic() < until:
        time.sleep(0.05)
        left = [w for w in left if w.runs()]
    for worker in left:
        worker.kill()
    killed = time.monotonic() + 5
    while left and time.monotonic() < killed:
        time.sleep(0.05)
        left = [w for w in left if w.runs()]
