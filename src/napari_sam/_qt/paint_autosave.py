"""Hand edits in the labels layer commits go into are autosaved: a moment after the user
paints, fills or erases there (napari's ``events.paint``), the session is autosaved as after a
commit. Before, the autosaved labels TIFF (the one docs/cli.md names as training labels) held
them only after the next commit, so corrections made last were lost to a retrain or a crash.

What that autosave has to say is then the status line, once per stroke: after a failed write,
that it failed again and when it tries again, as commits, undos and redos say (brush strokes
said nothing, so hours of brush work could go unsaved without a word), or that it works again."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable

from napari_sam._qt.layers import same, unwrap

__all__ = ["PAINT_AUTOSAVE_MS", "PaintAutosave", "flush_all"]

#: the autosave follows the last brush stroke by this long (a stroke is many paint events)
PAINT_AUTOSAVE_MS = 1500

_LIVE: weakref.WeakSet = weakref.WeakSet()  # every PaintAutosave of this process


def flush_all() -> None:
    """:meth:`PaintAutosave.flush` every one of this process (napari told to end:
    :mod:`napari_sam._qt.terminate_saves`); an error of one does not stop the others."""
    for autosave in list(_LIVE):
        with contextlib.suppress(Exception):
            autosave.flush()


class PaintAutosave:
    """Calls ``save`` :data:`PAINT_AUTOSAVE_MS` after the last paint event of the labels layer
    it follows (:meth:`follow`); :meth:`flush` saves at once when a save is pending.

    Parameters
    ----------
    save : callable()
        Writes the autosave (``AnnotationSession.autosave_now``); an error it raises is
        left to it (the session says autosave problems in its status line).
    note : callable() -> str, optional
        What the autosave has to say after a stroke's save (``take_autosave_note``: e.g.
        " Autosave to ... failed again (...); it tries again ..."; "" for nothing).
    say : callable(str), optional
        Shows a status line: "Painted in 'labels'." and the ``note``, when there is one.
    """

    def __init__(self, save: Callable[[], None], note: Callable[[], str] | None = None,
                 say: Callable[[str], None] | None = None):
        from qtpy.QtCore import QTimer

        self._save, self._note, self._say = save, note, say
        self._layer = None
        self._pending = False  # kept here: at interpreter exit Qt may delete the timer first
        self._paused = False
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(PAINT_AUTOSAVE_MS)
        self._timer.timeout.connect(self._stroke_ended)
        _LIVE.add(self)

    @property
    def pending(self) -> bool:
        """A paint event is waiting for its autosave."""
        return self._pending

    def follow(self, layer) -> None:
        """Follow ``layer`` (None: none); a save pending for the layer followed before is
        written first."""
        layer = unwrap(layer)
        if same(layer, self._layer):
            return
        self.flush()
        if self._layer is not None:
            self._layer.events.paint.disconnect(self._painted)
        self._layer = layer
        if layer is not None:
            layer.events.paint.connect(self._painted)

    def flush(self) -> None:
        """Write a pending autosave now (also when Qt has deleted the timer: a script or
        notebook ending without closing the viewer; its error aborted the process)."""
        if self._pending:
            with contextlib.suppress(RuntimeError):  # "wrapped C/C++ object ... deleted"
                self._timer.stop()
            self._due()

    @contextlib.contextmanager
    def paused(self):
        """Paint events inside the block schedule no autosave: the dock's own writes
        (commits, undos and redos, recorded in napari's history: ``events.paint``), which
        autosave themselves (a second autosave copied and hashed the labels again: 4-8 s for
        a 60 x 2048 x 2048 stack on this project's 2-core machine)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _due(self) -> None:
        self._pending = False
        self._save()

    def _stroke_ended(self) -> None:
        """The timer's: a stroke ended a moment ago; it is autosaved, and what the autosave
        has to say is said (not by :meth:`flush`: the dock may be closing)."""
        self._due()
        text = "" if self._note is None or self._say is None else self._note().strip()
        if text and self._layer is not None:
            self._say(f"Painted in '{self._layer.name}'. {text}")

    def _painted(self, event=None) -> None:
        if self._paused:
            return
        self._pending = True
        self._timer.start()  # restarted by every event of a stroke
