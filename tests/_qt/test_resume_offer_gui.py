"""The dock's offer to resume an image's autosaved session is scrolled into view (docs/gui.md:
"at the bottom of the dock (scrolled into view)"): it was scrolled to before the layout had
placed it, so on a short dock it stayed below the visible part (helper walk-through on the
real stack: scroll bar at 0 of 476, the offer at y 1166 of an 846 px viewport)."""

from __future__ import annotations

from qtpy.QtCore import QPoint
from qtpy.QtWidgets import QPushButton
from sam_qt_helpers import canvas_click, pick_checkpoint


def test_the_resume_offer_is_scrolled_into_view_on_a_short_dock(make_widget, stack_file,
                                                                 tiny_ckpt, qtbot):
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(stack_file), plugin="napari")
    viewer.dims.set_point(0, 2)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 20, 20)
    assert widget._on_commit().ids == [1]  # autosaved beside the image
    viewer.close()

    other, w2 = make_widget()
    other.window.show()  # laid out as on screen (the tests' viewers are hidden)
    other.window._qt_window.resize(1100, 560)  # a short dock: the panels scroll
    pick_checkpoint(w2, tiny_ckpt)
    qtbot.wait(50)
    other.open(str(stack_file), plugin="napari")  # the offer appears
    row, scroll = w2._resume_row, w2._scroll
    assert row.isVisibleTo(w2) and "1 commit" in w2._resume_label.text()
    qtbot.wait(400)
    assert scroll.verticalScrollBar().maximum() > 0  # the case: not everything fits
    (resume,) = [b for b in row.findChildren(QPushButton) if b.text() == "Resume"]
    for shown in (w2._resume_label, resume):
        top = shown.mapTo(scroll.viewport(), QPoint(0, 0)).y()
        assert 0 <= top and top + shown.height() <= scroll.viewport().height(), (
            shown, top, shown.height(), scroll.viewport().height(),
            scroll.verticalScrollBar().value())
