"""The dock for keyboard and small-screen users (session 35's user test): the mouse wheel
scrolls the panels instead of changing the box under it, and the dock's keys work with focus
in a combo or spin box."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, QPointF, Qt
from qtpy.QtGui import QWheelEvent
from qtpy.QtWidgets import QApplication

from napari_sam._qt import keys


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


def _key(widget, char: str):
    """Press and release the key of ``char`` ("S": Shift+S, "n": N) in ``widget``."""
    from qtpy.QtTest import QTest

    mods = (Qt.KeyboardModifier.ShiftModifier if char.isupper()
            else Qt.KeyboardModifier.NoModifier)
    QTest.keyClick(widget, char, mods)


def test_dock_keys_pressed_in_a_combo_box_do_their_action(stack_widget, qtbot, dialogs):
    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()  # label 1 in a new 'segmentation' layer, now the target
    seg = viewer.layers["segmentation"]
    assert widget._target.currentText() == "segmentation"
    c.points_layer.add([3, 44, 44])
    assert c.previews
    _focus(widget._target, qtbot)
    _key(widget._target, "C")  # Shift+C: commit
    assert set(np.unique(seg.data)) == {0, 1, 2} and not c.previews
    assert widget._target.currentText() == "segmentation"
    assert not widget._negative.isChecked()
    _key(widget._target, "n")  # N: negative points, not "new 'segmentation' layer"
    assert widget._negative.isChecked() and c.negative
    assert widget._target.currentText() == "segmentation"
    _key(widget._target, "n")
    assert not widget._negative.isChecked()
    # Shift+S in 'Model' previews; it does not pick the first model starting with "s"
    model = widget._model.currentText()
    widget._live.setChecked(False)
    c.points_layer.add([3, 6, 58])
    assert not c.previews
    _focus(widget._model, qtbot)
    _key(widget._model, "S")
    assert c.previews and widget._model.currentText() == model
    widget._overwrite.setChecked(True)  # (the tiny random model's mask covers label 1)
    _key(widget._model, "C")  # commits; no 'Checkpoint file...' dialog
    assert 3 in np.unique(seg.data) and not dialogs, c.status
    assert widget._model.currentText() == model


def test_dock_keys_pressed_in_a_spin_box_do_their_action(stack_widget, qtbot):
    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    widget._scroll.ensureWidgetVisible(widget._pps)
    _focus(widget._pps, qtbot)
    _key(QApplication.focusWidget(), "n")
    assert widget._negative.isChecked() and widget._pps.value() == 0


def test_text_fields_keep_the_keys_typed(stack_widget, qtbot):
    """A path typed in 'Embedding store' may hold the dock's keys: they are text there."""
    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    _focus(widget._store, qtbot)
    _key(widget._store, "S")
    _key(widget._store, "n")
    assert widget._store.text() == "Sn" and not widget._negative.isChecked()


@pytest.mark.parametrize("how", ["click", "Space"])
def test_the_help_button_shows_the_keys(stack_widget, qtbot, how):
    """'?' shows the keys on a click, or on Space once Tab brought the focus there: a
    keyboard user cannot hover it for its tooltip."""
    from qtpy.QtTest import QTest
    from qtpy.QtWidgets import QToolTip

    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    QToolTip.hideText()
    help_btn = widget._help
    widget._scroll.ensureWidgetVisible(help_btn)
    if how == "click":
        QTest.mouseClick(help_btn, Qt.MouseButton.LeftButton)
    else:
        _focus(help_btn, qtbot)
        QTest.keyClick(help_btn, Qt.Key.Key_Space)
    qtbot.waitUntil(QToolTip.isVisible, timeout=3000)
    for key in keys.KEYS:
        assert key.key.replace("-", "+") in QToolTip.text()
    assert "Segment: preview the object" in QToolTip.text()
    QToolTip.hideText()


def test_every_control_has_a_tooltip(stack_widget, qtbot):
    from qtpy.QtWidgets import (
        QAbstractButton,
        QAbstractSpinBox,
        QComboBox,
        QLineEdit,
    )

    viewer, widget = stack_widget
    _show(viewer, widget, qtbot)
    widget._on_resume_available("x.sam-session.json", "3 commits")  # Resume, Ignore shown
    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit)
    controls = [w for kind in kinds for w in widget.findChildren(kind)
                if w.isVisibleTo(widget) and not isinstance(w.parent(), QAbstractSpinBox)]
    assert len(controls) > 35
    bare = [(type(w).__name__, getattr(w, "text", lambda: "")()) for w in controls
            if not w.toolTip().strip()]
    assert not bare
    assert "Shift+C" in _button(widget, "Commit").toolTip()  # its key
    assert "N" in widget._negative.toolTip().split("Key:")[-1]


def _button(widget, first_line):
    from qtpy.QtWidgets import QPushButton

    (btn,) = [b for b in widget.findChildren(QPushButton)
              if b.text().split("\n")[0] == first_line]
    return btn


def test_a_combo_box_tooltip_shows_its_whole_entry(make_widget, qtbot):
    """The dock's narrow column elides the entries ("demo (bundled, synth"): the tooltip
    leads with the whole entry, and keeps saying what the box is."""
    from qtpy.QtCore import QEvent
    from qtpy.QtGui import QHelpEvent
    from sam_qt_helpers import blob_stack

    viewer, widget = make_widget(blob_stack(), preload=False, name="blobs")
    _show(viewer, widget, qtbot, width=1024, height=768)
    box = widget._model
    long = max(range(box.count()), key=lambda i: len(box.itemText(i)))
    box.setCurrentIndex(long)
    text = box.itemText(long)
    assert box.fontMetrics().horizontalAdvance(text) > box.width()  # elided when closed
    assert box.toolTip().startswith(text) and "The SAM model" in box.toolTip()
    box.setItemText(long, "vit_x (cached)")  # as a model's state changes once loaded
    assert box.toolTip().startswith("vit_x (cached) — The SAM model")
    # 'Image' is refilled with its signals blocked: a renamed layer is named when asked
    viewer.layers["blobs"].name = "nuclei stack of 12 March, second session, left"
    event = QHelpEvent(QEvent.Type.ToolTip, box.rect().center(),
                       box.mapToGlobal(box.rect().center()))
    QApplication.sendEvent(widget._image, event)
    assert widget._image.toolTip().startswith("nuclei stack of 12 March, second session, left")
    assert "The image layer to segment" in widget._image.toolTip()
