"""Advisory ``flock`` locks on small marker files, shared by the session files' claims
(:mod:`.session_claims`) and the contrast stores' holds (:mod:`.contrast_stores`): a lock
file may be removed by its holder while another process opens it, so a lock is taken on the
file that is there once it is held. A file system that cannot lock (NFS without a lock
daemon: ``flock`` fails with ENOLCK; EOPNOTSUPP or ENOSYS where it has no ``flock``) is not
"held": :func:`napari_sam.io.lock_errors.lock_is_held` tells the two apart."""

from __future__ import annotations

import os
from pathlib import Path

from napari_sam.io.lock_errors import lock_is_held

__all__ = ["lock_flag", "open_locked"]


def lock_flag(name: str) -> int:
    """``fcntl``'s flag ``name`` (``"LOCK_SH"``, ``"LOCK_EX"``, ``"LOCK_NB"``); 0 where there
    is no ``fcntl`` (Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        return 0
    return getattr(fcntl, name)


def open_locked(path: Path, how: int, unlockable=None):
    """An open handle (``"a+"``) of ``path`` holding its ``flock`` (``how``: e.g.
    ``lock_flag("LOCK_SH")``, or ``LOCK_EX | LOCK_NB``), on the file at ``path`` now (a holder
    may remove it just before: the new one is locked then); False: another holds it (with
    ``LOCK_NB``); None: no ``flock`` here (no ``fcntl``, or the file cannot be made).

    ``unlockable``: where the file system cannot lock (:func:`lock_is_held` False), None
    gives False (as if held: the safe answer where only a lock proves a file unused); a
    callable is called with the ``OSError`` and the handle is returned open, not locked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: callers keep their in-process tables
        return None
    while True:
        try:
            handle = open(path, "a+", encoding="utf-8")
        except OSError:
            return None
        try:
            fcntl.flock(handle.fileno(), how)
        except OSError as exc:
            if unlockable is not None and not lock_is_held(exc):
                unlockable(exc)
                return handle
            handle.close()
            return False
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
        except OSError:
            same = False
        if same:
            return handle
        handle.close()
