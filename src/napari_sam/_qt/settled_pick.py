"""A combo box stepped through with the keyboard picks the entry the keys rest on, not each
entry they pass: Qt's combo box makes every Up, Down, Page Up/Down, Home, End and typed
letter (and, once it has focus, every wheel notch) a pick (``activated``), so stepping from
the first model to the fourth started a load and an embedding job for each model between.

:class:`SettledPick` holds such picks until the keys rest for :data:`SETTLE_MS`, Enter is
pressed or the box loses focus; a pick from the open list (a click, or Enter there) counts
at once, as ``activated`` emitted by a script does. Setting the box from code
(``setCurrentIndex``) picks nothing, as before: a script calls the handler itself.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt, QTimer

__all__ = ["SETTLE_MS", "SettledPick"]

#: How long the keys rest on an entry before it counts (ms)
SETTLE_MS = 500

_ENTER = (Qt.Key.Key_Return, Qt.Key.Key_Enter)


class SettledPick(QObject):
    """Call ``pick(how)`` once the user has chosen an entry of ``box``: ``how`` is "click"
    (the open list, or ``activated`` from code), "enter" (Enter after keys), "rest" (the
    keys rested) or "leave" (the box lost focus after keys). ``pick`` returns False to
    decline a "rest" (the pick stays open: Enter or leaving the box asks again)."""

    def __init__(self, box, pick):
        super().__init__(box)
        self._box, self._pick = box, pick
        self._keyed = False  # the event being handled is a key or wheel step in the box
        self.waiting = False  # a step of the keys not yet picked
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SETTLE_MS)
        self._timer.timeout.connect(lambda: self._settle("rest"))
        box.activated.connect(self._on_activated)
        box.installEventFilter(self)

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        kind = event.type()
        if kind in (QEvent.Type.KeyPress, QEvent.Type.Wheel) and not self._box.view().isVisible():
            if kind == QEvent.Type.KeyPress and event.key() in _ENTER and self.waiting:
                self._settle("enter")
                return True
            self._keyed = True  # until this event is handled (activated comes within)
            QTimer.singleShot(0, self._unkey)
        elif kind == QEvent.Type.FocusOut and self.waiting:
            self._settle("leave")
        return False

    def _unkey(self):
        self._keyed = False

    def _on_activated(self, *_):
        if self._keyed:
            self.waiting = True
            self._timer.start()  # restarted by each step
        else:
            self._settle("click")

    def _settle(self, how: str):
        self._timer.stop()
        self.waiting = False
        if self._pick(how) is False and how == "rest":
            self.waiting = True
