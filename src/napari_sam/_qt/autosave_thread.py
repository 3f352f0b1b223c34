"""The dock's autosaves of large labels are written on a worker thread
(:mod:`napari_sam.annotate.autosave_writer`); what a write has to say (a failure, a file kept
aside) comes back to the UI thread through a queued Qt signal, and
napari quitting waits for the write under way (:func:`write_autosaves_in_background`)."""

from __future__ import annotations

import weakref

from qtpy.QtCore import QCoreApplication, QObject, Signal, Slot

from napari_sam._qt.terminate_saves import save_on_terminate

__all__ = ["OnUndo", "UiRelay", "write_autosaves_in_background"]


class UiRelay(QObject):
    """Runs callables on the thread it was made on (napari's UI thread): :meth:`post` from
    any thread; a call posted after Qt deleted it (napari quit meanwhile) is dropped."""

    _call = Signal(object)

    def __init__(self):
        super().__init__()
        self._call.connect(self._run)  # queued when emitted from another thread

    def post(self, fn) -> None:
        try:
            self._call.emit(fn)
        except RuntimeError:  # "wrapped C/C++ object ... deleted": nobody to tell
            pass

    @Slot(object)
    def _run(self, fn) -> None:
        fn()


class OnUndo:
    """Stands for a signal in a dock's links ((signal, slot) pairs, undone with
    ``signal.disconnect(slot)`` when the dock closes or napari deletes it): undoing it calls
    ``fn()``, once."""

    def __init__(self, fn):
        self._fn = fn

    def disconnect(self, _slot=None) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def write_autosaves_in_background(session, links: list, checkbox=None) -> None:
    """Write ``session``'s (an ``AnnotationSession``) large autosaves on its writer's worker
    thread, with news posted to this (the UI) thread; napari quitting waits for them.

    Parameters
    ----------
    session : AnnotationSession
        The dock's session (its ``autosave_writer`` gets a ``post``).
    links : list
        The dock's (signal, slot) pairs, disconnected when the dock closes: the handler of
        napari's ``aboutToQuit`` is added to them, so that a dock holds one while it is open
        (docks opened and closed again left theirs connected; a closed dock's worker is not
        a daemon thread, so Python still finishes its write before the process exits).
        The session's claims on its session files are let go when they are undone
        (:class:`OnUndo`): a dock opened again goes on in the file the closed one wrote.
    checkbox : QCheckBox, optional
        The dock's Autosave box: unticked when autosave turns itself off (a write failed;
        the status line says so), so that it does not say autosave is on; ticked again, the
        session is autosaved at once (:meth:`~napari_sam.annotate.session_log.SessionLog.
        autosave_on_again`).
    """
    session.autosave_writer.post = UiRelay().post  # (the writer keeps the relay alive)
    save_on_terminate(session)  # SIGTERM (a logout, `kill PID`) saves before napari ends
    from napari_sam._qt.autosave_retry_timer import retry_failed_autosaves

    retry_failed_autosaves(session, links)  # a failed autosave is written again on its own
    # the dock closing lets its session files go: another dock may autosave there now
    links.append((OnUndo(session.release_session_file), None))
    if checkbox is not None:
        def follow(_text) -> None:
            checkbox.setChecked(bool(session.autosave))

        def ticked(on: bool) -> None:  # (after the box's own slot set autosave)
            if on:
                session.autosave_on_again()  # what was committed meanwhile: written now

        session.status_changed.connect(follow)
        links.append((session.status_changed, follow))
        checkbox.toggled.connect(ticked)
        links.append((checkbox.toggled, ticked))
    app = QCoreApplication.instance()
    if app is None:
        return
    ref = weakref.ref(session)  # (the application must not keep a dock's session alive)

    def wait_on_quit() -> None:
        alive = ref()
        if alive is not None:
            alive.wait_autosave()

    app.aboutToQuit.connect(wait_on_quit)
    links.append((app.aboutToQuit, wait_on_quit))
