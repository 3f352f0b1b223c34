"""Checkpoint files in the dock's 'Model' box.

* A demo-architecture checkpoint picked without its metadata file: the warning that its
  settings come from the demo model reached the console only (the registry's log); the dock
  now shows it as a napari notification, once per loaded model.
* The same file picked again (the data engine's loop: retrain into my_model.pt, pick it
  again) added a second "file: my_model.pt" item each time, and two files of one name in
  different folders were listed alike.
* A copy of the bundled demo model's file, picked: the status line called it "[demo model]",
  as it calls the bundled model, not the file picked."""

from __future__ import annotations

import os
import shutil

import numpy as np
from sam_qt_helpers import canvas_click, click_button, pick_checkpoint

from napari_sam.models.registry import DEMO_NAME, where

#: what 'Model' adds to the label of a copy of the bundled demo model's file
COPY = " (the demo model's weights)"


def _disc_image() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    return np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 15 ** 2, 200, 30).astype(np.uint8)


def _loaded_by_a_click(make_widget, qtbot, ckpt):
    """``(viewer, widget)``: a threaded dock on the disc image with the checkpoint ``ckpt``
    picked, loaded by a click at the disc (the model loads with the click's job)."""
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    pick_checkpoint(widget, ckpt)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 48, 48)
    qtbot.waitUntil(lambda: widget.controller.job is None and widget.controller.predictor
                    is not None, timeout=120_000)
    return viewer, widget


def test_a_checkpoint_without_its_json_says_so_in_the_dock(make_widget, notifications, qtbot,
                                                            tmp_path):
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    viewer, widget = _loaded_by_a_click(make_widget, qtbot, alone)
    said = [(s, m) for s, m in notifications if "no metadata file" in m]
    assert len(said) == 1, notifications
    severity, message = said[0]
    assert "warning" in severity.lower()
    assert str(alone) in message and "round1.json" in message and "Keep the .json" in message
    canvas_click(viewer, 40, 50)  # the model is loaded: no second note
    qtbot.waitUntil(lambda: widget.controller.job is None, timeout=60_000)
    assert len([m for _, m in notifications if "no metadata file" in m]) == 1


def _items(widget) -> list[tuple[str, str | None]]:
    box = widget._model
    return [(box.itemText(i), None if box.itemData(i) is None else box.itemData(i).key)
            for i in range(box.count())]


def test_a_file_picked_again_keeps_one_item_and_same_names_show_their_folder(make_widget,
                                                                              tmp_path):
    from sam_qt_helpers import pick_checkpoint

    first, second = tmp_path / "round1" / "my_model.pt", tmp_path / "round2" / "my_model.pt"
    for path in (first, second):
        path.parent.mkdir()
        shutil.copyfile(where(DEMO_NAME), path)
        shutil.copyfile(where(DEMO_NAME).with_suffix(".json"), path.with_suffix(".json"))
    _, widget = make_widget(_disc_image(), preload=False, name="disc")
    before = _items(widget)
    pick_checkpoint(widget, first)
    pick_checkpoint(widget, first)
    pick_checkpoint(widget, tmp_path / "round2" / ".." / "round1" / "my_model.pt")
    after = _items(widget)
    assert len(after) == len(before) + 1 and after[:-2] == before[:-1]
    assert after[-2][0] == "file: my_model.pt" + COPY  # (copies of the demo model's file)
    assert os.path.realpath(after[-2][1]) == os.path.realpath(first)
    assert after[-1] == before[-1]  # "Checkpoint file..." stays last
    assert widget._model.currentIndex() == len(before) - 1
    pick_checkpoint(widget, first)
    pick_checkpoint(widget, second)
    assert _items(widget)[len(before) - 1:-1] == [
        ("file: my_model.pt" + COPY, str(first)), ("file: round2/my_model.pt" + COPY, str(second))]
    assert widget.controller.model_choice.key == str(second)
    assert widget._model.currentData().key == str(second)
    third = tmp_path / "other" / "round2" / "my_model.pt"  # a folder of the same name too
    third.parent.mkdir(parents=True)
    shutil.copyfile(where(DEMO_NAME), third)
    pick_checkpoint(widget, third)
    assert _items(widget)[-2] == ("file: other/round2/my_model.pt" + COPY, str(third))


def test_the_note_is_shown_when_the_image_left_while_the_model_loaded(
        make_widget, notifications, qtbot, tmp_path, monkeypatch):
    """The load finished after its image layer was removed: the note was never shown, and the
    model stayed cached, so no later load showed it either (the reviewer)."""
    import time

    from napari_sam.annotate.model_choice import ModelCache

    alone = tmp_path / "round2.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    real = ModelCache.load

    def slow(self, *args, **kwargs):
        time.sleep(1.0)  # the user removes the image meanwhile
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ModelCache, "load", slow)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    pick_checkpoint(widget, alone)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 48, 48)
    viewer.layers.remove("disc")
    qtbot.waitUntil(lambda: widget.controller.job is None, timeout=60_000)
    said = [m for _, m in notifications if "no metadata file" in m]
    assert len(said) == 1 and str(alone) in said[0], notifications


def test_thresholds_follow_a_checkpoint_without_its_json_once_it_has_loaded(
        make_widget, qtbot, tmp_path):
    """A demo-architecture checkpoint copied without its .json inherits the demo model's
    segment-everything thresholds when loaded (its note says so, and the CLI uses them),
    but the dock's boxes kept SAM's 0.88 / 0.95, which found 15 nuclei of 20 instead of 20
    (helper walk-through, session 30). Now the boxes follow the loaded model, unless the
    user has changed them."""
    from napari_sam.automatic import recommended_thresholds
    from napari_sam.models.registry import automatic_defaults, inherited_settings

    demo = recommended_thresholds(automatic_defaults(inherited_settings(where(DEMO_NAME))))
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    pick_checkpoint(widget, alone)
    assert widget.controller.predictor is None  # before it loads, too
    assert (widget._iou.value(), widget._stability.value()) == (
        demo["pred_iou_thresh"], demo["stability_score_thresh"])
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 48, 48)
    qtbot.waitUntil(lambda: widget.controller.job is None and widget.controller.predictor
                    is not None, timeout=120_000)
    assert (widget._iou.value(), widget._stability.value()) == (
        demo["pred_iou_thresh"], demo["stability_score_thresh"]) != (0.88, 0.95)

    other = tmp_path / "round2.pt"  # the user's own values are kept
    shutil.copyfile(where(DEMO_NAME), other)
    pick_checkpoint(widget, other)
    widget._iou.setValue(0.8)
    canvas_click(viewer, 40, 50)
    qtbot.waitUntil(lambda: widget.controller.job is None and widget.controller.predictor
                    is not None, timeout=120_000)
    assert widget._iou.value() == 0.8


def test_segment_everything_right_after_picking_a_checkpoint_without_its_json_uses_its_own(
        make_widget, qtbot, tmp_path, monkeypatch):
    """The boxes showed SAM's 0.88 / 0.95 until such a checkpoint had loaded, so *Segment
    everything* pressed first ran it with them (and the boxes changed under the result). Now
    the boxes show, from the moment it is picked, the demo model's thresholds it loads with
    (``recommended_thresholds`` follows ``registry.declared_settings``); the job gets them."""
    from napari_sam.automatic import recommended_thresholds
    from napari_sam.models.registry import demo_settings
    from spy import spy

    demo = recommended_thresholds(demo_settings()["automatic"])
    assert (demo["pred_iou_thresh"], demo["stability_score_thresh"]) != (0.88, 0.95)
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    c = widget.controller
    pick_checkpoint(widget, alone)
    shown = (widget._iou.value(), widget._stability.value())
    assert c.predictor is None and shown == (demo["pred_iou_thresh"],
                                             demo["stability_score_thresh"])
    given = spy(monkeypatch, c, "segment_everything",
                lambda **kw: (kw["pred_iou_thresh"], kw["stability_score_thresh"]))
    click_button(qtbot, widget, "Segment everything")
    qtbot.waitUntil(lambda: c.job is None and c.predictor is not None, timeout=120_000)
    assert given == [shown]
    assert (widget._iou.value(), widget._stability.value()) == shown


def test_a_checkpoint_that_fails_to_load_gives_back_the_model_before_it(make_widget, qtbot,
                                                                        tmp_path, notifications):
    """A file that reads as tensors but is no model we can build: every click failed the
    same way and the dock stayed on it (helper walk-through, session 30). Now the first
    failure says so and goes back to the model chosen before, which the next click uses;
    a training state or a metadata JSON is refused when picked, saying which file to pick."""
    import pytest
    import torch

    from napari_sam.annotate.errors import UserError
    from napari_sam.annotate.model_choice import file_choice

    bad = tmp_path / "weights.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, bad)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    c = widget.controller
    before = c.model_choice
    pick_checkpoint(widget, bad)
    assert widget._model.currentData().key == str(bad)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 48, 48)
    qtbot.waitUntil(lambda: c.job is None and c.status.startswith("Failed"), timeout=120_000)
    assert "(loading the model 'weights.pt')" in c.status, c.status
    assert c.status.endswith(f"The model in use is '{before.key}' again: pick another "
                             "checkpoint file ('Checkpoint file...' in 'Model'). Press "
                             "Shift+S to preview the prompts with it."), c.status
    qtbot.waitUntil(lambda: widget._model.currentData() == before, timeout=10_000)
    assert c.model_choice == before
    canvas_click(viewer, 48, 48)  # the click now previews with the model before
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=120_000)
    assert not c.status.startswith("Failed"), c.status

    state = tmp_path / "m.train-state.pt"
    torch.save({"format": "x", "schedule": {}, "trainer": {}, "loop": {}}, state)
    with pytest.raises(UserError, match=r"training state of a resumable run .* pick m\.pt"):
        file_choice(state)
    meta = tmp_path / "m.json"
    meta.write_text("{}")
    with pytest.raises(UserError, match=r"metadata file of a checkpoint, not a model: pick the "
                                        r"checkpoint beside it \(m\.pt\)"):
        file_choice(meta)


def test_a_checkpoint_copied_over_a_training_output_runs_with_its_own_settings_in_the_dock(
        make_widget, notifications, qtbot, tmp_path):
    """Another run's checkpoint copied over my_model.pt, whose my_model.json the first run
    wrote: the dock ran it with that file's thresholds, input smoothing and mask boundary.
    Picked now, it loads with its own (SAM's) settings, the boxes follow, and the dock says
    that my_model.json is not used."""
    from tiny_configs import trained_pair

    path = trained_pair(tmp_path / "my_model.pt")
    shutil.copyfile(trained_pair(tmp_path / "other" / "my_model.pt", seed=1), path)
    viewer, widget = _loaded_by_a_click(make_widget, qtbot, path)
    model = widget.controller.predictor.model
    assert (model.input_smoothing, model.mask_boundary) == (0, "threshold")
    assert (widget._iou.value(), widget._stability.value()) == (0.88, 0.95)
    said = [(s, m) for s, m in notifications if "is not used" in m]
    assert len(said) == 1 and "warning" in said[0][0].lower(), notifications
    assert said[0][1].startswith(f"{tmp_path / 'my_model.json'} is not used: it describes "
                                 f"another checkpoint than {path}")


def test_a_copy_of_the_demo_model_shows_as_the_file_picked_holding_its_weights(
        make_widget, demo_available, tmp_path):
    """The ready line said "[demo model]" for a copy of demo.pt the user picked (as for the
    bundled model): it names the file, and says it holds the demo model's weights; the
    bundled file picked is the bundled demo model; a file of another model is just itself."""
    copy = tmp_path / "mine" / "demo.pt"
    copy.parent.mkdir()
    shutil.copyfile(where(DEMO_NAME), copy)
    viewer, widget = make_widget(_disc_image(), sync=False, name="disc")
    c = widget.controller
    widget.wait()
    pick_checkpoint(widget, copy)
    widget.wait()
    assert widget._model.currentText() == "file: demo.pt (the demo model's weights)"
    assert c.status == ("Click on an object in 'disc' to segment it (Shift-click: negative "
                        "point; draw a box in 'SAM boxes' for one object per box). [model "
                        "demo.pt: the demo model's weights]"), c.status
    pick_checkpoint(widget, where(DEMO_NAME))
    widget.wait()
    assert widget._model.currentText() == "file: weights/demo.pt (the bundled demo model)"
    assert c.status.endswith("for one object per box). [demo model]"), c.status
    from napari_sam.annotate.model_choice import demo_weights

    other = tmp_path / "other.pt"  # the same size, other bytes: not the demo's weights
    other.write_bytes(bytes(where(DEMO_NAME).stat().st_size))
    assert demo_weights(other) == "" and demo_weights(copy) == "copy"
