"""A session whose napari ended without closing it (``kill -9``, a crash, the OOM killer, a
power cut), and what the offer to resume it says.

The offer to resume after napari was killed read as after any other session ("A saved
session exists for this image (8 commits, ...)"): nothing said that napari had ended without
saving, nor how much of the work only the autosave holds. A live session holds a ``flock`` on
``.<session file>.lock`` beside its autosave (:mod:`napari_sam.annotate.session_claims`); a
dock closed, or napari quit, removes that file, but a napari that ended otherwise leaves it,
unlocked: :func:`ended_without_closing`. The autosave records the last *Save session...* of
its log (``settings.last_saved_as``: the file, when, and how many commits it held;
:class:`LastSave`), so the offer can say how many commits only the autosave holds
(:func:`ended_words`). Undo moves commits out of the log: the record also says how many of
the log's first commits are still the saved ones (``kept``), so the count stays right after
an undo (it said "none was saved", or too few commits, before).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from napari_sam import session as S
from napari_sam.words import counted

from .session_claims import claim_known, lock_file_for, lock_owner

__all__ = ["LastSave", "ended_without_closing", "ended_words", "maybe_open_elsewhere",
           "maybe_open_words"]


def ended_without_closing(path: Path) -> bool:
    """Whether the napari that last autosaved the session file ``path`` ended without
    closing its session: its lock file is there and no live session holds it. On a file
    system that cannot lock (:func:`~napari_sam.annotate.session_claims.claim_known` None):
    only when the lock file names a process of this host that runs no more."""
    try:
        known = claim_known(Path(path)) if lock_file_for(Path(path)).is_file() else True
    except OSError:
        return False
    return known is False or (known is None and _writer_gone(Path(path)) is True)


def maybe_open_elsewhere(path: Path) -> bool:
    """Whether another napari may have the session file ``path`` open now, which cannot be
    told: its lock file is there on a file system that cannot lock, no session of this
    process holds it, and the process it names is not one of this host that ended."""
    try:
        return (lock_file_for(Path(path)).is_file() and claim_known(Path(path)) is None
                and _writer_gone(Path(path)) is not True)
    except OSError:
        return False


def _writer_gone(path: Path) -> bool | None:
    """Whether the process the lock file of ``path`` names (``<pid> <host> <namespace>``)
    has ended: True or False for one of this host and PID namespace (or of this host, in a
    lock file written before namespaces were recorded), None for another host's or
    namespace's (a container of the same host name: its process ids are not this one's), or
    a file unread."""
    import socket

    from napari_sam.io.dead_temporaries import is_running, pid_namespace

    owner = lock_owner(path)
    if owner is None or owner[1] != socket.gethostname() or owner[2] not in (
            None, pid_namespace()):
        return None
    return not is_running(owner[0])


def maybe_open_words(session: S.Session, path: Path) -> str:
    """What the offer to resume ``session`` (autosaved in ``path``) says first where
    :func:`maybe_open_elsewhere`: that napari-sam cannot tell whether another napari has it
    open, why, and what to do."""
    when = S.local_time(session.saved) if session.saved else "an unknown time"
    return (f"napari-sam cannot tell whether another napari has this session open (the file "
            f"system of {Path(path).parent} cannot lock files; its last autosave was at "
            f"{when}, by {_lock_owner(path)}): resume it only if no other napari has this "
            "image open (otherwise both autosave into one file)")


def _lock_owner(path: Path) -> str:
    owner = lock_owner(path)
    return f"process {owner[0]} on {owner[1]}" if owner and owner[1] else "another napari"


def ended_words(session: S.Session) -> str:
    """What the offer to resume ``session`` (an autosave whose napari ended without closing
    it) says first: when, and how many of its commits were made since the last *Save
    session...* of its log (all of them when there was none), which resuming recovers."""
    ops = len(session.operations)
    when = S.local_time(session.saved) if session.saved else "an unknown time"
    mark = (session.settings or {}).get("last_saved_as")
    head = (f"napari ended unexpectedly (killed or crashed; its last autosave was at {when}) "
            "without closing this session")
    if isinstance(mark, dict) and isinstance(mark.get("commits"), int) and (
            0 <= mark["commits"]):
        kept = mark.get("kept", mark["commits"])  # (autosaves before "kept": no undo known)
        if isinstance(kept, int) and 0 <= kept <= min(ops, mark["commits"]):
            saved = Path(str(mark.get("path"))).name + (  # (a file loaded may have no time)
                f" at {S.local_time(mark['saved'])}" if mark.get("saved") else "")
            undone = mark["commits"] - kept
            undo = f", {counted(undone, 'commit')} of it undone" if undone else ""
            return (f"{head}: {counted(ops - kept, 'commit')} since the last save ('Save "
                    f"session' to {saved}{undo}) can be recovered")
    return (f"{head}: {counted(ops, 'commit')} since the last save (none was saved with "
            "'Save session') can be recovered")


class LastSave:
    """The last *Save session...* of the log, recorded in its autosaves (a mixin of
    :class:`~napari_sam.annotate.annotation_session.AnnotationSession`, before
    :class:`~napari_sam.annotate.session_log.SessionLog`)."""

    _last_save: tuple[int, dict] | None = None  # (log generation, its record)
    _saved_ops: list = []  # the log's commits that the last save holds (the same objects)

    def save_session(self, path) -> Path:
        written = super().save_session(path)
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._last_save = (self._log_generation, {
            "path": str(Path(written).absolute()), "commits": len(self.log), "saved": now})
        self._saved_ops = list(self.log)
        return written

    def load_session(self, path) -> S.Session:
        """A resumed autosave (``*.sam-session.json``) carries its last save on; any other
        file loaded is that last save itself."""
        sess = super().load_session(path)
        mark = (sess.settings or {}).get("last_saved_as")
        if not Path(path).name.endswith(S.SESSION_FILE_SUFFIX):
            mark = {"path": str(Path(path).absolute()), "commits": len(sess.operations),
                    "saved": sess.saved}
        self._last_save = (self._log_generation, mark) if isinstance(mark, dict) else None
        kept = mark.get("kept", mark.get("commits")) if isinstance(mark, dict) else 0
        self._saved_ops = list(self.log[:kept]) if isinstance(kept, int) and kept > 0 else []
        return sess

    def session_state(self, copy=None) -> S.Session:
        state = super().session_state(copy)
        if self._last_save is not None and self._last_save[0] == self._log_generation:
            state.settings = {**state.settings, "last_saved_as": {
                **self._last_save[1], "kept": self._kept_commits()}}
        return state

    def _kept_commits(self) -> int:
        """How many of the log's first commits are still those of the last save (an undo
        moves commits out of the log, a commit after it replaces them)."""
        kept = 0
        for op, saved in zip(self.log, self._saved_ops):
            if op is not saved:
                break
            kept += 1
        return kept
