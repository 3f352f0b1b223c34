"""Files written under a name that says which process writes them (``.NAME.tmp-HOST-PID``,
``.NAME.part-HOST-PID``), and removing those that killed writers left behind.

A checkpoint save or a model download writes a hidden file beside its destination and
renames it into place when it is complete; a process killed meanwhile (SIGKILL, a power cut,
a closed laptop) leaves that file, which can take gigabytes. Its name tells whether its writer
can still be running: a file of this host is dead once its process id runs no more; one of
another host sharing the folder (a cluster node, a container) once it was last written
:data:`FOREIGN_TEMPORARY_AGE` seconds ago.
"""

from __future__ import annotations

import glob
import os
import time
from pathlib import Path

__all__ = ["FOREIGN_TEMPORARY_AGE", "host_tag", "is_running", "remove_dead", "tagged_path"]

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


def tagged_path(path: Path, kind: str = "tmp") -> Path:
    """The hidden name this process writes ``path`` under before renaming it into place:
    ``.NAME.KIND-HOST-PID`` (:func:`host_tag`, this process's id)."""
    return path.with_name(f".{path.name}.{kind}-{host_tag()}-{os.getpid()}")


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


def remove_dead(path: Path, kind: str = "tmp") -> list[Path]:
    """Remove the files :func:`tagged_path` names for ``path`` and ``kind`` whose writers are
    dead (see the module docstring; all of this host are kept on Windows: no harmless way to
    ask); returns them. Files of another form are never touched. Best effort: a file that
    cannot be looked at or removed (another user's in a shared cache folder with the sticky
    bit, mode 1777) is left and the others are still removed; this never raises ``OSError``."""
    here, now, gone = host_tag(), time.time(), []
    prefix = f".{path.name}.{kind}-"
    try:
        found = list(path.parent.glob(f"{glob.escape(prefix)}*"))
    except OSError:
        return gone
    for tmp in found:
        host, _, pid = tmp.name[len(prefix):].rpartition("-")
        if not pid.isdigit():
            continue
        try:
            if not tmp.is_file():
                continue
            if host == here:
                dead = not is_running(int(pid))
            else:
                dead = now - tmp.stat().st_mtime >= FOREIGN_TEMPORARY_AGE
            if dead:
                tmp.unlink(missing_ok=True)
                gone.append(tmp)
        except OSError:  # not ours to remove (EPERM, EACCES), gone, a stale NFS handle
            continue
    return gone
