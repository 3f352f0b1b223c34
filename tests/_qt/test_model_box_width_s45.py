"""The 'Model' box in a dock of its default width: beside the label column the closed box
showed 'demo (bundled, s' and 'sam2.1_hiera_' (session 45's screenshot); under its label,
as wide as the dock, every model's name is read whole."""

from __future__ import annotations

from sam_qt_helpers import blob_stack, open_from_menu


def _text_width(box) -> int:
    """The width in pixels of the text field of the closed combo ``box``."""
    from qtpy.QtWidgets import QStyle, QStyleOptionComboBox

    option = QStyleOptionComboBox()
    box.initStyleOption(option)
    return box.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, option,
                                      QStyle.SubControl.SC_ComboBoxEditField, box).width()


def test_model_names_are_read_whole_in_a_dock_of_default_width(make_napari_viewer, qtbot):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    viewer.add_image(blob_stack(z=2), name="img")
    dock, widget = open_from_menu(viewer)
    widget.preload = False
    window = viewer.window._qt_window
    window.resize(1024, 768)
    window.show()
    width = dock.minimumSizeHint().width()  # (napari's dock opens about as narrow)
    window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    qtbot.waitUntil(lambda: widget.isVisible() and dock.width() <= width + 4, timeout=5000)
    qtbot.wait(100)
    assert dock.width() <= 330  # (no wider for it: the canvas keeps its room)
    box = widget._model
    names = [box.itemText(i).split(" (")[0] for i in range(box.count())]
    assert "sam2.1_hiera_base_plus" in names and "vit_b_em_organelles" in names
    room, metrics = _text_width(box), box.fontMetrics()
    cut = [n for n in names if metrics.horizontalAdvance(n) > room]
    assert not cut, (room, cut)  # (was 110 px: 'vit_b_em_organelles' and the SAM 2 names cut)
    # the model in use at first, with its description, is read whole too
    assert box.currentText() == "demo (bundled, synthetic data only)"
    assert metrics.horizontalAdvance(box.currentText()) <= room, room
