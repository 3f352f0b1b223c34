"""The model sees the image layer's contrast limits once the user has set them (a walk-through
found the dock embedding with the stack's percentiles whatever the layer showed: a faint disc
made visible by the user's limits scored 0.47 and segment everything missed it).

A freshly added layer (napari's own limits) still embeds with the stack's percentiles, exactly
as before; changing the limits re-embeds once the slider rests and after a running job; the
Setup box 'Model sees the layer's contrast' (off by default: a contrast change only to look
must not embed again; the first change says how to give the limits to the model) and napari's
reset go back; a propagated preview waits; Load restores a session's limits."""

from __future__ import annotations

import threading

import numpy as np
from sam_qt_helpers import canvas_click, contrast_box, use_predictor

from napari_sam._qt.layer_contrast import DEBOUNCE_MS, HINT


def _faint_and_bright():
    """A bright disc (2000) at (40, 60) and a faint one (260) at (90, 90) on 200."""
    yy, xx = np.mgrid[:128, :128]
    img = np.full((128, 128), 200.0) + np.random.default_rng(0).normal(0, 3, (128, 128))
    img[(yy - 40) ** 2 + (xx - 60) ** 2 <= 144] = 2000
    img[(yy - 90) ** 2 + (xx - 90) ** 2 <= 144] = 260
    return img.astype(np.uint16)


def _demo(widget):
    idx = next(i for i in range(widget._model.count())
               if widget._model.itemData(i) is not None and widget._model.itemData(i).is_demo)
    widget._model.setCurrentIndex(idx)
    widget._on_model_changed()


def test_the_users_limits_make_the_faint_disc_seen(demo_available, make_widget, qtbot):
    viewer, widget = make_widget(_faint_and_bright(), name="contrast")
    _demo(widget)
    c, layer = widget.controller, viewer.layers["contrast"]
    qtbot.waitUntil(lambda: c.emb is not None, timeout=60_000)  # the preload
    contrast_box(widget).click()  # the user ticks 'Model sees the layer's contrast'
    layer.contrast_limits = (190, 270)  # what napari's contrast slider sets
    qtbot.waitUntil(lambda: c.emb is not None and c.emb.contrast_limits == (190.0, 270.0),
                    timeout=60_000)
    assert "Contrast changed: slices are embedded again with the layer's limits (190-270)." \
        in widget._status.text()
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 90, 90)
    qtbot.waitUntil(lambda: bool(c.previews), timeout=60_000)
    mask = c.source.zyx_view(c.preview_layer.data)[0] > 0
    yy, xx = np.mgrid[:128, :128]
    disc = (yy - 90) ** 2 + (xx - 90) ** 2 <= 144
    assert c.previews[0].score > 0.8, c.status  # 0.47 with the stack's percentiles
    assert (mask & disc).sum() / (mask | disc).sum() > 0.7
    c.clear()
    widget._on_automatic()
    qtbot.waitUntil(lambda: "automatic segmentation" in viewer.layers, timeout=120_000)
    auto = np.asarray(viewer.layers["automatic segmentation"].data)
    assert auto[40, 60] and auto[90, 90] and auto[40, 60] != auto[90, 90]


def test_a_fresh_layer_embeds_as_before(make_widget, tiny_predictor):
    from napari_sam.embeddings import StackEmbeddings, stack_intensity_limits
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", preload=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    c.compute_embeddings([3])
    assert c.model_contrast() is None
    assert c.emb.contrast_limits == stack_intensity_limits(c.source.stack)
    ref = StackEmbeddings(c.source.stack, tiny_predictor.model, predictor=tiny_predictor)
    assert np.array_equal(c.emb[3].features.numpy(), ref[3].features.numpy())
    # the box sits in Setup, under 'Tile large images'
    form = widget._tile.parentWidget().layout()
    assert form.getWidgetPosition(contrast_box(widget))[0] == form.getWidgetPosition(widget._tile)[0] + 1


def test_limits_set_before_the_dock_opened_are_seen(make_widget, tiny_predictor, qtbot):
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", preload=False,
                                 contrast_limits=(10, 120))
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    c.compute_embeddings([3])
    assert c.model_contrast() is None  # the box is off by default
    contrast_box(widget).click()
    qtbot.waitUntil(lambda: c.model_contrast() == (10.0, 120.0), timeout=30_000)
    c.compute_embeddings([3])
    assert c.emb.contrast_limits == (10.0, 120.0)


def test_a_dragged_slider_re_embeds_once_after_the_running_job(make_widget, tiny_predictor,
                                                               qtbot):
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", sync=False, preload=False)
    use_predictor(widget, tiny_predictor)
    c, layer = widget.controller, viewer.layers["blobs"]
    contrast_box(widget).click()
    calls = []
    changed = c.contrast_changed
    c.contrast_changed = lambda: calls.append(c.model_contrast()) or changed()
    gate = threading.Event()

    def blocking():
        yield 0, 1
        gate.wait(20)
        yield 1, 1

    job = c.start_job(blocking(), "Waiting", lambda value: None)
    lo = float(layer.contrast_limits[0])
    for hi in np.linspace(200, 100, 12):  # a drag: one event per step
        layer.contrast_limits = (lo, float(hi))
        qtbot.wait(20)
    qtbot.wait(3 * DEBOUNCE_MS)
    assert calls == [] and c.model_contrast() is None  # waits for the job
    gate.set()
    qtbot.waitUntil(lambda: not job.running, timeout=60_000)
    qtbot.waitUntil(lambda: bool(calls), timeout=30_000)
    qtbot.wait(2 * DEBOUNCE_MS)
    assert calls == [(lo, 100.0)]  # once, with where the slider rested
    assert widget._status.text().startswith("Contrast changed: slices are embedded again "
                                            f"with the layer's limits ({lo:g}-100)"), \
        widget._status.text()


def test_the_box_and_napari_reset_go_back_to_the_percentiles(make_widget, tiny_predictor,
                                                             qtbot):
    viewer, widget = make_widget(_faint_and_bright(), name="contrast", preload=False)
    use_predictor(widget, tiny_predictor)
    c, layer, box = widget.controller, viewer.layers["contrast"], contrast_box(widget)
    box.click()
    layer.contrast_limits = (190, 270)
    qtbot.waitUntil(lambda: c.model_contrast() == (190.0, 270.0), timeout=30_000)
    box.setChecked(False)
    qtbot.waitUntil(lambda: c.model_contrast() is None, timeout=30_000)
    assert "the stack's own 0.5-99.5 percentile limits" in widget._status.text()
    box.setChecked(True)
    qtbot.waitUntil(lambda: c.model_contrast() == (190.0, 270.0), timeout=30_000)
    layer.reset_contrast_limits()  # napari's reset: the data range napari chose at first
    qtbot.waitUntil(lambda: c.model_contrast() is None, timeout=30_000)


def test_a_look_at_other_limits_keeps_the_embeddings_and_says_how_once(make_widget,
                                                                      tiny_predictor, qtbot):
    """The box is off by default: dragging the contrast slider only to look embeds nothing
    again; the first change says once how to give the limits to the model."""
    viewer, widget = make_widget(_faint_and_bright(), name="contrast", preload=False)
    use_predictor(widget, tiny_predictor)
    c, layer = widget.controller, viewer.layers["contrast"]
    c.compute_embeddings([0])
    emb = c.emb
    assert not contrast_box(widget).isChecked()
    layer.contrast_limits = (190, 270)
    qtbot.waitUntil(lambda: widget._status.text().startswith(HINT), timeout=30_000)
    qtbot.wait(2 * DEBOUNCE_MS)
    assert c.model_contrast() is None and c.emb is emb
    c.say("something else")
    layer.contrast_limits = (150, 300)
    qtbot.wait(2 * DEBOUNCE_MS)
    assert widget._status.text().startswith("something else")  # once per dock


def test_a_propagated_preview_is_kept_until_committed(make_widget, tiny_predictor, qtbot):
    """With the box ticked, a contrast change while a propagated preview waits for its commit
    keeps the preview (it was dropped) and applies the limits once it is committed."""
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", preload=False)
    use_predictor(widget, tiny_predictor)
    c, layer = widget.controller, viewer.layers["blobs"]
    contrast_box(widget).click()
    c.go_to_slice(3)
    c.add_point(3, 20, 20)
    c.propagate()
    qtbot.waitUntil(lambda: c.volume is not None, timeout=30_000)
    volume = c.volume
    layer.contrast_limits = (0, 40)
    qtbot.waitUntil(lambda: "the propagated preview is kept" in widget._status.text(),
                    timeout=30_000)
    assert c.volume is volume and c.model_contrast() is None
    c.commit()
    qtbot.waitUntil(lambda: c.model_contrast() == (0.0, 40.0), timeout=30_000)
    assert np.asarray(viewer.layers["segmentation"].data).any()


def test_loading_a_session_restores_the_limits_its_model_saw(make_widget, tiny_predictor,
                                                             qtbot, tmp_path):
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", preload=False)
    use_predictor(widget, tiny_predictor)
    c, layer, box = widget.controller, viewer.layers["blobs"], contrast_box(widget)
    box.click()
    layer.contrast_limits = (0, 40)
    qtbot.waitUntil(lambda: c.model_contrast() == (0.0, 40.0), timeout=30_000)
    c.go_to_slice(3)
    c.add_point(3, 20, 20)
    c.update_preview()
    c.commit()
    path = c.save_session(tmp_path / "work")
    box.click()
    layer.reset_contrast_limits()
    qtbot.waitUntil(lambda: c.model_contrast() is None, timeout=30_000)
    infos = []
    c.notify_info = infos.append
    c.load_session(path)
    assert box.isChecked() and tuple(layer.contrast_limits) == (0.0, 40.0)
    assert c.model_contrast() == (0.0, 40.0)
    assert any("The session's model saw the layer's limits (0-40)" in t for t in infos), infos


def test_closing_the_dock_lets_its_contrast_stores_go(make_widget, tiny_predictor, qtbot,
                                                      tmp_path):
    """A closed dock held its layer's-limits embedding stores until garbage collection, so
    another dock never deleted them (helper 161's note): closing lets them go at once."""
    from napari_sam.annotate.contrast_stores import store_in_use
    from stacks import blob_stack

    viewer, widget = make_widget(blob_stack(), name="blobs", preload=False,
                                 contrast_limits=(10, 120))
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    widget._store.setText(str(tmp_path / "emb.zarr"))
    widget._on_store_changed()
    contrast_box(widget).click()
    qtbot.waitUntil(lambda: c.model_contrast() == (10.0, 120.0), timeout=30_000)
    c.compute_embeddings([3])
    store = tmp_path / "emb.contrast-10-120.zarr"
    assert store.is_dir() and store_in_use(store)
    viewer.window.remove_dock_widget(widget)
    assert not store_in_use(store)
