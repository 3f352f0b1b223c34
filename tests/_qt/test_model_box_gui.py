"""Checkpoint files in the dock's 'Model' box.

* A demo-architecture checkpoint picked without its metadata file: the warning that its
  settings come from the demo model reached the console only (the registry's log); the dock
  now shows it as a napari notification, once per loaded model.
* The same file picked again (the data engine's loop: retrain into my_model.pt, pick it
  again) added a second "file: my_model.pt" item each time, and two files of one name in
  different folders were listed alike."""

from __future__ import annotations

import os
import shutil

import numpy as np
from sam_qt_helpers import canvas_click, pick_checkpoint

from napari_sam.models.registry import DEMO_NAME, where


def _disc_image() -> np.ndarray:
    yy, xx = np.mgrid[:96, :96]
    return np.where((yy - 48) ** 2 + (xx - 48) ** 2 < 15 ** 2, 200, 30).astype(np.uint8)


def test_a_checkpoint_without_its_json_says_so_in_the_dock(make_widget, notifications, qtbot,
                                                            tmp_path):
    alone = tmp_path / "round1.pt"
    shutil.copyfile(where(DEMO_NAME), alone)
    viewer, widget = make_widget(_disc_image(), sync=False, preload=False, name="disc")
    pick_checkpoint(widget, alone)
    viewer.layers.selection.active = widget.controller.points_layer
    canvas_click(viewer, 48, 48)
    qtbot.waitUntil(lambda: widget.controller.job is None and widget.controller.predictor
                    is not None, timeout=120_000)
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
    assert after[-2][0] == "file: my_model.pt"
    assert os.path.realpath(after[-2][1]) == os.path.realpath(first)
    assert after[-1] == before[-1]  # "Checkpoint file..." stays last
    assert widget._model.currentIndex() == len(before) - 1
    pick_checkpoint(widget, first)
    pick_checkpoint(widget, second)
    assert _items(widget)[len(before) - 1:-1] == [("file: my_model.pt", str(first)),
                                                  ("file: round2/my_model.pt", str(second))]
    assert widget.controller.model_choice.key == str(second)
    assert widget._model.currentData().key == str(second)
    third = tmp_path / "other" / "round2" / "my_model.pt"  # a folder of the same name too
    third.parent.mkdir(parents=True)
    shutil.copyfile(where(DEMO_NAME), third)
    pick_checkpoint(widget, third)
    assert _items(widget)[-2] == ("file: other/round2/my_model.pt", str(third))


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
