"""Found by a new user's walk through the dock (session 25), as users meet it: the dock from
the Plugins menu, clicks on the canvas, key presses. A preview never looks like a committed
label; deleting the labels layer says what went with it; with live preview off, Shift+C never
commits a preview older than the prompts."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click, press_key


def _click(viewer, widget, row, col, modifiers=()):
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, row, col, modifiers)


def test_the_preview_is_not_drawn_in_a_committed_labels_colours(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    _click(viewer, widget, 20, 20)
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1"), widget._status.text()
    _click(viewer, widget, 44, 44)
    assert c.previews
    values = np.arange(1, 21)
    committed = np.asarray(c.target_layer.colormap.map(values))[:, :3]
    preview = np.asarray(c.preview_layer.colormap.map(values[:6]))[:, :3]
    distance = np.linalg.norm(preview[:, None] - committed[None], axis=2)
    assert distance.min() >= 0.35, distance.min()  # it was 0: label 1's own colour


def test_deleting_the_labels_layer_says_what_went_with_it(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    _click(viewer, widget, 20, 20)
    press_key(viewer, "Shift-C")
    target = c.target_layer
    name = target.name
    viewer.layers.remove(target)
    assert widget._status.text() == (
        f"The labels layer '{name}' was deleted. Its 1 undo/redo step went with it. The next "
        "commit goes into a new 'segmentation' layer (or pick one in 'Labels layer').")
    press_key(viewer, "Shift-U")
    assert "Nothing to undo" in widget._status.text()
    _click(viewer, widget, 44, 44)
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1"), widget._status.text()
    assert c.target_layer is not None and c.target_layer in viewer.layers


def test_with_live_preview_off_shift_c_refuses_a_preview_older_than_the_clicks(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    widget._live.setChecked(False)
    _click(viewer, widget, 20, 20)
    press_key(viewer, "Shift-S")
    assert c.previews and c.previews[0].prompt.points.shape == (1, 2)
    _click(viewer, widget, 24, 24, ("Shift",))  # a negative click, not previewed
    _click(viewer, widget, 44, 44)  # and a far positive one
    press_key(viewer, "Shift-C")
    text = widget._status.text()
    assert text.startswith("Not committed: the prompts changed since the preview"), text
    assert "press Shift+S" in text
    assert c.target_layer is None or not np.asarray(c.target_layer.data).any()
    press_key(viewer, "Shift-S")
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1"), widget._status.text()
    np.testing.assert_allclose(c.log[-1]["objects"][0]["points"],
                               [[20, 20], [24, 24], [44, 44]], atol=1e-6)


def test_the_dock_leaves_the_canvas_room(make_widget):
    """The dock's minimum width comes from its narrowest sensible layout, not from the
    longest model description or one-line button rows (it was 551 px: a 1024 px window kept
    a 127 px canvas)."""
    from qtpy.QtWidgets import QComboBox, QPushButton

    _viewer, widget = make_widget()
    assert widget.minimumSizeHint().width() <= 420, widget.minimumSizeHint().width()
    model = widget._model
    longest = max(len(model.itemText(i)) for i in range(model.count()))
    assert longest > 40 and model.minimumSizeHint().width() < 250  # elided, not widened
    for button in widget.findChildren(QPushButton):
        assert button.sizeHint().width() <= 160, button.text()
    assert all(box.sizeAdjustPolicy() != QComboBox.SizeAdjustPolicy.AdjustToContents
               for box in widget.findChildren(QComboBox))


def test_an_image_added_on_top_says_how_to_go_on(stack_widget):
    """napari puts a new image over the SAM layers and selects it: the status says to pick it
    (it kept offering Shift+C for the hidden preview of the other image)."""
    viewer, widget = stack_widget
    _click(viewer, widget, 20, 20)
    viewer.add_image(np.zeros((64, 64), np.float32), name="flat")
    text = widget._status.text()
    assert text.startswith("Image 'flat' was added on top of the SAM layers: pick it in "
                           "'Image' to segment it. The dock still works on 'blobs'"), text
    assert widget.controller.image_layer.name == "blobs"


def test_a_refusal_while_previewing_becomes_the_status_line(stack_widget):
    """A click refining a label that is not on the shown slice: the status line says why (it
    kept the last line, 'Committed label 1 ...', while only a notification said it)."""
    viewer, widget = stack_widget
    c = widget.controller
    _click(viewer, widget, 20, 20)
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1")
    c.target_layer.selected_label = 1
    widget._refine.setChecked(True)
    viewer.dims.set_point(0, 4)
    assert not (np.asarray(c.target_layer.data)[4] == 1).any()  # a commit writes slice 3
    _click(viewer, widget, 44, 44)
    assert widget._status.text().startswith("Label 1 is not on slice 4"), widget._status.text()


def test_a_plain_click_on_the_boxes_layer_says_how_to_draw_a_box(stack_widget, qtbot):
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.boxes_layer
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: len(c.boxes_layer.data) == 0, timeout=5_000)  # not left invisible
    assert widget._status.text().startswith(
        "A click on 'SAM boxes' draws no box: drag to draw one, or select 'SAM points'"), (
        widget._status.text())


def test_loading_a_session_is_said_in_a_notification_too(make_widget, stack_file, tiny_ckpt,
                                                         tmp_path, notifications):
    """The status line's 'Loaded the session ...' is soon replaced by the preview's line:
    a notification keeps it in view."""
    from sam_qt_helpers import pick_checkpoint

    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(stack_file), plugin="napari")
    viewer.dims.set_point(0, 3)
    _click(viewer, widget, 20, 20)
    press_key(viewer, "Shift-C")
    path = widget.save_session(str(tmp_path / "blobs.json"))
    widget.load_session(str(path))
    assert any(m.startswith("Loaded the session blobs.json (1 commit") for _, m in notifications), (
        notifications, widget._status.text())
