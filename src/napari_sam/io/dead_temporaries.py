"""Files written under a name that says which process writes them (``.NAME.tmp-HOST-PID-NS``,
``.NAME.part-HOST-PID-NS``), and removing those that killed writers left behind.

A checkpoint save or a model download writes a hidden file beside its destination and
renames it into place when it is complete; a process killed meanwhile (SIGKILL, a power cut,
a closed laptop) leaves that file, which can take gigabytes. Its name tells whether its writer
can still be running: a file of this host and of this process's PID namespace (``NS``, the
inode of ``/proc/self/ns/pid``: two containers sharing the host name and the folder have
different ones, and each its own process 1) is dead once its process id runs no more; one of
another host sharing the folder (a cluster node), or of another PID namespace, once it was
last written :data:`FOREIGN_TEMPORARY_AGE` seconds ago. A writer also holds an exclusive
``flock`` on its file while it writes (:func:`hold_writer_lock`, :func:`writer_lock`): a file
whose lock is taken is never removed, whatever its name says (a writer in another container
whose process id looks dead here). Names without ``-NS`` (written before) are still
recognised; where there is no ``fcntl`` (Windows) the name alone decides, and a file of this
host counts as dead, as another host's, once unwritten for :data:`FOREIGN_TEMPORARY_AGE`
(whether its process runs cannot be asked there without harm).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import time
from collections.abc import Iterator
from pathlib import Path

from napari_sam.io.lock_errors import lock_is_held

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["FOREIGN_TEMPORARY_AGE", "hold_writer_lock", "host_tag", "is_running",
           "pid_namespace", "remove_dead", "remove_unless_held", "tagged_path", "writer_ended",
           "writer_lock"]

#: Seconds after its last write that a file of another host (a cluster node sharing the
#: folder), or of the older ``.NAME.tmp-PID`` form, counts as left by a killed writer: whether
#: its process runs cannot be asked from here, and a running writer writes it.
FOREIGN_TEMPORARY_AGE = 24 * 3600.0


def host_tag() -> str:
    """This machine's host name as it appears in :func:`tagged_path`: letters, digits,
    ``_`` and ``.`` only (``-`` separates the process id), at most 24 characters (a longer
    name is cut and ends with 8 hex digits of its sha1, so two long names stay apart)."""
    import hashlib
    import re
    import socket

    name = socket.gethostname() or "host"
    tag = re.sub(r"[^A-Za-z0-9_.]", "_", name)
    if len(tag) > 24:
        tag = f"{tag[:15]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return tag


@functools.lru_cache(maxsize=1)
def pid_namespace() -> str | None:
    """This process's PID namespace as it appears in :func:`tagged_path` (the inode number of
    ``/proc/self/ns/pid``), or None where there is none to read (not Linux)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


def tagged_path(path: Path, kind: str = "tmp") -> Path:
    """The hidden name this process writes ``path`` under before renaming it into place:
    ``.NAME.KIND-HOST-PID-NS`` (:func:`host_tag`, this process's id, :func:`pid_namespace`;
    ``.NAME.KIND-HOST-PID`` where the namespace cannot be read)."""
    ns = pid_namespace()
    return path.with_name(f".{path.name}.{kind}-{host_tag()}-{os.getpid()}"
                          + (f"-{ns}" if ns else ""))


def hold_writer_lock(fd: int) -> None:
    """Take an exclusive ``flock`` on the open file ``fd`` being written under a
    :func:`tagged_path` name, held until it is closed: :func:`remove_dead` then never removes
    it. Best effort: nothing where there is no ``fcntl`` or the file system refuses locks."""
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """Create ``path`` (a :func:`tagged_path` name) and hold :func:`hold_writer_lock` on it for
    the ``with`` block, for a writer that opens the file by its name (pooch's downloaders).
    Best effort: a file that cannot be created here is left to the writer to fail on."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
    except OSError:
        fd = None
    try:
        if fd is not None:
            hold_writer_lock(fd)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def writer_ended(pid: int, path: Path, now: float) -> bool:
    """Whether the writer of ``path``, process ``pid`` of this host and PID namespace, ended:
    its process runs no more; on Windows, where that cannot be asked harmlessly
    (:func:`is_running` says True for every process), once ``path`` was unwritten for
    :data:`FOREIGN_TEMPORARY_AGE`, as another host's (before, this host's files were kept
    for good there)."""
    if os.name == "nt":
        return now - path.stat().st_mtime >= FOREIGN_TEMPORARY_AGE
    return not is_running(pid)


def is_running(pid: int) -> bool:
    """Whether the process ``pid`` of this host runs (True when that cannot be told)."""
    if os.name == "nt" or pid == os.getpid():
        return True  # os.kill(pid, 0) sends Ctrl-C on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: another user's process
        return True
    return True


def _parse(tail: str) -> tuple[str, int, str | None] | None:
    """``(host, pid, namespace)`` of the part of a :func:`tagged_path` name after ``KIND-``:
    ``HOST-PID-NS``, ``HOST-PID`` (written before) or ``PID`` (older: no host); else None."""
    parts = tail.split("-")
    if len(parts) > 3 or not all(p.isdigit() for p in parts[1:] or parts):
        return None
    if len(parts) == 1:
        return "", int(parts[0]), None
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else None


def remove_unless_held(tmp: Path) -> bool:
    """Remove ``tmp`` unless a writer holds its lock (:func:`hold_writer_lock`); whether it
    was removed. Without ``fcntl``, or a file that cannot be opened to ask, it is removed.
    It is opened for writing where it may be (NFS grants an exclusive ``flock`` only on a
    descriptor open for writing: on one open for reading it failed with EBADF, taken as no
    locks, and a running writer's file was removed), else for reading. Which errors of
    ``flock`` say that a writer holds it: :func:`napari_sam.io.lock_errors.lock_is_held`."""
    fd = None
    if fcntl is not None:
        nonblock = getattr(os, "O_NONBLOCK", 0)  # (a FIFO: no wait)
        for mode in (os.O_RDWR, os.O_RDONLY):
            try:
                fd = os.open(tmp, mode | nonblock)
                break
            except PermissionError:  # (EACCES: not writable by this user) read-only, then
                continue
            except OSError:
                break
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if lock_is_held(exc):  # (EAGAIN, or EACCES where flock is fcntl's)
                    return False  # its writer runs (in another container, say)
                # no locks on this file system: the name decides
        tmp.unlink(missing_ok=True)
        return True
    finally:
        if fd is not None:
            os.close(fd)


def remove_dead(path: Path, kind: str = "tmp") -> list[Path]:
    """Remove the files :func:`tagged_path` names for ``path`` and ``kind`` whose writers are
    dead (see the module docstring; on Windows this host's too only by their age, as another
    host's: no harmless way to ask, :func:`writer_ended`); returns them. Files of another form, and files whose writer holds
    their lock, are never touched. Best effort: a file that cannot be looked at or removed
    (another user's in a shared cache folder with the sticky bit, mode 1777) is left and the
    others are still removed; this never raises ``OSError``."""
    here, ours, now, gone = host_tag(), pid_namespace(), time.time(), []
    prefix = f".{path.name}.{kind}-"
    try:
        found = list(path.parent.glob(f"{glob.escape(prefix)}*"))
    except OSError:
        return gone
    for tmp in found:
        parsed = _parse(tmp.name[len(prefix):])
        if parsed is None:
            continue
        host, pid, ns = parsed
        try:
            if not tmp.is_file():
                continue
            if host == here and ns in (None, ours):
                dead = writer_ended(pid, tmp, now)
            else:  # another host, or another PID namespace: its process cannot be asked
                dead = now - tmp.stat().st_mtime >= FOREIGN_TEMPORARY_AGE
            if dead and remove_unless_held(tmp):
                gone.append(tmp)
        except OSError:  # not ours to remove (EPERM, EACCES), gone, a stale NFS handle
            continue
    return gone
