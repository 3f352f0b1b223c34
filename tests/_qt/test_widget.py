"""The dock widget driven like a user, with the tiny random model (wiring, not quality).

Jobs run synchronously here (``SamWidget(viewer, sync=True)``); tests/_qt/test_responsive.py
runs them in worker threads.
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, press_key, use_predictor


def _layer(viewer, name):
    return next(ly for ly in viewer.layers if ly.name == name)


def _click(layer, position, modifiers=()):
    from napari.utils._test_utils import read_only_mouse_event
    from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

    press = read_only_mouse_event(type="mouse_press", position=position, modifiers=list(modifiers))
    mouse_press_callbacks(layer, press)
    release = read_only_mouse_event(
        type="mouse_release", position=position, modifiers=list(modifiers)
    )
    mouse_release_callbacks(layer, release)


def test_setup_makes_prompt_layers_and_binds_keys(stack_widget):
    from napari_sam._qt import keys

    viewer, widget = stack_widget
    c = widget.controller
    names = [ly.name for ly in viewer.layers]
    assert names == ["blobs", "SAM current object", "SAM boxes", "SAM points"]
    assert viewer.layers.selection.active is c.points_layer
    assert c.points_layer.mode == "add" and c.boxes_layer.mode == "add_rectangle"
    bound = {str(k) for k in viewer.keymap}
    for k in keys.KEYS:
        assert k.key.replace("-", "+") in bound
        assert k.key.replace("-", "+") in widget._help.toolTip()


def test_keys_unbound_on_close_and_previous_binding_restored(make_napari_viewer):
    from napari_sam._qt import keys

    viewer = make_napari_viewer()
    calls = []
    viewer.bind_key("Shift-C", lambda v: calls.append(1), overwrite=True)
    from sam_qt_helpers import open_from_menu

    dock, widget = open_from_menu(viewer)
    bound = {str(k): f for k, f in viewer.keymap.items()}
    assert set(bound) >= {k.key.replace("-", "+") for k in keys.KEYS}
    viewer.window.remove_dock_widget(dock)
    remaining = {str(k): f for k, f in viewer.keymap.items()}
    assert set(remaining) == {"Shift+C"}
    remaining["Shift+C"](viewer)
    assert calls == [1]


def test_point_preview_commit_undo_redo_with_keys(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    preview = c.source.zyx_view(c.preview_layer.data)
    assert preview[3].any() and not preview[[0, 1, 2, 4, 5]].any()
    shown = preview[3] == 1
    press_key(viewer, "Shift-C")
    target = _layer(viewer, "segmentation")
    assert c.target_layer is target
    assert np.array_equal(target.data[3] == 1, shown)
    assert len(c.points_layer.data) == 0 and not c.preview_layer.data.any()
    committed = target.data.copy()
    press_key(viewer, "Shift-U")
    assert not target.data.any()
    press_key(viewer, "Shift-R")
    assert np.array_equal(target.data, committed)
    # the next object gets the next id
    c.points_layer.add([3, 44, 44])
    commit = widget._on_commit()
    assert commit.ids == [2]
    assert np.array_equal(target.data[target.data == 1], committed[committed == 1])


def test_commit_keeps_other_labels_unless_overwrite(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    existing = np.zeros((6, 64, 64), np.uint16)
    existing[3, 10:30, 10:30] = 7  # covers most of the first disc
    existing[3, 40:50, 40:50] = 3
    labels = viewer.add_labels(existing.copy(), name="manual")
    widget._refresh_targets()
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    assert c.target_layer is labels
    before = labels.data.copy()

    c.points_layer.add([3, 20, 20])
    mask = c.previews[0].mask.copy()
    assert (mask & (before[3] == 7)).any()
    commit = widget._on_commit()
    assert commit.ids == [8]  # fresh: max + 1
    others = before != 0
    assert np.array_equal(labels.data[others], before[others])  # every other pixel unchanged
    assert np.array_equal(labels.data[3] == 8, mask & (before[3] == 0))
    widget._on_undo()
    assert np.array_equal(labels.data, before)  # exact

    widget._overwrite.setChecked(True)
    c.points_layer.add([3, 20, 20])
    mask = c.previews[0].mask.copy()
    widget._on_commit()
    assert (labels.data[3][mask] == 8).all()
    widget._on_undo()
    assert np.array_equal(labels.data, before)


def test_negative_points_by_shift_click_and_key(stack_widget):
    from napari.utils.colormaps.standardize_color import transform_color

    from napari_sam._qt.layers import NEGATIVE_COLOR, POSITIVE_COLOR

    viewer, widget = stack_widget
    c = widget.controller
    _click(c.points_layer, (3, 20, 20))
    _click(c.points_layer, (3, 30, 30), modifiers=["Shift"])
    press_key(viewer, "N")
    assert widget._negative.isChecked()
    c.points_layer.add([3, 5, 5])
    press_key(viewer, "N")
    c.points_layer.add([3, 22, 22])
    kinds = c.points_layer.features["prompt"].astype(str).tolist()
    assert kinds == ["positive", "negative", "negative", "positive"]
    colors = c.points_layer.face_color
    pos, neg = transform_color(POSITIVE_COLOR)[0], transform_color(NEGATIVE_COLOR)[0]
    assert np.allclose(colors[[0, 3]], pos) and np.allclose(colors[[1, 2]], neg)
    obj = c.objects()[0]
    assert obj.slices[3].labels.tolist() == [1, 0, 0, 1]


def test_next_candidate_cycles_masks(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    p = c.previews[0]
    assert p.n_candidates == 3
    first = p.index
    press_key(viewer, "Shift-M")
    assert p.index == (first + 1) % 3
    shown = c.source.zyx_view(c.preview_layer.data)[3] == 1
    assert np.array_equal(shown, p.masks[p.index])


def test_boxes_are_objects(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.boxes_layer.add_rectangles(np.array([[3, 10, 10], [3, 10, 30], [3, 30, 30], [3, 30, 10]]))
    c.boxes_layer.add_rectangles(np.array([[3, 36, 36], [3, 36, 52], [3, 52, 52], [3, 52, 36]]))
    assert [p.key for p in c.previews] == [("box", 0), ("box", 1)]
    calls = c.predictor.decoder_calls
    widget._on_segment()
    assert c.predictor.decoder_calls == calls + 1  # both boxes in one decoder call
    commit = widget._on_commit()
    assert commit.ids == [1, 2]


def test_refine_selected_label(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    existing = np.zeros((6, 64, 64), np.uint32)
    existing[3, 12:28, 12:28] = 5
    existing[2, 12:28, 12:28] = 5
    existing[3, 40:50, 40:50] = 2
    labels = viewer.add_labels(existing.copy(), name="manual")
    widget._refresh_targets()
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    labels.selected_label = 5
    widget._refine.setChecked(True)
    c.points_layer.add([3, 20, 20])
    mask = c.previews[0].mask
    commit = widget._on_commit()
    assert commit.ids == [5]
    assert np.array_equal(labels.data[3] == 5, mask & ((existing[3] == 0) | (existing[3] == 5)))
    assert np.array_equal(labels.data[2], existing[2])  # other slices keep the object
    assert (labels.data[3][existing[3] == 2] == 2).all()
    widget._on_undo()
    assert np.array_equal(labels.data, existing)


def test_embeddings_cached_per_layer_and_model(make_widget, tiny_sam, tiny_config):
    import torch

    from napari_sam.models import build_sam
    from napari_sam.predictor import Predictor

    viewer, widget = make_widget(blob_stack(z=5), name="a")
    c = widget.controller
    pa = Predictor(tiny_sam, device="cpu")
    torch.manual_seed(1)
    other = build_sam(tiny_config)
    other.model_id = "tiny-other"
    pb = Predictor(other, device="cpu")
    choice_a = use_predictor(widget, pa, "tiny-a")
    widget._on_compute()
    assert c.ready(range(5)) and pa.encoder_calls > 0
    calls_a = pa.encoder_calls
    use_predictor(widget, pb, "tiny-b")
    widget._on_compute()
    assert pb.encoder_calls > 0
    # back to model a: instant, nothing encoded again
    widget._model.setCurrentIndex(widget._model.findData(choice_a))
    widget._on_model_changed()
    assert c.ready(range(5))
    c.points_layer.add([2, 20, 20])
    assert c.previews and pa.encoder_calls == calls_a
    # another image layer and back
    viewer.add_image(blob_stack(z=5, seed=3), name="b")
    widget._image.setCurrentIndex(widget._image.findText("b"))
    assert not c.ready([0])
    widget._image.setCurrentIndex(widget._image.findText("a"))
    assert c.ready(range(5)) and pa.encoder_calls == calls_a


def test_cancel_leaves_layers_untouched(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()
    c.points_layer.add([3, 44, 44])
    snapshot = {ly.name: np.array(ly.data, copy=True) for ly in viewer.layers if ly.name != "SAM boxes"}
    c.job_progress.connect(lambda done, total: c.cancel())
    widget._on_propagate()
    assert "Cancelled" in c.status
    assert c.volume is None
    for ly in viewer.layers:
        if ly.name in snapshot:
            assert np.array_equal(np.asarray(ly.data), snapshot[ly.name]), ly.name
    assert [ly.name for ly in viewer.layers] == list(snapshot)[:3] + ["SAM boxes"] + list(snapshot)[3:]


def test_propagation_previews_then_commits_3d(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    result = widget._on_propagate()
    assert result is not None and c.volume is not None
    preview = np.array(c.source.zyx_view(c.preview_layer.data))  # a copy: commit clears it
    assert np.array_equal(preview, c.volume.labels)
    assert preview[3].any()
    # the status says where and why each direction stopped
    from napari_sam.annotate.stack_actions import STOP_WORDS

    lo, hi = c.volume.slice_range[1]
    reasons = c.volume.stop_reasons[1]
    where = f"slices {lo}-{hi}" if lo < hi else f"slice {lo}"
    assert f"over {where} (stopped: up: {STOP_WORDS[reasons['up']]}, down: " \
           f"{STOP_WORDS[reasons['down']]})" in c.status
    widget._on_commit()
    target = c.target_layer
    # one new id for the object, exactly where the preview showed it
    committed = c.source.zyx_view(target.data)
    assert np.array_equal(committed > 0, preview > 0)
    assert len(np.unique(committed[committed > 0])) == 1
    widget._on_undo()
    assert not target.data.any()


def test_describe_stops_names_each_direction_or_counts_reasons():
    from napari_sam.annotate.stack_actions import STOP_WORDS, describe_stops
    from napari_sam.volume import STOP_REASONS

    assert set(STOP_WORDS) == set(STOP_REASONS)  # every reason has its short words
    assert describe_stops({4: {"up": "faded", "down": "rebounded"}}) == (
        "up: faded out, down: ran into the next object")
    assert describe_stops({1: {"up": "faded", "down": "edge"},
                           2: {"up": "faded", "down": "claimed"},
                           3: {"up": "edge", "down": "faded"}}) == (
        "faded out 3, stack edge 2, another object's place 1")


def test_rgb_image(make_widget, tiny_predictor):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 60, (48, 64, 3)).astype(np.uint8)
    rgb[10:30, 10:30] = (200, 40, 40)
    viewer, widget = make_widget(rgb, rgb=True, name="photo")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    assert c.points_layer.ndim == 2 and c.preview_layer.data.shape == (48, 64)
    c.points_layer.add([20, 20])
    assert c.previews
    widget._on_commit()
    assert c.target_layer.data.shape == (48, 64) and c.target_layer.data.max() == 1


def test_channel_axis(make_widget, tiny_predictor):
    data = np.stack([blob_stack(z=4), blob_stack(z=4, seed=1)], axis=1)  # (Z, C, Y, X)
    viewer, widget = make_widget(data, name="two channels")
    use_predictor(widget, tiny_predictor)
    boxes, c = widget._channels, widget.controller
    boxes.axis.setCurrentIndex(boxes.axis.findData(1))
    assert (c.channel_axis, c.channel) == (1, 0) and c.source.stack.shape == (4, 64, 64)
    boxes.channel.setCurrentIndex(boxes.channel.count() - 1)  # all: channels as colours
    assert c.channel_axis == 1 and c.source.stack.shape == (4, 64, 64, 3)
    assert c.preview_layer.data.shape == (4, 1, 64, 64)
    viewer.dims.set_point(0, 2)
    viewer.dims.set_point(1, 1)  # second channel shown: our layers still apply
    assert c.current_z() == 2
    c.points_layer.add([2, 0.6, 20, 20])
    assert c.previews and c.previews[0].z == 2
    widget._on_commit()
    assert c.target_layer.data[2, 0].any()


def test_errors_become_notifications(make_widget, notifications, tmp_path, monkeypatch):
    viewer, widget = make_widget()
    widget._on_segment()
    widget._on_commit()
    assert any("No image layer" in m for _, m in notifications)

    viewer.add_image(np.zeros((2, 2, 3, 16, 16)), name="5d")
    assert any("spatial dimensions" in m for _, m in notifications)

    widget._device.addItem("cuda:7")
    widget._device.setCurrentIndex(widget._device.count() - 1)
    assert any("Device" in m and "cuda" in m for _, m in notifications)


def test_offline_download_error_is_a_notification(make_widget, notifications, tmp_path, monkeypatch):
    from napari_sam.annotate.model_choice import ModelChoice
    from napari_sam.models import registry

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path))
    spec = registry.ModelSpec(
        name="offline_test",
        architecture="vit_b",
        url=(tmp_path / "nowhere" / "sam.pth").as_uri(),
        sha256="0" * 64,
        size=10,
        filename="offline_test.pth",
        description="test",
        source="test",
    )
    monkeypatch.setitem(registry.REGISTRY, "offline_test", spec)
    viewer, widget = make_widget(blob_stack(z=2), name="img")
    widget.controller.set_model(ModelChoice("offline_test", "offline_test", cached=False))
    widget._on_compute()
    errors = [m for s, m in notifications if "error" in s.lower()]
    assert errors and "could not be downloaded" in errors[-1]
    assert str(tmp_path) in errors[-1]  # says where to put the file
    assert widget.controller.emb is None


def test_demo_notice_visible_for_demo_model(make_widget, tiny_predictor):
    viewer, widget = make_widget(blob_stack(z=2))
    use_predictor(widget, tiny_predictor, name="fake-demo", is_demo=True)
    widget._update_demo_notice()
    assert not widget._demo.isHidden()
    assert "demo" in widget._demo.text().lower() and "vit_b" in widget._demo.text()


def test_our_keys_are_not_shadowed_by_any_layer(stack_widget):
    from napari.utils.key_bindings import coerce_keybinding

    from napari_sam._qt import keys

    viewer, widget = stack_widget
    c = widget.controller
    handler = viewer.window._qt_viewer._key_map_handler
    for layer in (c.points_layer, c.boxes_layer, c.preview_layer, viewer.layers["blobs"]):
        viewer.layers.selection.active = layer
        handler.keymap_providers = [layer, viewer]
        active = handler.active_keymap
        for k in keys.KEYS:
            fn = active[coerce_keybinding(k.key)]
            assert getattr(fn, "__func__", fn).__module__ == keys.__name__, (layer.name, k.key)


def test_precomputed_embedding_store_is_loaded(make_widget, tiny_sam, tmp_path):
    from napari_sam.embeddings import embed
    from napari_sam.predictor import Predictor

    stack = blob_stack(z=5)
    store = tmp_path / "emb.zarr"
    embed(stack, tiny_sam, store=store, device="cpu", compute=True)  # e.g. `napari-sam embed`

    viewer, widget = make_widget(stack, name="blobs")
    predictor = Predictor(tiny_sam, device="cpu")
    use_predictor(widget, predictor)
    widget._store.setText(str(store))
    widget._on_store_changed()
    widget._on_compute()
    c = widget.controller
    assert c.ready(range(5))
    assert predictor.encoder_calls == 0  # every slice came from the store
    c.points_layer.add([2, 20, 20])
    assert c.previews and c.previews[0].mask.any()


@pytest.mark.parametrize("scope", [0, 1])
def test_segment_everything_writes_a_new_labels_layer(stack_widget, scope):
    pytest.importorskip("napari_sam.automatic")
    viewer, widget = stack_widget
    c = widget.controller
    before = {ly.name: np.array(ly.data, copy=True) for ly in viewer.layers if ly.name != "SAM boxes"}
    widget._pps.setValue(8)
    widget._iou.setValue(0.0)  # random weights: keep whatever comes out
    widget._stability.setValue(0.0)
    widget._auto_scope.setCurrentIndex(scope)
    widget._on_automatic()
    new = [ly for ly in viewer.layers if ly.name.startswith("automatic segmentation")]
    assert len(new) == 1, c.status
    assert new[0].data.shape == (6, 64, 64)
    if scope == 0:  # current slice only
        assert not new[0].data[[0, 1, 2, 4, 5]].any()
        assert "z=3" in new[0].name
    for ly in viewer.layers:  # nothing else changed
        if ly.name in before:
            assert np.array_equal(np.asarray(ly.data), before[ly.name])
    # under the prompts and the preview, which stay visible on top (a review: it covered them)
    names = [ly.name for ly in viewer.layers]
    assert names.index(new[0].name) < min(names.index(ly.name) for ly in
                                          (c.preview_layer, c.points_layer, c.boxes_layer))
    assert c.status.endswith(f"in a new layer '{new[0].name}'."), c.status
    widget._on_automatic()  # again: napari names the second layer "... [1]", and so does the status
    second = [ly for ly in viewer.layers if ly.name.startswith("automatic segmentation")][-1]
    assert second.name != new[0].name and c.status.endswith(f"in a new layer '{second.name}'."), \
        c.status


@pytest.mark.parametrize("propagate,axis", [(True, 1), (False, 0)])
def test_whole_stack_segment_everything_passes_propagation_choice(stack_widget, monkeypatch,
                                                                  propagate, axis):
    auto = pytest.importorskip("napari_sam.automatic")
    viewer, widget = stack_widget
    seen = {}
    real = auto.segment_everything

    def spy(target, model, **kw):
        seen.update(kw)
        return real(target, model, **kw)

    monkeypatch.setattr(auto, "segment_everything", spy)
    widget._pps.setValue(4)
    widget._iou.setValue(0.0)
    widget._stability.setValue(0.0)
    assert not widget._auto_propagate.isEnabled()  # current slice: nothing to propagate
    widget._auto_scope.setCurrentIndex(1)
    assert widget._auto_propagate.isEnabled() and widget._auto_propagate.isChecked()
    widget._auto_propagate.setChecked(propagate)
    widget._axis_kind.setCurrentIndex(axis)
    widget._on_automatic()
    assert seen["propagate"] is propagate and seen["axis_kind"] == ("t" if axis else "z")
    new = [ly for ly in viewer.layers if ly.name.startswith("automatic segmentation")]
    assert len(new) == 1 and new[0].data.shape == (6, 64, 64)


def test_segment_everything_grid_and_gap_filling_follow_the_library_defaults(stack_widget,
                                                                            monkeypatch):
    """The dock's defaults are the library's (points_per_side="auto", fill_gaps=True); a
    number and an unticked box are passed as such."""
    auto = pytest.importorskip("napari_sam.automatic")
    viewer, widget = stack_widget
    calls = []
    real = auto.segment_everything

    def spy(target, model, **kw):
        calls.append(kw)
        return real(target, model, **kw)

    monkeypatch.setattr(auto, "segment_everything", spy)
    widget._iou.setValue(0.0)
    widget._stability.setValue(0.0)
    assert widget._pps.text() == "auto" and widget._fill_gaps.isChecked()
    widget._on_automatic()
    assert calls[-1]["points_per_side"] == "auto" and calls[-1]["fill_gaps"] is True
    widget._pps.setValue(12)
    widget._fill_gaps.setChecked(False)
    widget._on_automatic()
    assert calls[-1]["points_per_side"] == 12 and calls[-1]["fill_gaps"] is False
    new = [ly for ly in viewer.layers if ly.name.startswith("automatic segmentation")]
    assert len(new) == 2 and all(ly.data.shape == (6, 64, 64) for ly in new)


def test_opens_from_the_plugin_menu(make_napari_viewer):
    from napari_sam._qt.widget import SamWidget

    viewer = make_napari_viewer()
    viewer.add_image(blob_stack(z=2), name="img")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-sam-stacks", "Segment Anything")
    assert isinstance(widget, SamWidget)
    assert widget.controller.image_layer is viewer.layers["img"]
    viewer.window.remove_dock_widget(dock)
    assert not {str(k) for k in viewer.keymap}  # keys unbound when the dock is removed


def test_switching_to_an_image_of_another_shape_resets_the_target(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()
    first_target = c.target_layer
    viewer.add_image(np.zeros((40, 50), np.float32), name="flat")
    widget._image.setCurrentIndex(widget._image.findText("flat"))
    assert c.target_layer is None and widget._target.currentData() is None
    viewer.layers["flat"].data[10:20, 10:20] = 1
    c.points_layer.add([15, 15])
    widget._on_commit()
    assert c.target_layer is not first_target and c.target_layer.data.shape == (40, 50)
    assert first_target.data.max() == 1  # the first image's labels are untouched


def test_embedding_state_is_shown(make_widget, tiny_predictor):
    # no preload: the click embeds (with preload the visible slice is embedded first)
    viewer, widget = make_widget(blob_stack(), preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    c = widget.controller
    assert widget._emb_state.text() == "0 of 6 slices embedded"
    c.points_layer.add([3, 20, 20])  # embeds slices 3-5 (one batch)
    assert widget._emb_state.text() == "3 of 6 slices embedded"
    widget._on_compute()
    assert widget._emb_state.text() == "6 of 6 slices embedded"


def test_checkpoint_file_model(make_widget, tiny_sam, tmp_path):
    import torch

    path = tmp_path / "my_model.pt"
    torch.save(tiny_sam.state_dict(), path)
    viewer, widget = make_widget(blob_stack(z=2), name="img")
    file_item = widget._model.findText("Checkpoint file...")
    widget._model.setCurrentIndex(file_item)
    widget._on_model_changed(path=str(path))
    c = widget.controller
    assert c.model_choice.is_file and widget._model.currentText() == "file: my_model.pt"
    widget._on_compute()
    assert c.predictor is not None and c.predictor.model.model_id.startswith("file:")
    assert c.ready([0, 1]) and not c.using_demo


def test_segment_everything_thresholds_follow_the_chosen_model(make_widget, tiny_sam, tmp_path):
    """Choosing a model sets the threshold boxes to its sidecar's recommendation (the demo
    model's, from src/napari_sam/weights/demo.json), or to SAM's 0.88 / 0.95 for a checkpoint
    without one."""
    import json
    from importlib.resources import files

    import torch

    demo = json.loads(files("napari_sam.weights").joinpath("demo.json").read_text())["automatic"]
    assert (demo["pred_iou_thresh"], demo["stability_score_thresh"]) != (0.88, 0.95)

    plain = tmp_path / "plain.pt"
    torch.save(tiny_sam.state_dict(), plain)
    tuned = tmp_path / "tuned.pt"
    torch.save(tiny_sam.state_dict(), tuned)
    (tmp_path / "tuned.json").write_text(
        json.dumps({"automatic": {"pred_iou_thresh": 0.42, "stability_score_thresh": 0.66}}))
    viewer, widget = make_widget(blob_stack(z=2), name="img")
    # a new widget starts on the demo model here (no real weights cached): its thresholds
    assert widget._model.currentData().is_demo
    assert (widget._iou.value(), widget._stability.value()) == (
        demo["pred_iou_thresh"], demo["stability_score_thresh"])
    file_item = widget._model.findText("Checkpoint file...")
    widget._model.setCurrentIndex(file_item)
    widget._on_model_changed(path=str(tuned))
    assert (widget._iou.value(), widget._stability.value()) == (0.42, 0.66)
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(plain))
    assert (widget._iou.value(), widget._stability.value()) == (0.88, 0.95)


def test_device_line_and_precision_box(make_widget, tiny_sam, tmp_path, monkeypatch):
    """The line under Device is device.describe() of the choices and follows them; the
    Precision box reaches the Predictor, and models are cached per precision."""
    import torch

    from napari_sam.device import describe

    path = tmp_path / "my_model.pt"
    torch.save(tiny_sam.state_dict(), path)
    viewer, widget = make_widget(blob_stack(z=2), name="img")
    c = widget.controller
    assert [widget._precision.itemText(i) for i in range(widget._precision.count())] == [
        "auto", "fp32", "bf16"]
    assert widget._precision.currentText() == "auto" and c.precision == "auto"
    assert widget._device_info.text() == describe("auto", "auto")
    assert "set by NAPARI_SAM_PRECISION" in widget._device_info.text()  # the suite pins fp32
    torch.set_num_threads(2)  # the line is recomputed when the device changes
    widget._device.setCurrentIndex(widget._device.findText("cpu"))
    assert widget._device_info.text() == describe("cpu", "auto")
    assert widget._device_info.text().startswith("cpu, fp32") and "2 threads" in \
        widget._device_info.text()
    widget._model.setCurrentIndex(widget._model.findText("Checkpoint file..."))
    widget._on_model_changed(path=str(path))

    widget._precision.setCurrentIndex(widget._precision.findText("bf16"))
    assert c.precision == "bf16" and widget._device_info.text() == "cpu, bf16 (chosen; 2 threads)"
    widget._on_compute()
    bf16 = c.predictor
    assert bf16.precision == "bf16" and bf16.dtype == torch.bfloat16 and c.ready([0, 1])

    widget._precision.setCurrentIndex(widget._precision.findText("fp32"))
    assert c.predictor is None and not c.ready([0])  # another model and other embeddings
    c.points_layer.add([c.current_z(), 20, 20])  # the click loads the fp32 model, embeds
    assert c.previews, c.status
    fp32 = c.predictor
    assert fp32 is not bf16 and fp32.precision == "fp32" and c.previews

    widget._precision.setCurrentIndex(widget._precision.findText("bf16"))
    assert c.predictor is bf16 and c.ready([0, 1])  # cached per precision
    # "auto" resolves to fp32 here (NAPARI_SAM_PRECISION): the fp32 model is reused
    widget._precision.setCurrentIndex(widget._precision.findText("auto"))
    assert c.predictor is fp32


def test_status_progress_and_cancel_stay_in_view(stack_widget, qtbot):
    """The status line, the progress bar and Cancel sit below the scrolled panels: in a
    window of 1400 x 1000 the panels scroll, and those three are still seen (they used to be
    at the end of the scrolled panels, below the fold, so a running job showed nothing)."""
    viewer, widget = stack_widget
    viewer.window._qt_window.resize(1400, 1000)
    viewer.window._qt_window.show()
    qtbot.waitUntil(widget._status.isVisible, timeout=5000)
    inner = widget._scroll.widget()
    assert inner.height() > widget._scroll.viewport().height()  # the panels do scroll
    for w in (widget._status, widget._progress, widget._cancel):
        assert not inner.isAncestorOf(w)
        assert not w.visibleRegion().isEmpty(), w


def test_switching_back_and_reopening_the_dock_commit_into_the_same_layer(make_napari_viewer,
                                                                          tiny_predictor):
    """Picking another image and then this one again, or closing the dock and opening it
    again, keeps committing into this image's 'segmentation' layer with new label ids (it
    used to start 'segmentation [1]' at label 1 again), and a reopened dock leaves no
    orphaned working layers behind."""
    from sam_qt_helpers import open_from_menu

    viewer = make_napari_viewer()
    viewer.add_image(blob_stack(), name="blobs")
    viewer.add_image(np.zeros((40, 50), np.float32), name="flat")
    dock, widget = open_from_menu(viewer)
    widget.controller.sync = True
    _pick(widget, "blobs", tiny_predictor)
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()
    seg = viewer.layers["segmentation"]
    assert set(np.unique(seg.data)) == {0, 1}
    widget._image.setCurrentIndex(widget._image.findText("flat"))
    widget._on_image_changed()
    assert c.target_layer is None
    widget._image.setCurrentIndex(widget._image.findText("blobs"))
    widget._on_image_changed()
    assert c.target_layer is seg and widget._target.currentText() == "segmentation"
    viewer.window.remove_dock_widget(dock)
    assert sorted(ly.name for ly in viewer.layers) == ["blobs", "flat", "segmentation"]
    dock, widget = open_from_menu(viewer)
    widget.controller.sync = True
    _pick(widget, "blobs", tiny_predictor)
    c = widget.controller
    assert c.target_layer is seg
    c.points_layer.add([3, 40, 44])
    widget._on_commit()
    assert [ly.name for ly in viewer.layers if ly.name.startswith("segmentation")] == [
        "segmentation"]
    assert set(np.unique(seg.data)) == {0, 1, 2}
    assert sorted(ly.name for ly in viewer.layers if ly.name.startswith("SAM")) == [
        "SAM boxes", "SAM current object", "SAM points"]


def _pick(widget, name, predictor):
    widget._image.setCurrentIndex(widget._image.findText(name))
    widget._on_image_changed()
    use_predictor(widget, predictor)
    widget.viewer.dims.set_point(0, 3)


def test_a_plain_click_on_the_boxes_layer_is_no_object(stack_widget):
    """A click (not a drag) on 'SAM boxes' makes a rectangle of about 1.5 px: it is not an
    object to preview or commit (it used to give 'box 1: score 0.19. Shift+C commits.')."""
    from napari_sam._qt.layers import MIN_BOX_SIDE

    viewer, widget = stack_widget
    c = widget.controller
    c.boxes_layer.add_rectangles(np.array([[3, 20, 20], [3, 20, 21.5], [3, 21.5, 21.5],
                                           [3, 21.5, 20]]))
    assert c.previews == []
    assert widget._on_commit() is None and not viewer.layers.__contains__("segmentation")
    side = MIN_BOX_SIDE
    c.boxes_layer.add_rectangles(np.array([[3, 10, 10], [3, 10, 10 + side],
                                           [3, 10 + side, 10 + side], [3, 10 + side, 10]]))
    assert [p.key for p in c.previews] == [("box", 0)]


def test_undo_names_the_layer_and_says_when_it_is_not_the_current_one(stack_widget):
    """Undo works across layers, so the status names the layer it changed and says when it is
    not the current Labels layer (after picking another image the same words described an
    undo in a layer out of sight)."""
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()
    widget._on_undo()
    assert c.status == "Undid commit of label 1 in 'segmentation'."
    widget._on_redo()
    # the same image, commits now going into a new layer: the undo says where it was
    widget._target.setCurrentIndex(0)
    widget._on_target_changed()
    assert c.target_layer is None
    widget._on_undo()
    assert c.status == ("Undid commit of label 1 in 'segmentation' (not the current Labels "
                        "layer).")
    widget._on_redo()
    # another image: the commit is that image's, so it is not undone from here
    viewer.add_image(np.zeros((40, 50), np.float32), name="flat")
    widget._image.setCurrentIndex(widget._image.findText("flat"))
    widget._on_image_changed()
    widget._on_undo()
    assert c.status.startswith("Not undone: the last commit went into 'segmentation', the "
                               "labels of another image"), c.status
    # that image closed: not "pick that image" (helper walk-through, session 29)
    viewer.layers.remove(_first_image_other_than(viewer, "flat"))
    widget._on_undo()
    assert c.status.startswith("Not undone: the last commit went into 'segmentation', the "
                               "labels of an image that is no longer open, so the dock cannot "
                               "undo or redo it"), c.status


def test_an_image_it_cannot_use_is_said_once_in_the_status(make_widget, notifications):
    """A 5D image (a 4D one with a short first axis is asked about since session 42: time
    or channels?): the status says why it cannot be used (it said "Open an image" while the
    image was open), and the error comes once, not again on every later layer change."""
    viewer, widget = make_widget()
    viewer.add_image(np.zeros((2, 2, 3, 16, 16), np.float32), name="tzyx")
    c = widget.controller
    assert c.status.startswith("Cannot use 'tzyx': the image has 5 spatial dimensions"), c.status
    assert widget._status.text() == c.status
    seen = [m for _, m in notifications if "spatial dimensions" in m]
    assert len(seen) == 1
    viewer.add_points(np.zeros((1, 4)), name="other")  # a later layer change
    assert len([m for _, m in notifications if "spatial dimensions" in m]) == 1
    widget._on_image_changed()  # picked again on purpose: said again
    assert len([m for _, m in notifications if "spatial dimensions" in m]) == 2


def test_an_action_on_an_image_it_cannot_use_says_why_not_open_an_image(make_widget):
    """Shift+C or Propagate with only a 4D image open said "No image layer: open an image"
    while the image was open (session 40's time-lapse walk); the action's refusal now repeats
    why the image cannot be used, and says "No image layer" again once it is closed."""
    from sam_qt_helpers import press_key

    viewer, widget = make_widget()
    viewer.add_image(np.zeros((2, 2, 3, 16, 16), np.float32), name="tzyx")
    c = widget.controller
    for act in (lambda: press_key(viewer, "Shift-C"), widget._on_propagate):
        c.status = ""
        act()
        assert c.status.startswith("Cannot use 'tzyx': the image has 5 spatial dimensions"), (
            c.status)
    viewer.layers.remove("tzyx")
    press_key(viewer, "Shift-C")
    assert c.status.startswith("No image layer"), c.status


def test_a_refused_action_becomes_the_status(stack_widget, notifications):
    """A refused action (Shift+U with nothing to undo after the labels layer was deleted)
    is said in the status line too, not only in a notification beside a stale status that
    still offered 'Shift+U undoes it'."""
    viewer, widget = stack_widget
    c = widget.controller
    c.points_layer.add([3, 20, 20])
    widget._on_commit()
    assert "Shift+U undoes it" in c.status
    viewer.layers.remove("segmentation")
    widget._on_undo()
    assert c.status == "Nothing to undo.", c.status
    assert widget._status.text() == c.status
    assert ("warning", "Nothing to undo.") in [(s.lower(), m) for s, m in notifications]


def test_a_point_added_from_a_script_on_an_image_it_cannot_use_says_why(make_widget):
    """``controller.add_point`` raised AttributeError ('NoneType' object has no attribute
    'add') on a 4D image it cannot use (helper walk-through, session 29)."""
    from napari_sam.annotate.errors import UserError

    viewer, widget = make_widget()
    viewer.add_image(np.zeros((2, 2, 3, 16, 16), np.float32), name="tzyx")
    with pytest.raises(UserError, match="Cannot use 'tzyx': the image has 5 spatial"):
        widget.controller.add_point(0, 5, 5)


def _first_image_other_than(viewer, name):
    from napari.layers import Image

    return next(ly for ly in viewer.layers if isinstance(ly, Image) and ly.name != name)
