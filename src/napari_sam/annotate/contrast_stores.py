"""The embedding stores of the layer's contrasts, bounded: those of the few most recent
contrasts are kept, older ones that this session made are deleted when no other live
session uses them.

With an Embedding store and the model seeing the layer's contrast, each contrast gets a store
of its own beside the user's (``emb.contrast-190-270.zarr``,
:meth:`~napari_sam.annotate.model_contrast.ModelContrast.contrast_store`), and none was ever
deleted: each rest of a dragged contrast slider left a store (a SAM 1 slice's features are
256 x 64 x 64 float16, 2 MB: 200 MB for a 100-slice stack, per contrast). A session now keeps
the stores of its :data:`KEEP_CONTRAST_STORES` most recent contrasts (the one in use among
them); an older one is deleted when this session made it (its folder did not exist when the
session first embedded with that contrast), it still is an embedding store and nothing
else (:func:`napari_sam.embeddings.is_embedding_store`), and no other live session uses it.

In use. Two docks (or two napari processes) on one Embedding store share its contrast stores:
one that made a store must not delete it while the other embeds there. A session holds the
stores of its few most recent contrasts (:class:`StoreHold`) until they leave them, or it
ends: within this process in a table (the sessions holding each store), for other processes
with a shared ``flock`` on a hidden marker file beside the store (``.<store>.in-use``; the
kernel lets it go when the process ends, also on a crash). Deleting takes the marker's
exclusive ``flock`` without waiting and skips the store when another session holds it (it is
tried again at the next contrast change). On a file system that cannot lock (NFS without a
lock daemon), where whether another process holds a store cannot be told, each process holding
it writes a marker of its own instead (``.<store>.in-use-HOST-PID-NS``,
:func:`~napari_sam.io.dead_temporaries.tagged_path`), removed when it lets go: the store is
deleted once no other process's marker is left, one of this host counting until its process
runs no more, another host's until unwritten for a day (each holder rewrites its markers
every :data:`MARKER_REFRESH` seconds) (before, every store there counted as
in use for good, and none was ever deleted). A ``.<store>.in-use`` marker such a process finds
there is left, and the store kept: a process of another host that can lock the file system
may hold it. The user's store (the stack's percentiles), stores
left by earlier sessions or other docks, and folders holding anything else are never deleted.

A job (an embedding, a propagation) holds the store it embeds into from its start until it
ends (:func:`held_while`): the session's few most recent contrasts may move on while it runs
(three contrast changes let the session's own hold go), and another session must not delete
the store under the job's writes.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import threading
import time
import weakref
from collections.abc import Generator
from pathlib import Path

from napari_sam.io.dead_temporaries import remove_dead, tagged_path

from .file_locks import lock_flag, open_locked

__all__ = ["KEEP_CONTRAST_STORES", "MARKER_REFRESH", "ContrastStores", "StoreHold", "held_while",
           "in_use_marker", "store_in_use"]

#: contrast stores kept: those of the most recent contrasts, the one in use among them
KEEP_CONTRAST_STORES = 3

_GUARD = threading.RLock()  # (re-entrant: a hold garbage-collected while it is held)
_IN_USE: dict[str, int] = {}  # absolute store -> holds of this process's sessions
_MARKED: set[str] = set()  # stores this process holds by a marker of its own (no locks)
_REFRESHER: list[threading.Thread] = []  # the thread rewriting those markers, while any

#: Seconds between rewrites of this process's own markers (a file system that cannot lock):
#: another host counts a marker unwritten for
#: :data:`~napari_sam.io.dead_temporaries.FOREIGN_TEMPORARY_AGE` (a day) as left by a
#: process that ended (before, a store held longer than that was deleted under it).
MARKER_REFRESH = 3600.0


def in_use_marker(store) -> Path:
    """The marker file whose shared ``flock`` says a live session uses ``store``:
    ``.<store name>.in-use`` beside it (not inside: a file there would make it no longer
    an embedding store and nothing else)."""
    store = Path(store)
    return store.with_name(f".{store.name}.in-use")


def _unlink_and_close(handle, marker: Path) -> None:
    """Remove ``marker`` while ``handle`` holds its exclusive ``flock``, then close it."""
    with contextlib.suppress(OSError):
        os.unlink(marker)
    with contextlib.suppress(OSError):
        handle.close()


def _write_own_marker(key: str) -> None:
    """Write (or rewrite: its time is now) this process's marker of the store ``key``."""
    with contextlib.suppress(OSError):
        _own_marker(key).write_text(f"{os.getpid()}\n", encoding="utf-8")


def _mark(key: str) -> None:
    """Hold the store ``key`` by this process's own marker: written now, and again every
    :data:`MARKER_REFRESH` seconds while it is held (a thread, ended once none is)."""
    with _GUARD:
        _write_own_marker(key)
        _MARKED.add(key)
        if not _REFRESHER:
            _REFRESHER.append(threading.Thread(target=_refresh_markers, daemon=True,
                                               name="napari-sam contrast store markers"))
            _REFRESHER[0].start()


def _refresh_markers() -> None:
    """Rewrite this process's markers every :data:`MARKER_REFRESH` seconds (one removed
    meanwhile is made again) until none is held."""
    while True:
        time.sleep(MARKER_REFRESH)
        with _GUARD:
            if not _MARKED:
                _REFRESHER.clear()
                return
            for key in _MARKED:
                _write_own_marker(key)


def _identity(marker: Path) -> tuple[int, int] | None:
    """Which file ``marker`` is now (inode, change time), None: none there."""
    try:
        st = os.lstat(marker)
    except OSError:
        return None
    return st.st_ino, st.st_ctime_ns


def _close_unlockable(handle, marker: Path, before: tuple[int, int] | None) -> bool:
    """Close ``handle`` of the shared marker ``marker``, opened where ``flock`` cannot lock
    for this process, and remove it when this process made it (not the file ``before``, of
    :func:`_identity` before it was opened: that one's holder removed it meanwhile). One that
    was there is left: a process of another host that can lock this file system (its lock
    daemon runs there) may hold its lock (before, it was removed and the store that process
    used was deleted). Returns whether it was left."""
    try:
        st = os.fstat(handle.fileno())
        existed = before == (st.st_ino, st.st_ctime_ns)
    except OSError:
        existed = before is not None
    if existed:
        with contextlib.suppress(OSError):
            handle.close()
    else:
        _unlink_and_close(handle, marker)
    return existed


def _let_go(key: str, handle) -> None:
    """End one hold of the store ``key``: out of the table, and its shared ``flock`` goes
    (the marker is removed too when nobody else holds it); the last hold of this process
    removes its own marker (a file system that cannot lock)."""
    with _GUARD:
        left = _IN_USE.get(key, 0) - 1
        if left > 0:
            _IN_USE[key] = left
        else:
            _IN_USE.pop(key, None)
            _MARKED.discard(key)
            with contextlib.suppress(OSError):
                _own_marker(key).unlink(missing_ok=True)
        if handle is None:
            return
        import fcntl

        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another holds it: it stays
            handle.close()
            return
        _unlink_and_close(handle, in_use_marker(key))


class StoreHold:
    """A live session's hold on the embedding store ``store``: while it is held
    (:meth:`release`, or until the hold is garbage-collected or its process ends), no other
    session deletes the store (:func:`store_in_use`)."""

    def __init__(self, store):
        self.key = str(Path(store).absolute())
        with _GUARD:
            marker = in_use_marker(self.key)
            before, unlockable = _identity(marker), []
            handle = open_locked(marker, lock_flag("LOCK_SH"), unlockable=unlockable.append)
            if unlockable:  # (open, not locked): this process's own marker says it instead
                _mark(self.key)
                _close_unlockable(handle, marker, before)
                handle = None
            _IN_USE[self.key] = _IN_USE.get(self.key, 0) + 1
        self._finalizer = weakref.finalize(self, _let_go, self.key, handle or None)

    @property
    def held(self) -> bool:
        return self._finalizer.alive

    def release(self) -> None:
        """Let the store go (twice: nothing more)."""
        self._finalizer()


def held_while(job: Generator, hold: StoreHold) -> Generator:
    """The job generator ``job``, ``hold`` let go once it ends: returned, failed, or closed
    (a cancelled job's runner closes it on the job's thread before the job counts as
    ended)."""
    try:
        return (yield from job)
    finally:
        hold.release()


def store_in_use(store) -> bool:
    """Whether a live session (of this process, or of another: the marker's ``flock``, tried
    without waiting) holds the store ``store``. Looking makes no file: a marker nobody holds
    (left by a process that ended) is removed."""
    key = str(Path(store).absolute())
    with _GUARD:
        if _IN_USE.get(key):
            return True
        return _held_elsewhere(in_use_marker(key)) or _marked_elsewhere(key)


def _open_existing(marker: Path):
    """``marker`` opened (for writing where allowed) without making it; None: not there."""
    for mode in ("rb+", "rb"):
        try:
            return open(marker, mode)
        except PermissionError:
            continue
        except OSError:
            return None
    return None


def _own_marker(key: str) -> Path:
    """This process's marker of the store ``key`` on a file system that cannot lock."""
    return tagged_path(Path(key), "in-use")


def _marked_elsewhere(key: str) -> bool:
    """On a file system that cannot lock: whether another process's marker of the store
    ``key`` is left, once those of processes that ended are removed
    (:func:`~napari_sam.io.dead_temporaries.remove_dead`: this host's whose process runs no
    more, another host's unwritten for a day). A folder that cannot be listed: True."""
    store = Path(key)
    remove_dead(store, "in-use")
    own = _own_marker(key).name
    try:
        return any(p.name != own for p in store.parent.glob(
            glob.escape(f".{store.name}.in-use-") + "*"))
    except OSError:
        return True


def _held_elsewhere(marker: Path) -> bool:
    """Whether another process holds the ``flock`` of the marker file ``marker``: its
    exclusive ``flock`` tried without waiting (holders share it), on the file there, which is
    never made (before: an empty marker was left beside every store looked at). A marker
    nobody holds is removed while locked, as its last holder removes it (one who opened it
    meanwhile locks it, sees it is gone and makes another)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the table of this process only
        return False
    while True:
        handle = _open_existing(marker)
        if handle is None:  # none there: nobody holds it
            return False
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held, or a file system that cannot lock for this process: a
            handle.close()  # process that can (another host's) may hold it
            return True
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(marker))
        except OSError:  # removed meanwhile by its last holder
            handle.close()
            return False
        if same:
            _unlink_and_close(handle, marker)
            return False
        handle.close()  # replaced meanwhile: the new one is tried


class ContrastStores:
    """The contrast stores a session used (most recent last), those it made, and its holds on
    the ``keep`` most recent ones.

    Parameters
    ----------
    keep : int
        How many of the most recent contrasts keep their store.
    """

    def __init__(self, keep: int = KEEP_CONTRAST_STORES):
        self.keep = max(1, int(keep))
        self._recent: list[str] = []
        self._made: set[str] = set()
        self._holds: dict[str, StoreHold] = {}
        #: the stores let go by the last :meth:`use` (their embeddings kept in memory are to
        #: be forgotten: another session may delete them now)
        self.let_go: list[Path] = []

    def use(self, store) -> list[Path]:
        """The session embeds with a contrast kept in ``store`` from now on (None: the
        stack's percentiles, in the user's store or none: nothing to count), and holds the
        stores of its ``keep`` most recent contrasts. Returns the stores this session made
        that are not among the ``keep`` most recent any more."""
        if store is not None:
            key = str(Path(store).absolute())
            if key in self._recent:
                self._recent.remove(key)
            elif not Path(key).exists():
                self._made.add(key)
            self._recent.append(key)
        kept = self._recent[-self.keep:]
        for key in kept:
            if key not in self._holds:
                self._holds[key] = StoreHold(key)
        self.let_go = [Path(k) for k in list(self._holds) if k not in kept]
        for key in self.let_go:
            self._holds.pop(str(key)).release()
        return [Path(p) for p in self._recent[: -self.keep] if p in self._made]

    def delete(self, store: Path) -> bool:
        """Delete ``store`` (one :meth:`use` returned) when it still is an embedding store
        and nothing else and no other live session holds it, and forget it; returns whether
        it was deleted. One in use is kept, and tried again at the next :meth:`use`."""
        key = str(Path(store).absolute())
        marker = in_use_marker(key)
        with _GUARD:
            if _IN_USE.get(key):
                return False
            before, unlockable = _identity(marker), []
            handle = open_locked(marker, lock_flag("LOCK_EX") | lock_flag("LOCK_NB"),
                                 unlockable=unlockable.append)
            if unlockable:  # (open, not locked): whether another process holds it is
                if _close_unlockable(handle, marker, before):  # told by the markers alone;
                    return False  # one there: a process that can lock may hold it
                handle = None
            if handle is False or _marked_elsewhere(key):
                if handle:
                    _unlink_and_close(handle, marker)
                return False
            try:
                if key in self._recent:
                    self._recent.remove(key)
                self._made.discard(key)
                from napari_sam.embeddings import is_embedding_store  # (torch)

                if not is_embedding_store(store):
                    return False
                shutil.rmtree(store, ignore_errors=True)
                return not Path(store).exists()
            finally:
                if handle is not None:
                    _unlink_and_close(handle, marker)

    def release(self) -> None:
        """Let every store go (the session ends): other sessions may delete them now."""
        for hold in self._holds.values():
            hold.release()
        self._holds.clear()
