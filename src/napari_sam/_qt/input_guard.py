"""The dock's combo and spin boxes against stray input: the mouse wheel changes a box only
once it has focus (a click, or Tab), over a box without focus it scrolls the dock's panels;
and the dock's keys (:data:`~napari_sam._qt.keys.KEYS`) pressed in a focused box do their
action instead of picking an item by its first letter.

One event filter stops both at the box, ignored. Qt hands an ignored key event on to the
box's parents, up to napari's main window, which passes it to napari's keymap (where the
dock bound its keys), as it does for keys pressed on a button. The filter hands the wheel to
the panels' scroll area itself (Qt 6 passes a wheel event on to the parents only when it
came from the window system, not when a script or a test sent it). Text fields
(``QLineEdit``) keep every key: a path typed there may hold a capital S.
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

from . import keys

__all__ = ["DOCK_KEYS", "InputGuard", "guard_box", "guard_inputs"]

_BOXES = (QComboBox, QAbstractSpinBox)
_MODIFIERS = {"Shift": Qt.KeyboardModifier.ShiftModifier,
              "Control": Qt.KeyboardModifier.ControlModifier,
              "Alt": Qt.KeyboardModifier.AltModifier,
              "Meta": Qt.KeyboardModifier.MetaModifier}


def _number(value) -> int:
    """The int of a Qt enum or flag (PyQt6's are Python enums, PyQt5's ints)."""
    return int(getattr(value, "value", value))


_MODIFIER_MASK = sum(_number(m) for m in _MODIFIERS.values())


def _combination(key: str) -> tuple[int, int]:
    """(Qt key, Qt modifiers) of a napari key binding such as "Shift-S" or "N"."""
    *mods, name = key.split("-")
    return (_number(getattr(Qt.Key, f"Key_{name.upper()}")),
            sum(_number(_MODIFIERS[m]) for m in mods))


#: The dock's keys as (Qt key, Qt modifiers)
DOCK_KEYS = frozenset(_combination(k.key) for k in keys.KEYS)


class InputGuard(QObject):
    """The event filter of the dock's combo and spin boxes (see the module's docstring)."""

    def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.Wheel:
            box = obj if isinstance(obj, _BOXES) else obj.parent()
            if not box.hasFocus():  # the wheel scrolls the panels instead
                event.ignore()
                area = _scroll_area(box)
                if area is not None:
                    QApplication.sendEvent(area.viewport(), event)
                return True
        elif kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            pressed = (_number(event.key()), _number(event.modifiers()) & _MODIFIER_MASK)
            if pressed in DOCK_KEYS:  # on to napari's keymap
                event.ignore()
                return True
        return False


def _scroll_area(widget):
    """The nearest scroll area holding ``widget``, or None."""
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QAbstractScrollArea):
        parent = parent.parentWidget()
    return parent


def guard_inputs(root) -> InputGuard:
    """Filter the wheel and the dock's keys on every combo and spin box under ``root`` (and
    the text field inside a spin box: under the mouse over most of it, and the focus); such
    a box takes focus on a click or Tab,
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
