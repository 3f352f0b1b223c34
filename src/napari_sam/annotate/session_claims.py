"""Which live annotation session autosaves into a session file: one at a time.

Two docks on one image file (two napari windows, a dock closed and opened again while the
first one's session lives, two viewers of one script) autosaved the same session file, each
over the other's log: at each commit one kept the other's file aside under a dated name and
replaced it, so each dock's commits were scattered over dated copies and resume found only
the last writer's. An autosave now writes a session file only while it holds the file's
claim (:func:`claim_session_file`): an exclusive ``flock`` on a hidden lock file beside it
(``.<session file>.lock``, removed when the claim is let go), held from the first autosave
until the session lets it go (:meth:`SessionClaim.release`; the dock does when it closes) or
its process ends (the kernel releases it, also on a crash or ``kill -9``). Within one process
the claims are also kept in a table, so that two sessions of one process exclude each other
where ``flock`` does not (NFS turns it into a per-process lock; Windows has none: there the
table alone works). A session whose file is claimed autosaves in an alternate file beside it,
``<image>.session-2.sam-session.json`` (:func:`alternate_session_file`), and says so.
Resume leaves out the files other live sessions hold (:meth:`SessionClaims.taken`, which
tries another process's lock without waiting: :func:`claimed`); a session resumed from one
holds it from then on (:meth:`SessionClaims.hold`), an alternate too.

A file system that cannot lock (NFS without a lock daemon: ``flock`` fails with ENOLCK;
EOPNOTSUPP, ENOSYS) cannot tell whether another process holds a claim: a session there
claims its file within this process only (its lock file is still written, and removed when
it lets go), no file there reads as another process's, a lock file left there reads as
"cannot tell" (:func:`claim_known`: the offer to resume says so, or that napari ended
unexpectedly when the lock file names a process of this host that runs no more), and a
warning says so once per file system (before, any ``flock``
error read as held: every autosave there was refused, and its session never offered again).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import warnings
import weakref
from pathlib import Path

from napari_sam.io.dead_temporaries import pid_namespace
from napari_sam.io.lock_errors import lock_error_text, lock_is_held

from .file_locks import lock_flag, open_locked

__all__ = ["SessionClaim", "alternate_session_file", "alternate_session_files",
           "claim_holder", "claim_known", "claim_session_file", "claimed", "lock_file_for",
           "lock_owner", "used_here"]

#: alternates tried when a session file is claimed: ``.session-2`` to ``.session-<N>``
MAX_ALTERNATES = 20
_SUFFIX = ".sam-session.json"
_GUARD = threading.Lock()
_HELD: dict[str, weakref.ref] = {}  # absolute session file -> its claim, in this process
_UNLOCKABLE_NOTED: set[str] = set()  # file systems (devices) that cannot lock, said once
_LIVE_CLAIMS: weakref.WeakSet = weakref.WeakSet()  # every SessionClaims of this process


def lock_file_for(path: Path) -> Path:
    """The lock file of the session file ``path``: ``.<name>.lock`` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def _alternate_stem(path: Path) -> str:
    """The start of the names of the alternates of the session file ``path``: its name
    without ``.sam-session.json``, fitted (:func:`napari_sam.session.fit_file_name`) so that
    an alternate's names fit a file name: a session saved under an image's whole name of
    191-201 bytes (before names were fitted) gets the alternates of its fitted name (before:
    its labels' temporary file had 256-266 bytes, "File name too long")."""
    from napari_sam.session import fit_file_name

    stem = path.name[: -len(_SUFFIX)] if path.name.endswith(_SUFFIX) else path.stem
    return fit_file_name(stem)


def alternate_session_file(path: Path, n: int) -> Path:
    """The ``n``-th (2, 3, ...) alternate of the session file ``path`` (``<image>.sam-session
    .json`` -> ``<image>.session-<n>.sam-session.json``), where a session autosaves while
    ``path`` is another live session's."""
    path = Path(path)
    return path.with_name(f"{_alternate_stem(path)}.session-{n}{_SUFFIX}")


def alternate_session_files(path: Path) -> list[Path]:
    """The alternates of the session file ``path`` that exist (their order: by number)."""
    path = Path(path)
    stem = _alternate_stem(path)
    pattern = re.compile(re.escape(stem) + r"\.session-(\d+)" + re.escape(_SUFFIX))
    try:
        names = [(int(m.group(1)), p) for p in path.parent.iterdir()
                 if (m := pattern.fullmatch(p.name))]
    except OSError:
        return []
    return [p for _, p in sorted(names) if p.is_file()]


class SessionClaim:
    """A session's claim on one session file (:func:`claim_session_file`): held until
    :meth:`release`, or until the claim is garbage-collected or its process ends.

    Attributes
    ----------
    path : Path
        The session file claimed.
    """

    def __init__(self, path: Path, key: str, handle):
        self.path = path
        self._key = key
        self._handle = handle
        self._finalizer = weakref.finalize(self, _let_go, handle, lock_file_for(path))

    @property
    def held(self) -> bool:
        """Whether the claim is still held (not released)."""
        return self._finalizer.alive

    def release(self) -> None:
        """Let the file go: another session may claim it now (twice: nothing more)."""
        with _GUARD:
            ref = _HELD.get(self._key)
            if ref is not None and ref() is self:
                del _HELD[self._key]
            self._finalizer()


def claim_session_file(path: Path) -> SessionClaim | None:
    """Claim the session file ``path`` for the calling session; None when another live
    session holds it (in this process or another). A lock file that cannot be made (a
    read-only folder: the autosave falls back anyway; another user's, not writable here, is
    still tried read-only) or locked (a file system that cannot lock: said once) gives a
    claim within this process only."""
    path = Path(path)
    key = str(path.absolute())
    with _GUARD:
        ref = _HELD.get(key)
        if ref is not None and ref() is not None and ref().held:
            return None
        handle = _flock(lock_file_for(path))
        if handle is False:
            return None
        claim = SessionClaim(path, key, handle)
        _HELD[key] = weakref.ref(claim)
        return claim


def claimed(path: Path) -> bool:
    """Whether a live session (of this process, or of another: the ``flock`` of its lock file,
    tried without waiting) holds the claim on the session file ``path``. A lock file left by
    a process that ended is not held, nor one on a file system that cannot lock (whether
    another process holds it cannot be told: said once)."""
    return claim_known(path) is True


def claim_known(path: Path) -> bool | None:
    """:func:`claimed`, or None where that cannot be told: the lock file of ``path`` is there
    on a file system that cannot lock (said once), and no session of this process holds it
    (another napari may, or one that ended without closing it left the file)."""
    path = Path(path)
    with _GUARD:  # (no claim of this process is made while the lock is tried)
        ref = _HELD.get(str(path.absolute()))
        if ref is not None and ref() is not None and ref().held:
            return True
        return _lock_state(lock_file_for(path))


def used_here(path: Path) -> bool:
    """Whether a live session of this process has autosaved in, or resumed from, the session
    file ``path``, its claim held or let go since (another image picked in its dock: the
    session's labels and log are still open, and it goes on there when the image is picked
    again). What a clean-up of session files must leave, with :func:`claimed`."""
    with _GUARD:
        sessions = list(_LIVE_CLAIMS)
    return any(s.used(path) for s in sessions)


def _locked(lock: Path, unreadable: bool = False) -> bool:
    """Whether another open handle holds the ``flock`` of the file ``lock`` (not made);
    ``unreadable``: the answer when it is there but cannot be opened (another user's)."""
    return _lock_state(lock, unreadable) is True


def _lock_state(lock: Path, unreadable: bool = False) -> bool | None:
    """:func:`_locked`, None where the file system cannot lock (said once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the table of this process only
        return False
    try:
        handle = open(lock, encoding="utf-8")
    except FileNotFoundError:  # none there: nobody holds it
        return False
    except OSError:
        return unreadable
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if lock_is_held(exc):
                return True
            _note_unlockable(lock.parent, exc)
            return None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return False


def claim_holder(path: Path) -> str:
    """Who holds the claim on the session file ``path``, in words: "another dock of this
    napari", or "napari-sam process 1234 on host" (as its lock file says)."""
    path = Path(path)
    with _GUARD:
        ref = _HELD.get(str(path.absolute()))
        if ref is not None and ref() is not None and ref().held:
            return "another dock (or session) of this napari"
    owner = lock_owner(path)
    if owner is None:
        return "another napari-sam process"
    pid, host, _ = owner
    where = f" on {host}" if host and host != socket.gethostname() else ""
    return f"napari-sam process {pid}{where}"


def lock_owner(path: Path) -> tuple[int, str, str | None] | None:
    """``(pid, host, pid_namespace)`` of the process the lock file of the session file
    ``path`` names (``<pid> <host> <namespace>``; the namespace, of
    :func:`~napari_sam.io.dead_temporaries.pid_namespace`, is None in a file written before
    it was recorded, or where there is none); None: no such file, or not of that form."""
    try:
        words = lock_file_for(Path(path)).read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    if not words or not words[0].isdigit():
        return None
    host = words[1] if len(words) > 1 else ""
    return int(words[0]), host, words[2] if len(words) > 2 else None


def _flock(lock: Path):
    """An open handle of ``lock`` holding its exclusive ``flock``, with this process's id and
    host in it (not locked where the file system cannot lock); False: another process holds
    it; None: no lock here (no ``fcntl``, or the lock file cannot be made or written: then
    one that another process holds, as another user's in a shared folder, still gives
    False)."""
    handle = open_locked(lock, lock_flag("LOCK_EX") | lock_flag("LOCK_NB"),
                         unlockable=lambda exc: _note_unlockable(lock.parent, exc))
    if handle is None and _locked(lock, unreadable=True):  # (another user's: it still counts)
        return False
    if not handle:
        return handle
    with contextlib.suppress(OSError):
        handle.seek(0)
        handle.truncate()
        ns = pid_namespace()  # (two containers of one host name: which one's process)
        handle.write(f"{os.getpid()} {socket.gethostname()}" + (f" {ns}" if ns else "") + "\n")
        handle.flush()
    return handle


def _note_unlockable(folder: Path, exc: OSError) -> None:
    """Warn once per file system that the one of ``folder`` cannot lock files (``exc``: the
    error of ``flock``), so that two napari autosaving one session there are not kept apart
    (once per folder, it came again for each image without a file: each autosaves in a
    folder of its own under the cache folder)."""
    try:
        key = f"device {os.stat(folder).st_dev}"
    except OSError:
        key = str(Path(folder).absolute())
    if key in _UNLOCKABLE_NOTED:
        return
    _UNLOCKABLE_NOTED.add(key)
    warnings.warn(f"The file system of {folder} cannot lock files ({lock_error_text(exc)}): "
                  "napari-sam cannot tell whether another napari autosaves a session there, "
                  "and autosaves there without a lock: open each image in one napari at a "
                  "time.", stacklevel=2)


def _let_go(handle, lock: Path) -> None:
    """Remove the lock file while its ``flock`` is held (one who opened it meanwhile locks
    it, sees it is gone and opens the new one), then close it (the ``flock`` goes)."""
    if handle is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(lock)
    with contextlib.suppress(OSError):
        handle.close()


class SessionClaims:
    """The claims of one session's autosaves (thread-safe: writes run on the autosave
    worker, :meth:`release` on the UI thread).

    :meth:`writable` before each write, :meth:`done` after it; :meth:`release` lets every
    file go, at once when no write is under way, else when it ends (the dock closing does
    not wait for a write of large labels); a write asked for later (:meth:`resume`) claims
    and keeps its file again.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._held: dict[str, SessionClaim] = {}
        # while a write is under way: the claims it moved away from (let go once it wrote,
        # kept when it failed: the file they guard still holds the last autosave) and those
        # it took anew
        self._moved_from: dict[str, SessionClaim] = {}
        self._fresh: set[str] = set()
        self._busy = False
        self._closing = False
        # every session file this session has autosaved in or resumed from, while it lives
        # (also after it let the claim go: another image picked, the dock closed)
        self._used: set[str] = set()
        with _GUARD:
            _LIVE_CLAIMS.add(self)

    def used(self, path: Path) -> bool:
        """Whether this session has autosaved in, or resumed from, the session file
        ``path`` (its claim held or not)."""
        with self._lock:
            return str(Path(path).absolute()) in self._used

    def use(self, path: Path) -> None:
        """Count the session file ``path`` as used by this session (:meth:`used`) without
        claiming it: resumed while autosave is off (no claim until it autosaves)."""
        with self._lock:
            self._used.add(str(Path(path).absolute()))

    def writable(self, path: Path) -> Path:
        """``path`` or the alternate of it (:func:`alternate_session_file`) this session
        holds the claim of, else the first of them whose claim it gets; claims of other
        files are let go (the session's image changed). Raises ``FileExistsError`` when
        every alternate is claimed too."""
        candidates = [Path(path)] + [alternate_session_file(path, n)
                                     for n in range(2, MAX_ALTERNATES + 1)]
        with self._lock:
            self._busy = True
            held = [c for c in candidates
                    if (h := self._held.get(str(c.absolute()))) is not None and h.held]
            for candidate in held[:1] or candidates:  # (an alternate held stays in use)
                key = str(candidate.absolute())
                claim = self._held.get(key)
                if claim is None or not claim.held:
                    claim = claim_session_file(candidate)
                    if claim is not None:
                        self._fresh.add(key)
                if claim is not None:
                    for other in [k for k in self._held if k != key]:
                        self._moved_from[other] = self._held.pop(other)
                    self._held[key] = claim
                    self._used.add(key)
                    return candidate
        raise FileExistsError(f"{path} and its alternates up to "
                              f"{alternate_session_file(path, MAX_ALTERNATES).name} are all "
                              "being written by other napari-sam sessions")

    def holds(self, path: Path) -> bool:
        """Whether this session holds the claim on the session file ``path``."""
        with self._lock:
            claim = self._held.get(str(Path(path).absolute()))
            return claim is not None and claim.held

    def taken(self, path: Path) -> bool:
        """Whether another live session holds the claim on the session file ``path`` (its
        log goes on there: resuming it too would fork that log into two files)."""
        return not self.holds(path) and claimed(path)

    def hold(self, path: Path) -> bool:
        """Claim the session file ``path`` and keep it (a session resumed from it: its
        autosaves go on there, also in an alternate), letting any other file go; False when
        another live session holds it."""
        key = str(Path(path).absolute())
        with self._lock:
            self._closing = False
            claim = self._held.get(key)
            if claim is None or not claim.held:
                claim = claim_session_file(path)
            if claim is None:
                return False
            for other in [k for k in self._held if k != key]:
                self._held.pop(other).release()
            self._held[key] = claim
            self._used.add(key)
            return True

    def done(self, written: bool = True) -> None:
        """The write after :meth:`writable` ended: the claims it moved away from are let go
        when it ``written``; else they are kept, and those it took anew let go (a write to the
        cache folder that failed too, a full disk: the file beside the image still holds
        the last autosave, and its lock file stays, so that a napari killed now is said to
        have ended unexpectedly)."""
        with self._lock:
            if written:
                for claim in self._moved_from.values():
                    claim.release()
            else:
                for key in self._fresh & set(self._held):
                    self._held.pop(key).release()
                self._held.update(self._moved_from)
            self._moved_from, self._fresh = {}, set()
            self._busy = False
            if self._closing:
                self._let_all_go()

    def release(self) -> None:
        """Let every file go (when the write under way ends)."""
        with self._lock:
            self._closing = True
            if not self._busy:
                self._let_all_go()

    def resume(self) -> None:
        """A write asked for after :meth:`release`: its claims are kept again."""
        with self._lock:
            self._closing = False

    def _let_all_go(self) -> None:
        for claim in [*self._held.values(), *self._moved_from.values()]:
            claim.release()
        self._held.clear()
        self._moved_from.clear()
