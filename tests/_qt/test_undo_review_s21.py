"""Review s21, as users meet it: the dock opened from the Plugins menu, objects committed with
clicks on the canvas and Shift+C, the labels edited with napari's brush and eraser, then the
plugin's Undo (Shift+U) and Redo (Shift+R): they never overwrite those edits and never leave
two objects with one id."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click


def _press(viewer, key):
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def _click_commit(viewer, widget, row, col):
    """Click (row, col) on the shown slice, press Shift+C; the committed (Y, X) mask."""
    c = widget.controller
    viewer.layers.selection.active = c.points_layer  # the user selects the points again
    canvas_click(viewer, row, col)
    assert c.previews, widget._status.text()
    mask = c.previews[0].mask.copy()
    _press(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label"), widget._status.text()
    return mask


def test_undo_and_redo_keep_labels_painted_with_napari_s_brush(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    mask1 = _click_commit(viewer, widget, 20, 20)
    labels = c.target_layer
    assert np.array_equal(np.asarray(labels.data)[3] == 1, mask1)
    # the user corrects label 1 with napari's brush: label 7 over part of it
    labels.brush_size = 6
    labels.paint((3, 20, 20), 7, refresh=True)
    painted = np.asarray(labels.data)[3] == 7
    n7, inside = int(painted.sum()), int((painted & mask1).sum())
    assert n7 > 0 and inside > 0
    _click_commit(viewer, widget, 44, 44)
    assert c.history.peek_undo().ids == [8]

    _press(viewer, "Shift-U")
    _press(viewer, "Shift-U")
    data = np.asarray(labels.data)
    assert int((data == 7).sum()) == n7  # the hand edit survives both undos
    assert not np.isin(data, [1, 8]).any()
    assert widget._status.text().startswith(
        f"Undid commit of label 1 in 'segmentation'. {inside} pixels changed since the "
        "commit (painted, erased or committed over) were left as they are.")

    # after the undo the user paints label 9 where label 1 was; Redo keeps it
    labels.paint((3, 24, 24), 9, refresh=True)
    painted9 = np.asarray(labels.data)[3] == 9
    hit = int((painted9 & mask1 & ~painted).sum())
    assert hit > 0
    _press(viewer, "Shift-R")
    data = np.asarray(labels.data)
    assert np.array_equal(data[3] == 9, painted9)
    assert np.array_equal(data[3] == 1, mask1 & ~painted & ~painted9)
    assert int((data == 7).sum()) == int((painted & ~painted9).sum())
    assert (f"Redid commit of label 1 in 'segmentation'. {hit} pixels changed since the undo"
            ) in widget._status.text()


def test_undo_redo_after_a_label_erased_by_hand_give_one_object_per_id(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    mask1 = _click_commit(viewer, widget, 20, 20)
    labels = c.target_layer
    data = labels.data
    data[data == 1] = 0  # the user erases label 1
    labels.refresh()
    mask2 = _click_commit(viewer, widget, 44, 44)
    assert c.history.peek_undo().ids == [1]  # the id is free again
    _press(viewer, "Shift-U")
    _press(viewer, "Shift-U")
    assert not np.asarray(labels.data).any()
    _press(viewer, "Shift-R")
    _press(viewer, "Shift-R")
    data = np.asarray(labels.data)
    assert np.array_equal(data[3] == 1, mask2)  # only the new object holds id 1
    assert not data[3][mask1 & ~mask2].any()  # the erased object stays erased
    assert widget._status.text().startswith("Redid commit of label 1 in 'segmentation'.")


def test_redo_refused_when_napari_s_brush_gave_its_id_to_another_object(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    mask1 = _click_commit(viewer, widget, 20, 20)
    labels = c.target_layer
    _press(viewer, "Shift-U")
    labels.brush_size = 3
    labels.paint((3, 60, 60), 1, refresh=True)  # a new object painted with label 1
    before = np.array(labels.data, copy=True)
    _press(viewer, "Shift-R")
    assert np.array_equal(np.asarray(labels.data), before)
    assert widget._status.text().startswith(
        "Not redone: label 1 was given to other pixels since the undo (painted or "
        "committed); redoing would make two objects of one id in 'segmentation'.")
    labels.paint((3, 60, 60), 0, refresh=True)  # erased: the redo goes through
    _press(viewer, "Shift-R")
    assert np.array_equal(np.asarray(labels.data)[3] == 1, mask1)
