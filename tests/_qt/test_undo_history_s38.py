"""Session 38's walk-through of the dock's Undo and Redo (Shift+U, Shift+R) mixed with what
the user does to the labels layer meanwhile: its data replaced from the console by an array of
another shape, napari's Ctrl+Z, and napari's eraser."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import click_commit, press_key


def _erase(viewer, labels, row, col, size):
    """napari's eraser: one dab of the labels layer's brush writing 0 on slice 3."""
    labels.brush_size = size
    labels.paint((3, row, col), 0, refresh=True)


def test_undo_refuses_labels_of_another_shape_and_keeps_the_step(stack_widget):
    """A smaller array: an unexpected IndexError and the undo step lost; a larger one: the
    undo wrote other pixels and used up the step."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    full = np.array(labels.data)
    for other in (full[:, :30, :30].copy(), np.pad(full, ((0, 0), (0, 9), (0, 7)),
                                                   constant_values=9)):
        labels.data = other.copy()
        press_key(viewer, "Shift-U")
        text = widget._status.text()
        assert text.startswith(
            f"Not undone: 'segmentation' has shape {other.shape} but its commits were written "
            f"into shape {full.shape} (its data was replaced since); nothing was changed and "
            "the step is kept"), text
        np.testing.assert_array_equal(np.asarray(labels.data), other)  # not a pixel written
        assert widget.controller.history.can_undo
    labels.data = full.copy()  # the user puts the labels back: the undo works
    press_key(viewer, "Shift-U")
    assert widget._status.text().startswith("Undid commit of label 1"), widget._status.text()
    assert not np.asarray(labels.data).any()


def test_a_redo_after_napari_s_ctrl_z_brought_the_label_back_counts_as_redone(stack_widget):
    """Shift+U, then napari's Ctrl+Z (the label back, pixel for pixel), then Shift+R said
    "label 2 was given to other pixels ... erase it", and the undo order lost label 2."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    click_commit(viewer, widget, 44, 44)
    labels = widget.controller.target_layer
    both = np.array(labels.data)
    press_key(viewer, "Shift-U")
    assert not (np.asarray(labels.data) == 2).any()
    viewer.layers.selection.active = labels  # napari's Ctrl+Z acts on the selected layer
    press_key(viewer, "Control-Z")
    np.testing.assert_array_equal(np.asarray(labels.data), both)

    press_key(viewer, "Shift-R")
    text = widget._status.text()
    assert text.startswith("Redid commit of label 2 in 'segmentation'. Label 2 is already back, "
                           "pixel for pixel (napari's Ctrl+Z?): nothing was written."), text
    np.testing.assert_array_equal(np.asarray(labels.data), both)
    press_key(viewer, "Shift-U")  # the newest first: 2, then 1
    assert widget._status.text().startswith("Undid commit of label 2"), widget._status.text()
    assert not (np.asarray(labels.data) == 2).any() and (np.asarray(labels.data) == 1).any()
    press_key(viewer, "Shift-U")
    assert widget._status.text().startswith("Undid commit of label 1"), widget._status.text()
    assert not np.asarray(labels.data).any()


def test_a_commit_over_a_fragment_the_eraser_left_names_it(make_widget, demo_available):
    """The nucleus clicked again got a second id beside the fragment of label 1 without a
    word (the demo model: the tiny random one's masks cover half the slice)."""
    from sam_qt_helpers import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs")
    viewer.dims.set_point(0, 3)
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    _erase(viewer, labels, 20, 23, 15)
    left = int((np.asarray(labels.data)[3] == 1).sum())
    assert 0 < left < 100
    text = click_commit(viewer, widget, 20, 20)
    assert (f"Label 1 ({left} pixels) remains inside label 2 on slice 3 (commits do not "
            "overwrite other labels): to make one object, undo and refine label 1 instead "
            "(select it, tick 'Refine selected label'), or tick 'Overwrite other labels' and "
            "commit again.") in text, text


def test_the_undo_of_a_label_erased_by_hand_does_not_blame_ctrl_z_alone(stack_widget):
    """The label erased with napari's eraser, the dock's Undo guessed "napari's Ctrl+Z on the
    labels layer?" only."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    _erase(viewer, labels, 32, 32, 100)  # the whole slice
    assert not np.asarray(labels.data).any()
    press_key(viewer, "Shift-U")
    text = widget._status.text()
    assert text.startswith("Undid commit of label 1 in 'segmentation'. Nothing changed: label 1 "
                           "was already removed from the layer (napari's Ctrl+Z or the "
                           "eraser?); Redo puts it back."), text


def test_the_docks_shape_check_leaves_size_1_axes_aside_as_the_history_does():
    """The history's own check ignores axes of size 1 (the same pixels, the same flat
    indices); the dock's refused what the history would undo."""
    from napari.layers import Image, Labels

    from napari_sam._qt.targets import remember_image, reshaped_problem

    labels = Labels(np.zeros((1, 8, 9), np.uint16), name="segmentation")
    remember_image(labels, Image(np.zeros((1, 8, 9))))
    assert reshaped_problem(labels) is None
    labels.data = np.zeros((8, 9), np.uint16)
    assert reshaped_problem(labels) is None
    labels.data = np.zeros((8, 10), np.uint16)
    assert reshaped_problem(labels).startswith("'segmentation' has shape (8, 10)")
