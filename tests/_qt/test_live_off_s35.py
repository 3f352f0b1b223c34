"""With 'Live preview' unticked, a click is kept but not decoded: the status says so and
names Shift+S at once, and Shift+C before Shift+S says why nothing was committed (it said
"Nothing to commit: click a point ..." to a user who had just clicked)."""

from __future__ import annotations

from sam_qt_helpers import canvas_click

from napari_sam.annotate.commit_words import LIVE_OFF


def test_a_click_with_live_preview_off_names_shift_s(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    widget._live.click()  # untick, as a user does
    assert c.live is False
    canvas_click(viewer, 20, 20)
    assert len(c.points_layer.data) == 1 and not c.previews
    assert c.status == LIVE_OFF
    press = viewer.window._qt_viewer._key_map_handler.press_key
    press("Shift-C")
    assert c.status.startswith("Not committed: the prompts have no preview yet ('Live "
                               "preview' is off). Press Shift+S"), c.status
    assert c.target_labels() is None  # no labels layer was made
    press("Shift-S")
    assert c.previews
    press("Shift-C")
    assert (c.target_labels()[3] == 1).any()


def test_removing_a_prompt_with_live_preview_off_previews_nothing(stack_widget):
    """A removal is no click to answer: the status is not "Prompt kept", and nothing is
    decoded (the removal decoded the prompts left although the live preview was off)."""
    viewer, widget = stack_widget
    c = widget.controller
    widget._live.click()
    canvas_click(viewer, 20, 20)
    canvas_click(viewer, 44, 44)
    c.points_layer.selected_data = {1}
    c.points_layer.remove_selected()
    assert len(c.points_layer.data) == 1
    assert not c.previews and c.status == LIVE_OFF  # what the last click said, no more
    c._say("checked")
    c.points_layer.selected_data = {0}
    c.points_layer.remove_selected()
    assert c.status == "checked" and not c.previews
