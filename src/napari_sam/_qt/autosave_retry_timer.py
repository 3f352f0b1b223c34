"""The dock's timer that writes a failed autosave again on its own
(:mod:`napari_sam.annotate.autosave_retry`: after a full disk, a folder made read-only, a
share gone away), with the session's back-off, until a write succeeds or autosave is
unticked."""

from __future__ import annotations

from qtpy.QtCore import QTimer

__all__ = ["retry_failed_autosaves"]


def retry_failed_autosaves(session, links: list) -> QTimer:
    """Arm a single-shot timer for ``session``'s (an ``AnnotationSession``) next retry of a
    failed autosave whenever its status line changes (a failure says so there; a commit's
    retry moves the next one later), and stop it when the retry is not wanted any more;
    ``links``: the dock's (signal, slot) pairs, undone when it closes (the timer then calls nothing)."""
    timer = QTimer()
    timer.setSingleShot(True)

    def arm(_text=None) -> None:
        due = session.autosave_retry_in()
        if due is None:
            timer.stop()
        else:
            timer.start(int(due * 1000) + 1)

    timer.timeout.connect(session.retry_autosave)
    session.status_changed.connect(arm)
    links.append((session.status_changed, arm))
    links.append((timer.timeout, session.retry_autosave))
    return timer
