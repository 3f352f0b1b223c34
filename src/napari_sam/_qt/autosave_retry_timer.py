"""The dock's timer that writes a failed autosave again on its own
(:mod:`napari_sam.annotate.autosave_retry`: after a full disk, a folder made read-only, a
share gone away), with the session's back-off, until a write succeeds or autosave is
unticked."""

from __future__ import annotations

from qtpy.QtCore import Qt, QTimer

from napari_sam.annotate.autosave_retry import RETRY_EARLY_S

__all__ = ["retry_failed_autosaves"]


def retry_failed_autosaves(session, links: list) -> QTimer:
    """Arm a single-shot timer for ``session``'s (an ``AnnotationSession``) next retry of a
    failed autosave whenever its status line changes (a failure says so there; a commit's
    retry moves the next one later), and stop it when the retry is not wanted any more;
    ``links``: the dock's (signal, slot) pairs, undone when it closes (the timer then calls
    nothing). A timeout before the retry is due (Qt's coarse timers of 20 s or more fire on
    a whole second, up to about 1 s early) arms the timer again for the time left."""
    timer = QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(Qt.TimerType.PreciseTimer)

    def arm(_text=None) -> None:
        due = session.autosave_retry_in()
        if due is None:
            timer.stop()
        else:
            timer.start(int(due * 1000) + 1)

    def fire() -> None:
        due = session.autosave_retry_in()
        if due is not None and due > RETRY_EARLY_S:  # early: the retry would do nothing
            timer.start(int(due * 1000) + 1)
        else:
            session.retry_autosave()

    timer.timeout.connect(fire)
    session.status_changed.connect(arm)
    links.append((session.status_changed, arm))
    links.append((timer.timeout, fire))
    return timer
