"""The dock for keyboard and small-screen users (session 35's user test): the mouse wheel
scrolls the panels instead of changing the box under it."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QApplication


@pytest.fixture(autouse=True)
def dialogs(monkeypatch):
    """The file dialogs opened (as cancelled at once: a modal dialog would wait for a user)."""
    from qtpy.QtWidgets import QFileDialog

    opened = []
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        lambda *a, **k: (opened.append(a), ("", ""))[1])
    return opened


def _show(viewer, widget, qtbot, width=1024, height=560):
    """The viewer's window on screen, short: the dock's panels scroll."""
    window = viewer.window._qt_window
    window.resize(width, height)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: widget.isVisible() and widget.height() > 0, timeout=5000)
    qtbot.wait(50)


def _focus(box, qtbot):
    box.setFocus(Qt.FocusReason.TabFocusReason)
    qtbot.waitUntil(box.hasFocus, timeout=5000)


def _wheel(box, notches: int, inner: bool = True):
    """``notches`` of the mouse wheel (negative: down) over the middle of ``box``, sent to the
    widget there (a spin box's text field); ``inner=False``: to ``box`` itself."""
    centre = box.rect().center()
    target = (box.childAt(centre) if inner else None) or box
    pos = target.mapFrom(box, centre)
    event = QWheelEvent(QPointF(pos), QPointF(target.mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(target, event)


def _value(box):
    return box.currentText() if hasattr(box, "currentText") else box.value()


def test_the_wheel_scrolls_the_panels_over_an_unfocused_box(stack_widget, qtbot, dialogs):
    """Each box is turned the way its value could go (the Model's current entry is the last
    model listed, the minimum size is 0): the box keeps its value, the panels scroll."""
    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    bar = widget._scroll.verticalScrollBar()
    assert bar.maximum() > 0  # the panels do not fit: they scroll
    turns = {"Device": (widget._device, -1), "Model": (widget._model, 1),
             "Stack axis is": (widget._axis_kind, -1), "Where": (widget._auto_scope, -1),
             "Predicted IoU threshold": (widget._iou, -1),
             "Minimum size": (widget._min_size, 1)}
    for name, (box, notches) in turns.items():
        bar.setValue(0 if notches < 0 else bar.maximum())
        widget._scroll.ensureWidgetVisible(box)
        before, scrolled = _value(box), bar.value()
        _wheel(box, notches)
        assert _value(box) == before, name
        assert (bar.value() - scrolled) * notches < 0, name  # the panels scrolled instead
    assert widget.controller.axis_kind == "z" and widget._iou.value() == pytest.approx(0.88)
    assert not dialogs  # 'Checkpoint file...' was not picked


def test_the_wheel_changes_a_box_once_it_has_focus(stack_widget, qtbot):
    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    box = widget._axis_kind
    widget._scroll.ensureWidgetVisible(box)
    _focus(box, qtbot)
    _wheel(box, -1, inner=False)  # (Qt 6 hands a wheel that Qt did not make to no parent)
    assert box.currentText() == "t (time series)" and widget.controller.axis_kind == "t"
    _focus(widget._iou, qtbot)
    _wheel(widget._iou, -1, inner=False)
    assert widget._iou.value() == pytest.approx(0.86)
