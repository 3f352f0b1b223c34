"""Session 26: the live preview follows every input of what Shift+C commits, as users meet
it (the dock from the Plugins menu, clicks on the canvas, key presses). Before, ticking
'Refine selected label' or picking another label after a click left the old preview on the
canvas, and Shift+C then refused it."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click


def _press(viewer, key):
    viewer.window._qt_viewer._key_map_handler.press_key(key)


def _manual(viewer, widget):
    """A labels layer 'manual' picked as the target: label 5 on slices 2-3 at the first
    disc, label 7 on slice 3 at the second."""
    existing = np.zeros((6, 64, 64), np.uint32)
    existing[2:4, 12:28, 12:28] = 5
    existing[3, 36:52, 36:52] = 7
    layer = viewer.add_labels(existing.copy(), name="manual")
    widget._refresh_targets()
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    layer.selected_label = 5
    viewer.layers.selection.active = widget.controller.points_layer
    return layer, existing


def test_ticking_refine_after_a_click_previews_the_refinement(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    layer, existing = _manual(viewer, widget)
    canvas_click(viewer, 20, 20)
    (plain,) = c.previews
    assert not plain.mask_prompt  # a plain click: a new object
    widget._refine.setChecked(True)
    (refined,) = c.previews
    assert refined.mask_prompt, "ticking Refine did not decode the click again"
    assert widget._status.text().endswith("Shift+C commits."), widget._status.text()
    _press(viewer, "Shift-C")
    assert widget._status.text().startswith("Refined label 5"), widget._status.text()
    assert c.history.peek_undo().ids == [5]  # label 5 refined, no new label
    assert set(np.unique(layer.data)) == {0, 5, 7}


def test_picking_another_label_while_refining_previews_that_label(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    layer, existing = _manual(viewer, widget)
    widget._refine.setChecked(True)
    canvas_click(viewer, 44, 44)  # on label 7, while label 5 is selected
    before = c.previews[0].mask.copy()
    layer.selected_label = 7
    (now,) = c.previews
    assert now.mask_prompt
    assert not np.array_equal(now.mask, before)
    _press(viewer, "Shift-C")
    assert widget._status.text().startswith("Refined label 7"), widget._status.text()
    assert c.history.peek_undo().ids == [7]
    # label 5 is untouched
    assert np.array_equal(layer.data == 5, existing == 5)


def test_unticking_refine_previews_a_new_object_again(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    layer, existing = _manual(viewer, widget)
    widget._refine.setChecked(True)
    canvas_click(viewer, 20, 20)
    assert c.previews[0].mask_prompt
    widget._refine.setChecked(False)
    (plain,) = c.previews
    assert not plain.mask_prompt and c._preview_refine == 0
    _press(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed"), widget._status.text()
    assert c.history.peek_undo().ids == [8]  # a new label, above the highest
    assert np.array_equal(layer.data == 5, existing == 5)


def test_ticking_refine_with_negative_clicks_alone_previews_at_once(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    _manual(viewer, widget)
    canvas_click(viewer, 20, 20, modifiers=("Shift",))
    assert c.previews == []
    widget._refine.setChecked(True)  # no Shift+S needed
    (preview,) = c.previews
    assert preview.mask_prompt and preview.prompt.labels.tolist() == [0, 1]
