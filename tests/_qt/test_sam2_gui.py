"""The dock widget with a SAM 2.1 model, driven like a user: the dock opened from the plugin
menu, a checkpoint file in Meta's format picked in 'Model', real clicks on the canvas
(previewed on their slice), keys, and propagation with SAM 2 memory in napari's worker
threads (``sync=False``).

The checkpoints are random Hiera-T weights run at 128 px (tests/sam2_checkpoint.py), with an
object-score head that says "present" on every slice, or only on the prompted slice (then
each direction stops after two slices found absent).
"""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, pick_checkpoint, press_key

from sam2_checkpoint import save_sam2_checkpoint

SHAPE = (6, 48, 48)


def _choose_file(widget, path):
    """Pick a checkpoint file in 'Model', as the Model box's file dialog does (it is read in
    a worker thread: waited for)."""
    pick_checkpoint(widget, path)


def _methods(widget) -> dict[str, bool]:
    """'Propagate with' entries -> enabled."""
    box = widget._method
    return {box.itemText(i): box.model().item(i).isEnabled() for i in range(box.count())}


@pytest.fixture
def sam2_widget(make_widget, tmp_path, qtbot):
    """``make(object_head)`` -> (viewer, widget, labels layer): the menu-opened dock on a
    6-slice blob stack with a labels layer 'cells' holding label 7 (left half of slice 2)
    and label 9 (a square on slice 4) as the commit target, a tiny SAM 2 checkpoint picked
    in 'Model', slice 2 shown, jobs in worker threads."""

    def make(object_head: str = "absent"):
        path = save_sam2_checkpoint(tmp_path / f"sam2_{object_head}.pt", object_head)
        viewer, widget = make_widget(blob_stack(z=SHAPE[0], size=SHAPE[1]), sync=False,
                                     preload=False, name="blobs")
        existing = np.zeros(SHAPE, np.uint32)
        existing[2, :, :24] = 7
        existing[4, 10:20, 10:20] = 9
        labels = viewer.add_labels(existing, name="cells")
        widget._target.setCurrentIndex(widget._target.findText("cells"))
        widget._on_target_changed()
        _choose_file(widget, path)
        viewer.dims.set_point(0, 2)
        c = widget.controller
        viewer.layers.selection.active = c.points_layer
        qtbot.waitUntil(lambda: viewer.layers.selection.active.name == "SAM points",
                        timeout=5000)
        return viewer, widget, labels

    return make


def test_sam2_checkpoint_offers_sam2_memory_and_propagates_in_a_worker(sam2_widget, qtbot):
    viewer, widget, labels = sam2_widget("absent")
    c = widget.controller
    before = np.array(labels.data, copy=True)
    assert c.model_choice.family == "sam2" and widget._model.currentText() == "file: sam2_absent.pt"
    assert _methods(widget) == {"SAM 1 re-prompting": False, "SAM 2 memory": True}
    assert widget._method.currentText() == "SAM 2 memory"  # the default for SAM 2

    canvas_click(viewer, 14, 14)  # a real click: loads the model and embeds in a worker
    assert np.allclose(c.points_layer.data, [[2, 14, 14]], atol=0.5)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    # previewed on its slice through the Predictor's SAM 2 steps
    assert c.predictor.sam2 is not None and c.predictor.decoder_calls == 1
    (click,) = c.previews
    shown = np.asarray(c.preview_layer.data)
    assert click.z == 2 and np.array_equal(shown[2] > 0, click.mask) and not shown[3:].any()
    assert widget._status.text().startswith("point object: score ")

    progress, jobs = [], []
    c.job_progress.connect(lambda done, total: progress.append((done, total)))
    c.job_changed.connect(lambda job: jobs.append(job))
    press_key(viewer, "Shift-D")
    assert jobs and jobs[0].description == "Propagating through the stack with SAM 2 memory"
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert jobs[0].worker is not None and jobs[0].succeeded  # ran in a worker thread
    # 1 object x 6 slices planned; 5 tracked (slices 2, 3, 4, 1, 0), then the runs had
    # stopped and the last report fills the bar (reports from the worker thread may be
    # handled out of order on a busy machine)
    assert sorted(progress[-6:]) == [(i, 6) for i in range(1, 7)]
    assert widget._progress.value() == widget._progress.maximum() > 0

    result = c.volume
    assert result.stop_reasons == {1: {"up": "absent", "down": "absent"}}
    assert result.slice_range == {1: (2, 2)}
    status = widget._status.text()
    assert "Propagated 1 object with SAM 2 memory over slice 2 (" in status
    assert ("(stopped: up: the model found the object absent on 2 slices, down: the model "
            "found the object absent on 2 slices)") in status
    # beside 'Compute embeddings': what it embeds serves clicks; propagation encoded its own
    assert widget._emb_state.text().endswith(
        " slices embedded for clicks; 5 of 6 kept for propagating again"), \
        widget._emb_state.text()
    preview = np.array(c.preview_layer.data) > 0
    assert np.array_equal(preview, result.labels > 0) and preview[2].any()
    assert (preview & (before == 7)).any()  # the preview covers part of label 7

    press_key(viewer, "Shift-C")
    (new,) = c.history.peek_undo().ids
    assert new not in (0, 7, 9)
    after = np.asarray(labels.data)
    assert np.array_equal(after == new, preview & (before == 0))  # only into empty voxels
    assert np.array_equal(after[before != 0], before[before != 0])  # labels 7, 9 untouched
    assert widget._status.text().startswith(f"Committed label {new} (")
    press_key(viewer, "Shift-U")
    assert np.array_equal(np.asarray(labels.data), before)  # undo restores exactly
    press_key(viewer, "Shift-R")
    assert np.array_equal(np.asarray(labels.data), after)


def test_cancelling_sam2_propagation_leaves_the_labels_unchanged(sam2_widget, qtbot):
    viewer, widget, labels = sam2_widget("present")
    c = widget.controller
    before = np.array(labels.data, copy=True)
    c.live = False
    c.points_layer.add([2, 14, 14])
    jobs = []
    c.job_changed.connect(lambda job: jobs.append(job))
    c.job_progress.connect(lambda done, total: c.cancel() if total else None)
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert jobs[0].cancelled and jobs[0].worker is not None
    assert widget._status.text().startswith(
        "Cancelled: Propagating through the stack with SAM 2 memory. The labels and prompts "
        "are as they were")
    assert c.volume is None and not np.asarray(c.preview_layer.data).any()
    assert np.array_equal(np.asarray(labels.data), before)
    # the widget stays usable: propagating again runs to the end (present on every slice)
    c.job_progress.disconnect()
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.volume.stop_reasons == {1: {"up": "edge", "down": "edge"}}
    assert "stopped: up: stack edge, down: stack edge" in widget._status.text()


def test_cancel_stops_a_sam2_propagation_inside_its_first_slice(sam2_widget, qtbot,
                                                                monkeypatch):
    """A SAM 2 slice took 20-30 s on a CPU and Cancel waited for the end of the slice after
    the one under way: it stops inside the slice now (checked between the model's blocks),
    the status says "Cancelling" at once, and the labels stay as they were. Each encoder
    block sleeps 0.1 s here, so Cancel lands in the first slice's encoder."""
    import time

    import napari_sam.sam2_volume as sv
    from napari_sam.models.sam2.hiera import HieraBlock
    from napari_sam.models.sam2.model import Sam2Model

    monkeypatch.setattr(sv, "CHECK_EVERY_S", 0.0, raising=False)  # every block: a slow CPU
    block, encode = HieraBlock.forward, Sam2Model.encode_image
    monkeypatch.setattr(HieraBlock, "forward", lambda self, x: time.sleep(0.1) or block(self, x))
    encoded = []
    monkeypatch.setattr(Sam2Model, "encode_image",
                        lambda self, images: encoded.append(1) or encode(self, images))
    viewer, widget, labels = sam2_widget("present")
    c = widget.controller
    before = np.array(labels.data, copy=True)
    c.live = False
    c.points_layer.add([2, 14, 14])
    said = []

    def on_progress(done, total):
        if c.job is not None and c.job.phase == "propagating" and not said:
            c.cancel()  # what the Cancel button does
            said.append((done, widget._status.text()))

    c.job_progress.connect(on_progress)
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert said and said[0][0] == 0  # no slice had ended when Cancel was pressed
    assert said[0][1] == ("Cancelling: Propagating through the stack with SAM 2 memory stops "
                          "when the step under way ends; the labels and prompts stay as they "
                          "were.")
    assert encoded == [1]  # slice 2's encoder was under way; it stopped there
    assert widget._status.text().startswith(
        "Cancelled: Propagating through the stack with SAM 2 memory. The labels and prompts "
        "are as they were")
    assert c.volume is None and not np.asarray(c.preview_layer.data).any()
    assert np.array_equal(np.asarray(labels.data), before)


def test_sam1_actions_with_a_sam2_model_say_so_without_a_traceback(sam2_widget, qtbot,
                                                                   notifications):
    viewer, widget, labels = sam2_widget("present")
    c = widget.controller
    assert widget._on_automatic() is None  # "Segment everything"
    message = ("Segment everything needs a SAM 1 model; the chosen model is a SAM 2 model. "
               "Pick a SAM 1 model in 'Model'")
    assert widget._status.text().startswith(message)
    assert [s for s, m in notifications if m.startswith(message)] == ["warning"]
    assert not any("Traceback" in m or "unexpected" in m for _, m in notifications)
    assert c.job is None and len(viewer.layers) == 5  # no result layer, nothing running
    # the script-level refusal of SAM 1 re-prompting reaches the status line the same way
    c.points_layer.add([2, 14, 14])
    assert guarded_propagate(widget, "sam1") is None
    assert widget._status.text().startswith("SAM 1 re-prompting needs a SAM 1 model")


def guarded_propagate(widget, method):
    from napari_sam._qt.notify import guarded

    return guarded(widget.controller.propagate)(method=method)


def test_a_sam1_checkpoint_offers_only_sam1_reprompting(make_widget, tiny_sam, tmp_path):
    import torch

    path = tmp_path / "sam1.pt"
    torch.save(tiny_sam.state_dict(), path)
    viewer, widget = make_widget(blob_stack(z=2), name="img", preload=False)
    _choose_file(widget, path)
    assert widget.controller.model_choice.family == "sam1"
    assert _methods(widget) == {"SAM 1 re-prompting": True, "SAM 2 memory": False}
    assert widget._method.currentText() == "SAM 1 re-prompting"


def test_propagate_with_is_visible_and_not_clipped(sam2_widget, qtbot, tmp_path):
    viewer, widget, _ = sam2_widget("present")
    window = viewer.window._qt_window
    window.resize(1100, 800)
    window.show()
    qtbot.waitUntil(lambda: widget.isVisible() and widget.height() > 0, timeout=5000)
    widget._scroll.ensureWidgetVisible(widget._method)
    qtbot.wait(50)
    path = tmp_path / "sam2_dock.png"
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    assert path.stat().st_size > 0
    box = widget._method
    assert box.isVisible() and box.currentText() == "SAM 2 memory"
    assert box.width() >= box.sizeHint().width()  # the whole text fits
    viewport = widget._scroll.viewport()
    top_left = box.mapTo(viewport, box.rect().topLeft())
    bottom_right = box.mapTo(viewport, box.rect().bottomRight())
    assert top_left.x() >= 0 and top_left.y() >= 0
    assert bottom_right.x() < viewport.width() and bottom_right.y() < viewport.height()


def test_a_registry_sam2_model_offers_sam2_memory(make_widget, tmp_path, monkeypatch):
    """A sam2.1_hiera_* entry of the registry (not downloaded: nothing is fetched on
    choosing it) is a SAM 2 model: 'Propagate with' switches to SAM 2 memory, and back to SAM
    1 re-prompting for a SAM 1 entry."""
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget = make_widget(blob_stack(z=2), name="img", preload=False)
    names = [widget._model.itemText(i) for i in range(widget._model.count())]
    sam2 = [i for i, t in enumerate(names) if t.startswith("sam2.1_hiera_tiny (download")]
    sam1 = [i for i, t in enumerate(names) if t.startswith("vit_b (")]
    assert sam2 and sam1, names
    widget._model.setCurrentIndex(sam2[0])
    widget._on_model_changed()
    c = widget.controller
    assert c.model_choice.family == "sam2" and c.job is None  # no download on choosing
    assert widget._method.currentText() == "SAM 2 memory"
    assert _methods(widget) == {"SAM 1 re-prompting": False, "SAM 2 memory": True}
    widget._model.setCurrentIndex(sam1[0])
    widget._on_model_changed()
    assert widget._method.currentText() == "SAM 1 re-prompting"
    assert _methods(widget) == {"SAM 1 re-prompting": True, "SAM 2 memory": False}
