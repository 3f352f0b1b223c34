"""Session 34's dock walk-through: the dock's commits, undos and redos wrote into the labels
layer behind napari's back, so napari's own Ctrl+Z (the labels layer's undo) undid the brush
stroke made before them and wrote that stroke's old pixels over a commit (a committed label
gone, the status still naming it), or brought back pixels of a label the dock had undone.
They are now steps of the layer's napari history: Ctrl+Z undoes the latest change, whichever
tool made it."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import click_commit, press_key


def _napari_undo(viewer, labels, redo=False):
    viewer.layers.selection.active = labels  # napari's Ctrl+Z acts on the selected layer
    press_key(viewer, "Control-Shift-Z" if redo else "Control-Z")


def test_napari_ctrl_z_undoes_a_commit_made_after_an_eraser_stroke(stack_widget):
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    after_commit1 = np.array(labels.data)
    labels.brush_size = 5
    labels.paint((3, 20, 18), 0, refresh=True)  # napari's eraser over part of label 1
    after_erase = np.array(labels.data)
    assert (after_erase != after_commit1).any()
    click_commit(viewer, widget, 20, 18)  # the erased part committed again: label 2
    after_commit2 = np.array(labels.data)
    assert (after_commit2 == 2).any()

    _napari_undo(viewer, labels)  # undoes the commit (was: the eraser stroke, over label 2)
    np.testing.assert_array_equal(np.asarray(labels.data), after_erase)
    _napari_undo(viewer, labels)
    np.testing.assert_array_equal(np.asarray(labels.data), after_commit1)
    _napari_undo(viewer, labels, redo=True)
    _napari_undo(viewer, labels, redo=True)
    np.testing.assert_array_equal(np.asarray(labels.data), after_commit2)


def test_napari_ctrl_z_after_the_dock_s_undo_brings_the_commit_back(stack_widget):
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    after_commit = np.array(labels.data)
    labels.brush_size = 3
    labels.paint((3, 50, 6), 9, refresh=True)  # a hand-painted label on the background
    after_paint = np.array(labels.data)
    press_key(viewer, "Shift-U")  # the dock's undo of the commit
    assert widget._status.text().startswith("Undid commit of label 1"), widget._status.text()
    after_undo = np.array(labels.data)
    assert not (after_undo == 1).any() and (after_undo == 9).sum() == (after_paint == 9).sum()

    _napari_undo(viewer, labels)  # undoes the dock's undo (was: the paint stroke; no label 1)
    np.testing.assert_array_equal(np.asarray(labels.data), after_paint)
    _napari_undo(viewer, labels)
    np.testing.assert_array_equal(np.asarray(labels.data), after_commit)
    _napari_undo(viewer, labels, redo=True)
    _napari_undo(viewer, labels, redo=True)
    np.testing.assert_array_equal(np.asarray(labels.data), after_undo)


def test_the_dock_s_own_writes_schedule_no_second_autosave(stack_widget):
    """The history step's paint event scheduled the hand-edit autosave after every commit,
    undo and redo, which autosave themselves: the labels were copied and hashed twice
    (seconds per commit on a 60 x 2048 x 2048 stack). A brush stroke still schedules it."""
    viewer, widget = stack_widget
    c = widget.controller
    click_commit(viewer, widget, 20, 20)
    autosave = c._paint_autosave
    assert not autosave.pending
    press_key(viewer, "Shift-U")
    press_key(viewer, "Shift-R")
    assert not autosave.pending
    c.target_layer.paint((3, 50, 6), 9, refresh=True)  # napari's brush
    assert autosave.pending


def test_the_dock_s_undo_after_napari_s_ctrl_z_says_nothing_changed(stack_widget):
    """It said "Undid commit of label 1" although napari's Ctrl+Z had undone it already."""
    viewer, widget = stack_widget
    click_commit(viewer, widget, 20, 20)
    labels = widget.controller.target_layer
    committed = np.array(labels.data)
    _napari_undo(viewer, labels)
    before = np.array(labels.data)
    assert not (before == 1).any()
    press_key(viewer, "Shift-U")
    assert widget._status.text().startswith(
        "Undid commit of label 1 in 'segmentation'. Nothing changed: label 1 was already "
        "removed from the layer (napari's Ctrl+Z or the eraser?); Redo puts it back."
    ), widget._status.text()
    np.testing.assert_array_equal(np.asarray(labels.data), before)
    press_key(viewer, "Shift-R")  # (session 39: it restored nothing, the label lost)
    assert widget._status.text().startswith("Redid commit of label 1"), widget._status.text()
    np.testing.assert_array_equal(np.asarray(labels.data), committed)


@pytest.mark.parametrize("undoing", [False, True])
def test_a_step_of_overlapping_writes_is_one_napari_undo(undoing):
    """Two objects of one commit writing the same pixels (overwrite on): napari's undo puts
    back what was there before the step, its redo what the step left."""
    from napari.layers import Labels

    from napari_sam._qt.layer_history import record_step
    from napari_sam.annotation import Change

    data = np.zeros((2, 6, 6), np.uint16)
    data[0, 0, :3] = 7
    layer = Labels(data)
    start = data.copy()
    first = np.array([0, 1, 2, 3]), 5  # flat indices, value
    second = np.array([2, 3, 40]), 6
    changes = []
    flat = layer.data.reshape(-1)
    for idx, value in (first, second):  # what a commit writes, in order
        changes.append(Change(idx, flat[idx].copy(), np.full(len(idx), value, np.uint16)))
        flat[idx] = value
    if undoing:  # the dock's undo of that commit: each change's before, in reverse
        committed = layer.data.copy()
        for c in reversed(changes):
            flat[c.index] = c.before
        np.testing.assert_array_equal(layer.data, start)
        start, end = committed, start
    else:
        end = layer.data.copy()
    record_step(layer, changes, undoing)
    np.testing.assert_array_equal(layer.data, end)
    layer.undo()
    np.testing.assert_array_equal(layer.data, start)
    layer.redo()
    np.testing.assert_array_equal(layer.data, end)
