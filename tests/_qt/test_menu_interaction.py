"""The widget as users meet it: opened from the Plugins menu (napari's viewer proxy), clicked
with real mouse events on the canvas, jobs in napari's worker threads where it matters."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack, canvas_click, use_predictor


def test_widget_gets_napari_proxy_and_keeps_the_layers_themselves(stack_widget):
    from napari.utils._proxies import PublicOnlyProxy

    viewer, widget = stack_widget
    assert isinstance(widget.viewer, PublicOnlyProxy)  # what the menu hands a plugin
    c = widget.controller
    for layer in (c.image_layer, c.points_layer, c.boxes_layer, c.preview_layer):
        assert not isinstance(layer, PublicOnlyProxy)
        assert any(layer is ly for ly in viewer.layers)


def test_shift_click_on_the_canvas_makes_a_negative_point(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    assert viewer.layers.selection.active.name == "SAM points"
    canvas_click(viewer, 20, 20)
    canvas_click(viewer, 30, 30, modifiers=("Shift",))
    canvas_click(viewer, 22, 22)
    assert np.allclose(c.points_layer.data, [[3, 20, 20], [3, 30, 30], [3, 22, 22]], atol=0.5)
    kinds = c.points_layer.features["prompt"].astype(str).tolist()
    assert kinds == ["positive", "negative", "positive"]
    assert c.objects()[0].slices[3].labels.tolist() == [1, 0, 1]
    assert c.previews and c.previews[0].z == 3  # the live preview followed the clicks


def test_labels_box_shows_the_layer_commits_go_into(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    assert widget._target.currentText() == "new 'segmentation' layer"
    canvas_click(viewer, 20, 20)
    widget._on_commit()
    assert c.target_layer.name == "segmentation"
    assert widget._target.currentText() == "segmentation"
    # another labels layer chosen in the box: commits go there, and the box says so
    manual = viewer.add_labels(np.zeros((6, 64, 64), np.uint16), name="manual")
    assert widget._target.currentText() == "segmentation"  # adding a layer changes nothing
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    assert viewer.layers.selection.active.name == "manual"  # napari selects a new layer
    viewer.layers.selection.active = c.points_layer  # the user selects the points again
    canvas_click(viewer, 44, 44)
    commit = widget._on_commit()
    assert commit is not None and manual.data.max() == 1
    assert widget._target.currentText() == "manual"
    viewer.layers.remove(manual)  # the box falls back to a new layer
    assert widget._target.currentText() == "new 'segmentation' layer"
    assert c.target_layer is None


def test_image_opened_after_the_widget_gets_the_clicks(make_widget, tiny_predictor, qtbot):
    viewer, widget = make_widget()
    c = widget.controller
    assert "Open an image" in widget._status.text()
    use_predictor(widget, tiny_predictor)
    viewer.add_image(blob_stack(z=2), name="late")
    qtbot.waitUntil(lambda: viewer.layers.selection.active is not None
                    and viewer.layers.selection.active.name == "SAM points", timeout=5000)
    viewer.dims.set_point(0, 1)
    canvas_click(viewer, 20, 20)
    assert len(c.points_layer.data) == 1 and c.previews


def test_first_status_says_what_to_do_next(make_widget):
    viewer, widget = make_widget(blob_stack(z=2), name="blobs")
    assert widget.controller.model_choice is not None and widget.controller.source is not None
    text = widget._status.text()
    assert "Pick" not in text and text.startswith("Click on an object in 'blobs'"), text


def test_clicking_a_committed_object_again_commits_nothing(stack_widget, notifications):
    viewer, widget = stack_widget
    c = widget.controller
    canvas_click(viewer, 20, 20)
    mask = c.previews[0].mask
    # the object as committed before: all of the preview but a 3-pixel sliver, and the click
    committed = np.zeros((6, 64, 64), np.uint32)
    committed[3][mask] = 4
    committed[3, 20, 20] = 4
    sliver = np.argwhere(mask & (committed[3] == 0))
    if len(sliver) < 3:
        free = np.argwhere(mask)[:3]
        committed[3][tuple(free.T)] = 0
    else:
        committed[3][mask] = 4
        committed[3][tuple(np.argwhere(mask)[:3].T)] = 0
    committed[3, 20, 20] = 4
    labels = viewer.add_labels(committed.copy(), name="manual")
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    before = len(notifications)
    assert widget._on_commit() is None
    assert np.array_equal(labels.data, committed)  # no sliver as a new label
    said = [m for _, m in notifications[before:]]
    assert said and "committed before" in said[-1] and "label 4" in said[-1]
    assert "committed before" in widget._status.text()
    assert len(c.points_layer.data) == 1  # the prompts stay, to refine or overwrite
    widget._overwrite.setChecked(True)  # the user's choice: replace it
    commit = widget._on_commit()
    assert commit.ids == [5] and np.array_equal(labels.data[3] == 5, mask)


def test_progress_bar_is_full_when_a_threaded_propagation_ends(stack_widget, qtbot):
    viewer, widget = stack_widget
    c = widget.controller
    c.sync = False
    c.live = False
    c.points_layer.add([3, 20, 20])
    widget._on_propagate()
    assert widget._progress.maximum() == 0  # busy while it runs
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.volume is not None
    assert widget._progress.value() == widget._progress.maximum() > 0, (
        widget._progress.value(), widget._progress.maximum())
    assert widget._progress.text() == "100%"


def test_negative_points_alone_on_a_slice_are_named_after_propagation(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.live = False
    c.points_layer.add([3, 20, 20])
    widget._negative.setChecked(True)
    c.points_layer.add([5, 20, 20])  # negative only, on slice 5
    widget._negative.setChecked(False)
    widget._scope.setCurrentIndex(1)
    widget._on_propagate()
    assert c.volume is not None
    assert "Negative points on slice 5 were ignored" in c.status
    assert "Add a positive point" in c.status


def test_demo_notice_is_not_clipped_in_a_short_dock(make_widget, tiny_predictor, qtbot,
                                                    tmp_path):
    viewer, widget = make_widget(blob_stack(z=2))
    use_predictor(widget, tiny_predictor, name="fake-demo", is_demo=True)
    widget._update_demo_notice()
    viewer.window._qt_window.resize(900, 420)  # a short window: the dock is short too
    viewer.window._qt_window.show()
    qtbot.waitUntil(lambda: widget.isVisible() and widget.height() > 0, timeout=5000)
    qtbot.wait(50)
    viewer.screenshot(str(tmp_path / "short_dock.png"), canvas_only=False)
    label = widget._demo
    assert viewer.window._qt_window.height() < 700  # short: the panels do not all fit
    # the notice's wrapped text gets all the height it needs (not squeezed) ...
    assert label.height() >= label.heightForWidth(label.width()), (
        label.height(), label.heightForWidth(label.width()))
    # ... and all of its width: its right edge is inside the dock widget
    right = label.mapTo(widget, label.rect().topRight()).x()
    assert right < widget.width(), (right, widget.width())
    assert label.width() >= 150


def _jobs(widget):
    """The descriptions of the jobs the widget's controller starts from now on."""
    started = []
    widget.controller.job_changed.connect(
        lambda job: started.append(job.description) if job is not None else None)
    return started


def test_opening_an_image_with_a_model_embeds_the_visible_slice_before_a_click(
        make_widget, tiny_predictor, qtbot):
    """#29: with a model chosen, opening an image loads the model and embeds the visible slice
    in a worker thread without a click; the first click then only decodes."""
    viewer, widget = make_widget(sync=False)  # a real worker thread
    c = widget.controller
    use_predictor(widget, tiny_predictor)
    started = _jobs(widget)
    viewer.add_image(blob_stack(z=6), name="late")  # what File > Open does
    qtbot.waitUntil(lambda: bool(started), timeout=30_000)  # no click, no button
    assert started == ["Computing SAM embeddings"] and len(c.points_layer.data) == 0
    assert c.job is None or c.job.worker is not None  # ran in a thread
    qtbot.waitUntil(lambda: c.job is None, timeout=30_000)
    z = c.current_z()
    assert c.ready([z]) and widget._emb_state.text() == "1 of 6 slices embedded"
    assert tiny_predictor.encoder_calls == 1 and tiny_predictor.decoder_calls == 0
    assert "Click on an object in 'late'" in c.status  # the next step, not "ready"
    qtbot.waitUntil(lambda: viewer.layers.selection.active.name == "SAM points", timeout=5000)
    canvas_click(viewer, 20, 20)
    assert np.allclose(c.points_layer.data, [[z, 20, 20]], atol=0.5)
    assert c.previews and c.previews[0].z == z  # previewed (random weights: any mask)
    assert started == ["Computing SAM embeddings"]  # the click started no job
    assert tiny_predictor.encoder_calls == 1 and tiny_predictor.decoder_calls == 1


def test_choosing_a_model_embeds_the_visible_slice(make_widget, tiny_sam, tmp_path, qtbot):
    """Picking a model (here a checkpoint file) for the open image starts the embedding of
    the visible slice; a click during that job is previewed when it ends, with no second
    job."""
    import torch

    path = tmp_path / "my_model.pt"
    torch.save(tiny_sam.state_dict(), path)
    viewer, widget = make_widget(blob_stack(z=4), sync=False, preload=False, name="img")
    c = widget.controller
    qtbot.wait(10)  # the preload scheduled on opening (default model) is not run: off
    assert c.job is None and not c.ready([c.current_z()])
    widget.preload = True
    started = _jobs(widget)
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(path))  # what the Model box does
    qtbot.waitUntil(lambda: bool(started), timeout=30_000)
    z = c.current_z()
    c.points_layer.add([z, 20, 20])  # a click while the model loads: queued
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=30_000)
    # (the file read in a job of its own first: not on the UI thread)
    assert started == ["Reading the checkpoint my_model.pt", "Computing SAM embeddings"]
    assert c.predictor.model.model_id.startswith("file:") and c.predictor.encoder_calls == 1
    assert c.previews[0].z == z


def test_no_preload_of_a_model_that_would_be_downloaded(make_widget, tiny_predictor, qtbot):
    from napari_sam.annotate.model_choice import ModelChoice

    viewer, widget = make_widget(blob_stack(z=2), sync=False, preload=False, name="img")
    c = widget.controller
    c.set_model(ModelChoice("vit_b", "vit_b (download, 375 MB)", cached=False))
    assert c.preload() is None and c.job is None  # nothing fetched before a click
    use_predictor(widget, tiny_predictor)
    job = c.preload()
    assert job is not None and job.description == "Computing SAM embeddings"
    qtbot.waitUntil(lambda: c.job is None, timeout=30_000)
    assert c.ready([c.current_z()]) and c.preload() is None  # already embedded: nothing to do


def test_deleted_sam_layers_come_back_and_clicks_prompt_again(stack_widget, qtbot):
    """Deleting 'SAM points' (or the preview layer) left clicks doing nothing and a status
    asking for a click: the layer is put back, empty, the status says so, and the next click
    prompts and previews again."""
    viewer, widget = stack_widget
    c = widget.controller
    canvas_click(viewer, 20, 20)
    assert c.previews
    for name in ("SAM points", "SAM current object"):
        viewer.layers.remove(name)
        qtbot.waitUntil(lambda name=name: name in [ly.name for ly in viewer.layers],
                        timeout=5000)
        assert f"The '{name}' layer was deleted" in c.status, c.status
        assert not c.previews and len(c.points_layer.data) == 0
        assert viewer.layers.selection.active.name == "SAM points"
        canvas_click(viewer, 22, 22)
        assert np.allclose(c.points_layer.data, [[3, 22, 22]], atol=0.5)
        assert c.previews and c.preview_layer.data.any()  # drawn in the new preview layer
        c.points_layer.data = np.zeros((0, 3))  # for the next round


def test_status_follows_a_new_model_and_a_removed_image(make_widget):
    """The status line said "Embeddings ready ... [demo model]" after another model was
    chosen, and "Cleared." after the image was removed: it now says what is true and what
    to do."""
    from napari_sam.annotate.model_choice import ModelChoice

    viewer, widget = make_widget(blob_stack(z=2), name="blobs")
    c = widget.controller
    c.set_model(ModelChoice("vit_b", "vit_b (download, 375 MB)", cached=False))
    text = widget._status.text()
    assert text.startswith("Model vit_b. It is downloaded at the first click"), text
    assert "demo" not in text and "Click on an object in 'blobs'" in text
    viewer.layers.remove("blobs")
    assert widget._status.text().startswith("Open an image"), widget._status.text()
