"""Session 39: the dock's Undo and Redo (its buttons) after napari's own Ctrl+Z on the labels
layer. The dock's Undo after napari's Ctrl+Z kept no pixel of the commit, so its Redo brought
nothing back (label lost for the dock); a Redo that found the commit back already still pushed
a step onto napari's history, and napari's next Ctrl+Z then did nothing visible."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click, click_button, click_commit, press_key


def _napari_undo(viewer, labels, redo=False):
    viewer.layers.selection.active = labels  # napari's Ctrl+Z acts on the selected layer
    press_key(viewer, "Control-Shift-Z" if redo else "Control-Z")


def test_the_dock_s_redo_after_napari_s_ctrl_z_and_the_dock_s_undo_restores_the_label(
        stack_widget, qtbot):
    """Commit label 1, napari's Ctrl+Z, the dock's Undo ("nothing changed"), the dock's Redo:
    it said "Nothing changed: its undo had restored no pixel." and label 1 stayed lost."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    committed = np.array(labels.data)
    assert (committed == 1).any()
    _napari_undo(viewer, labels)
    empty = np.array(labels.data)
    assert not empty.any()

    text = click_button(qtbot, widget, "Undo")
    assert text.startswith(
        "Undid commit of label 1 in 'segmentation'. Nothing changed: label 1 was already "
        "removed from the layer (napari's Ctrl+Z or the eraser?); Redo puts it back."), text
    np.testing.assert_array_equal(np.asarray(labels.data), empty)
    assert len(labels._redo_history) == 1  # napari's own redo of the commit is kept

    text = click_button(qtbot, widget, "Redo")
    assert text.startswith("Redid commit of label 1 in 'segmentation'."), text
    assert "Nothing changed" not in text, text
    np.testing.assert_array_equal(np.asarray(labels.data), committed)
    _napari_undo(viewer, labels)  # napari's Ctrl+Z undoes the dock's redo, in one step
    np.testing.assert_array_equal(np.asarray(labels.data), empty)
    _napari_undo(viewer, labels, redo=True)
    np.testing.assert_array_equal(np.asarray(labels.data), committed)


def test_a_redo_that_finds_the_label_back_adds_no_step_to_napari_s_history(stack_widget, qtbot):
    """The dock's Undo, napari's Ctrl+Z (the label back), the dock's Redo ("already back:
    nothing was written") pushed a step anyway: napari's Ctrl+Z undid that step, the next
    Ctrl+Z did nothing visible, and napari's Ctrl+Shift+Z was lost."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    committed = np.array(labels.data)
    click_button(qtbot, widget, "Undo")
    assert not np.asarray(labels.data).any()
    _napari_undo(viewer, labels)  # undoes the dock's undo: label 1 back
    np.testing.assert_array_equal(np.asarray(labels.data), committed)
    steps = len(labels._undo_history), len(labels._redo_history)

    text = click_button(qtbot, widget, "Redo")
    assert "Label 1 is already back, pixel for pixel" in text, text
    assert (len(labels._undo_history), len(labels._redo_history)) == steps
    _napari_undo(viewer, labels)  # napari's Ctrl+Z: the commit undone, at the first press
    assert not np.asarray(labels.data).any()


def test_the_console_line_a_uint8_refusal_gives_commits_label_256(stack_widget, qtbot):
    """The refusal of label 256 in a uint8 layer said to type
    ``layer.data = layer.data.astype('uint32')`` in napari's console, whose namespace has
    ``viewer``, not ``layer``: a NameError. The line it gives now works as typed, and the
    next commit is label 256 in that layer (one id per object), undone by the dock's Undo."""
    import re

    viewer, widget = stack_widget
    shape = viewer.layers["blobs"].data.shape
    full = np.zeros(shape, np.uint8)
    full[0].flat[: 255 * 2 : 2] = np.arange(1, 256)  # ids 1..255 on slice 0
    layer = viewer.add_labels(full, name="u8 labels")
    index = widget._target.findText("u8 labels")
    widget._target.setCurrentIndex(index)
    widget._target.activated.emit(index)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 20, 20)
    text = click_button(qtbot, widget, "Commit")
    assert text.startswith("Not committed: 'u8 labels' is uint8"), text
    (line,) = re.findall(r"console:? \(?(.+?astype\('uint32'\))", text)
    exec(line, {"viewer": viewer})  # what napari's console holds: the viewer, no 'layer'
    assert layer.data.dtype == np.uint32
    np.testing.assert_array_equal(layer.data, full)
    text = click_button(qtbot, widget, "Commit")
    assert text.startswith("Committed label 256"), text
    assert (np.asarray(layer.data)[3] == 256).any()
    text = click_button(qtbot, widget, "Undo")
    assert text.startswith("Undid commit of label 256 in 'u8 labels'."), text
    np.testing.assert_array_equal(np.asarray(layer.data), full)


def test_the_undo_and_redo_of_a_two_object_commit_name_labels_in_the_plural(stack_widget,
                                                                               qtbot):
    """Two boxes committed at once ("Committed labels 1, 2"): the Undo said "Undid commit of
    label 1, 2"."""
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.boxes_layer
    c.boxes_layer.add([[[3, 10, 10], [3, 10, 30], [3, 30, 30], [3, 30, 10]],
                       [[3, 34, 34], [3, 34, 54], [3, 54, 54], [3, 54, 34]]],
                      shape_type="rectangle")  # what two drags in 'add rectangle' draw
    qtbot.waitUntil(lambda: len(c.previews) == 2, timeout=30_000)
    text = click_button(qtbot, widget, "Commit")
    assert text.startswith("Committed labels 1, 2"), text
    text = click_button(qtbot, widget, "Undo")
    assert text.startswith("Undid commit of labels 1, 2 in 'segmentation'."), text
    text = click_button(qtbot, widget, "Redo")
    assert text.startswith("Redid commit of labels 1, 2 in 'segmentation'."), text
