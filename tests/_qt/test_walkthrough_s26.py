"""Session 26: the live preview follows every input of what Shift+C commits, as users meet
it (the dock from the Plugins menu, clicks on the canvas, key presses). Before, ticking
'Refine selected label' or picking another label after a click left the old preview on the
canvas, and Shift+C then refused it."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import canvas_click, press_key


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
    press_key(viewer, "Shift-C")
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
    press_key(viewer, "Shift-C")
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
    press_key(viewer, "Shift-C")
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


def _pick_image(widget, name: str) -> None:
    box = widget._image
    index = box.findData(name)
    assert index >= 0, [box.itemData(i) for i in range(box.count())]
    box.setCurrentIndex(index)


def _commit_click(viewer, widget, row, col):
    viewer.layers.selection.active = widget.controller.points_layer
    viewer.dims.set_point(0, 3)
    canvas_click(viewer, row, col)
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label"), widget._status.text()


def _blobs_and_flipped(make_widget, tiny_predictor):
    """``(viewer, widget, labels layer)``: images 'blobs' and 'flipped' (one shape), a click
    committed on 'blobs' into that labels layer, 'blobs' shown."""
    from sam_qt_helpers import blob_stack, use_predictor

    viewer, widget = make_widget(blob_stack(), name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.add_image(blob_stack()[:, ::-1].copy(), name="flipped")
    _pick_image(widget, "blobs")
    _commit_click(viewer, widget, 20, 20)
    return viewer, widget, widget.controller.target_layer


def test_two_images_of_one_shape_commit_into_their_own_labels_layers(make_widget,
                                                                     tiny_predictor):
    """A review found one 'segmentation' layer taking both images' commits (each image's
    autosave then held the other's labels) and Shift+U on one image undoing the other's."""
    viewer, widget, blobs_layer = _blobs_and_flipped(make_widget, tiny_predictor)
    c = widget.controller
    _pick_image(widget, "flipped")
    assert c.image_name() == "flipped"
    assert c.target_layer is None  # not blobs' layer, although it fits
    _commit_click(viewer, widget, 20, 20)
    flipped_layer = c.target_layer
    assert flipped_layer is not blobs_layer
    assert np.unique(flipped_layer.data).tolist() == [0, 1]  # its own ids, from 1
    # Shift+U here undoes nothing of blobs; back on blobs, commits go on into its layer
    _pick_image(widget, "blobs")
    assert c.target_layer is blobs_layer
    assert widget._target.currentText() == blobs_layer.name
    _commit_click(viewer, widget, 44, 44)
    assert np.unique(blobs_layer.data).tolist() == [0, 1, 2]
    assert np.unique(flipped_layer.data).tolist() == [0, 1]
    _pick_image(widget, "flipped")
    assert c.target_layer is flipped_layer
    before = blobs_layer.data.copy()
    press_key(viewer, "Shift-U")  # the last commit was blobs': refused, nothing changes
    text = widget._status.text()
    assert text.startswith(f"Not undone: the last commit went into '{blobs_layer.name}', the "
                           "labels of another image; pick that image"), text
    assert np.array_equal(blobs_layer.data, before)
    _pick_image(widget, "blobs")
    press_key(viewer, "Shift-U")
    assert widget._status.text().startswith("Undid commit of label 2"), widget._status.text()
    assert np.unique(blobs_layer.data).tolist() == [0, 1]


def test_coming_back_to_an_image_commits_into_its_layer_not_a_third(make_widget,
                                                                    tiny_predictor):
    """In-memory images of two shapes: the second visit of the second image made a third
    layer ('segmentation [2]'), its objects split over two layers (a review)."""
    from sam_qt_helpers import blob_stack, use_predictor

    viewer, widget = make_widget(blob_stack(), name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.add_image(blob_stack()[:, :48, :56].copy(), name="small")
    c = widget.controller
    seen = []
    for name, (row, col) in (("blobs", (20, 20)), ("small", (20, 20)), ("blobs", (44, 44))):
        _pick_image(widget, name)
        _commit_click(viewer, widget, row, col)
        seen.append(c.target_layer)
    _pick_image(widget, "small")
    seen.append(c.target_layer)
    assert widget._target.currentText() == seen[1].name
    assert seen[0] is seen[2] and seen[1] is seen[3] and seen[0] is not seen[1]
    labels_layers = [ly for ly in viewer.layers if ly.name.startswith("segmentation")]
    assert len(labels_layers) == 2


def _saved_session(make_widget, tiny_ckpt, tmp_path, **settings):
    """A session of 'blobs' saved with one commit; ``settings`` ticked in the dock first."""
    from sam_qt_helpers import blob_stack, pick_checkpoint

    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    if settings.get("overwrite"):
        widget._overwrite.setChecked(True)
    if settings.get("axis_kind") == "t":
        widget._axis_kind.setCurrentIndex(1)
    _commit_click(viewer, widget, 20, 20)
    return widget.save_session(str(tmp_path / "work.json"))


def test_a_loaded_session_brings_back_its_settings(make_widget, tiny_ckpt, tmp_path):
    """The dock recorded the stack axis only once Propagate ran, and loading restored neither
    it nor 'Overwrite other labels' (a review)."""
    import json

    from sam_qt_helpers import blob_stack, pick_checkpoint

    path = _saved_session(make_widget, tiny_ckpt, tmp_path, overwrite=True, axis_kind="t")
    saved = json.loads(path.read_text())["settings"]
    assert saved["axis_kind"] == "t" and saved["overwrite"] is True
    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    assert not widget._overwrite.isChecked() and widget._axis_kind.currentIndex() == 0
    widget.load_session(str(path))
    c = widget.controller
    assert widget._overwrite.isChecked() and c.overwrite
    assert widget._axis_kind.currentIndex() == 1 and c.axis_kind == "t"


def test_loading_keeps_the_prompts_drawn_or_refuses(make_widget, tiny_ckpt, tmp_path):
    """Loading replaced the user's uncommitted prompts without a word (a review)."""
    from sam_qt_helpers import blob_stack, pick_checkpoint

    path = _saved_session(make_widget, tiny_ckpt, tmp_path)  # no pending prompts
    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    c = widget.controller
    viewer.dims.set_point(0, 2)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 44, 44)
    drawn = c.prompt_arrays()[0].copy()
    widget.load_session(str(path))
    assert np.array_equal(c.prompt_arrays()[0], drawn)  # kept, and previewed again
    text = widget._status.text()  # the load's line stays, the preview's follows it
    assert text.startswith("Loaded the session work.json (") and "point object: score" in text
    assert c.target_layer is not None and c.target_layer.data.max() == 1
    # a session with prompts of its own is refused while prompts are drawn
    pending = tmp_path / "pending.json"
    widget.save_session(str(pending))  # holds the drawn point
    widget._on_clear()
    canvas_click(viewer, 20, 44)
    layers = len(viewer.layers)
    assert widget.load_session(str(pending)) is None
    text = widget._status.text()
    assert text.startswith("Not loaded: pending.json has uncommitted prompts of its own, and "
                           "those on the image now would be lost: commit them (Shift+C) or "
                           "clear them (Shift+X)"), text
    assert np.allclose(c.prompt_arrays()[0], [[2, 20, 44]])  # the prompt drawn now stays
    assert len(viewer.layers) == layers


def test_loading_a_session_twice_makes_no_second_labels_layer(make_widget, tiny_ckpt,
                                                              tmp_path):
    from sam_qt_helpers import blob_stack, pick_checkpoint

    path = _saved_session(make_widget, tiny_ckpt, tmp_path)
    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    widget.load_session(str(path))
    first = widget.controller.target_layer
    widget.load_session(str(path))
    labels = [ly for ly in viewer.layers if ly.name.startswith("segmentation")]
    assert [ly.name for ly in labels] == [first.name]
    assert widget.controller.target_layer is first


def test_picking_another_image_says_what_to_do_there(make_widget, tiny_predictor):
    """The last image's 'Committed label 1 ... Shift+U undoes it' stayed (a review)."""
    from sam_qt_helpers import blob_stack, use_predictor

    viewer, widget = make_widget(blob_stack(), name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.add_image(blob_stack()[:, :48].copy(), name="other")
    _pick_image(widget, "blobs")
    _commit_click(viewer, widget, 20, 20)
    _pick_image(widget, "other")
    text = widget._status.text()
    assert "Committed label" not in text and "Shift+U undoes" not in text, text
    assert text == widget.controller.next_step()


def test_loading_goes_to_the_pending_prompts_slice_with_live_preview_off(make_widget,
                                                                        tiny_ckpt, tmp_path):
    """docs/gui.md says loading goes to the slice where the prompts are; it did so only with
    *Live preview* on (a review)."""
    from sam_qt_helpers import blob_stack, pick_checkpoint

    viewer, widget = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(widget, tiny_ckpt)
    viewer.dims.set_point(0, 4)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 20, 20)
    path = widget.save_session(str(tmp_path / "pending.json"))
    v2, w2 = make_widget(blob_stack(), name="blobs")
    pick_checkpoint(w2, tiny_ckpt)
    w2._live.setChecked(False)
    v2.dims.set_point(0, 1)
    w2.load_session(str(path))
    assert w2.controller.current_z() == 4
    assert np.allclose(w2.controller.prompt_arrays()[0], [[4, 20, 20]])


def test_a_closed_images_labels_go_to_no_other_image(make_widget, tiny_predictor):
    """A review: after deleting one image, the other image of its shape took over its labels
    layer (commits mixed into it, its autosave written with them)."""
    import json

    viewer, widget, blobs_layer = _blobs_and_flipped(make_widget, tiny_predictor)
    c = widget.controller
    json.dumps(blobs_layer.metadata)  # plain strings: any writer can save it
    # napari's Duplicate Layer copies the metadata: the copy claims no image
    copy = viewer.add_labels(blobs_layer.data.copy(), name="segmentation copy",
                             metadata=dict(blobs_layer.metadata))
    _pick_image(widget, "flipped")
    _pick_image(widget, "blobs")
    assert c.target_layer is blobs_layer and c.target_layer is not copy
    kept = blobs_layer.data.copy()
    viewer.layers.remove("blobs")
    assert c.image_name() == "flipped"
    assert c.target_layer is None or c.target_layer not in (blobs_layer, copy)
    _commit_click(viewer, widget, 20, 20)
    assert c.target_layer not in (blobs_layer, copy)
    assert np.array_equal(blobs_layer.data, kept)
    # its commits are not undone from here either (the image they belong to is closed)
    widget._on_undo()
    assert np.array_equal(blobs_layer.data, kept)
    widget._on_undo()
    assert widget._status.text().startswith("Not undone: the last commit went into"), \
        widget._status.text()
    assert np.array_equal(blobs_layer.data, kept)


def test_picking_another_labels_layer_while_refining_previews_again(stack_widget):
    """A review: with 'Refine selected label' ticked, picking another labels layer kept the
    preview seeded from the first layer's label."""
    viewer, widget = stack_widget
    c = widget.controller
    first, existing = _manual(viewer, widget)
    other_data = np.zeros_like(existing)
    other_data[3, 30:50, 30:50] = 5
    other = viewer.add_labels(other_data, name="other")
    other.selected_label = 5
    widget._refresh_targets()
    viewer.layers.selection.active = c.points_layer
    widget._refine.setChecked(True)
    canvas_click(viewer, 20, 20)
    before = c.previews[0].mask.copy()
    widget._target.setCurrentIndex(widget._target.findText("other"))
    widget._on_target_changed()
    assert c.target_layer is other
    assert not np.array_equal(c.previews[0].mask, before)  # decoded from 'other''s label 5


def test_choosing_the_same_model_again_keeps_the_propagation(stack_widget):
    """A review: picking the model shown again in 'Model' (or Return in the empty store
    field) dropped a finished propagation while the status still said Shift+C commits."""
    viewer, widget = stack_widget
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    press_key(viewer, "Shift-D")
    assert c.volume is not None, widget._status.text()
    widget._model.activated.emit(widget._model.currentIndex())
    widget._store.editingFinished.emit()
    assert c.volume is not None and c.preview_layer.data.any()
    press_key(viewer, "Shift-C")
    assert widget._status.text().startswith("Committed label 1"), widget._status.text()
