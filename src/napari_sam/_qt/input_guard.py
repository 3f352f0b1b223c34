"""The dock's combo and spin boxes against stray input: the mouse wheel changes a box only
once it has focus (a click, or Tab); over a box without focus it scrolls the dock's panels.

One event filter stops the wheel at such a box, ignored, and hands it to the scroll area of
the panels itself (Qt 6 passes a wheel event on to the parents only when it came from the
window system, not when a script or a test sent it).
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QAbstractScrollArea,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
)

__all__ = ["InputGuard", "guard_box", "guard_inputs"]

_BOXES = (QComboBox, QAbstractSpinBox)


class InputGuard(QObject):
    """The event filter of the dock's combo and spin boxes (see the module's docstring)."""

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Wheel:
            box = obj if isinstance(obj, _BOXES) else obj.parent()
            if not box.hasFocus():  # the wheel scrolls the panels instead
                event.ignore()
                area = _scroll_area(box)
                if area is not None:
                    QApplication.sendEvent(area.viewport(), event)
                return True
        return False


def _scroll_area(widget):
    """The nearest scroll area holding ``widget``, or None."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def guard_inputs(root) -> InputGuard:
    """Filter the wheel on every combo and spin box under ``root`` (and the text field inside
    a spin box, under the mouse over most of it); such a box takes focus on a click or Tab,
    never from the wheel. Boxes added later are not covered: pass them to
    :func:`guard_box`. Returns the filter (a child of ``root``)."""
    guard = InputGuard(root)
    for box in root.findChildren(QComboBox) + root.findChildren(QAbstractSpinBox):
        guard_box(guard, box)
    return guard


def guard_box(guard: InputGuard, box) -> None:
    """Let ``guard`` filter ``box`` (a combo or spin box)."""
    box.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
    box.installEventFilter(guard)
    if isinstance(box, QAbstractSpinBox):
        for edit in box.findChildren(QLineEdit):
            edit.installEventFilter(guard)
