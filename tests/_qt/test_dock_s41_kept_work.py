"""Session 41: work the user did is kept, or the user is told it is not being saved.

- Cancelling *Compute embeddings* after it had embedded slices dropped them: the line beside
  the button said "cancelled: 0 of 8 slices embedded" and the next *Compute embeddings*
  encoded them all again.
- After an autosave write failed (a full disk) every later commit, undo or redo reminded the
  user that autosave is off, but painting with napari's brush did not: hours of brush work
  could go unsaved without a word.
"""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import (
    blob_stack,
    canvas_drag,
    click_button,
    commit_on,
    dock_on_a_full_disk,
    held_encoder,
    store_fills_from_slice,
    use_predictor,
)

#: the status line's word after an autosave failed again
STILL_OFF = "failed again (No space left on device); it tries again at the next commit"


def test_cancelled_compute_embeddings_keeps_and_counts_the_slices_it_embedded(
        make_widget, tiny_predictor, monkeypatch, qtbot):
    _viewer, widget = make_widget(blob_stack(z=8), sync=False, preload=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    assert widget._emb_state.text() == "0 of 8 slices embedded"
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(entered.is_set, timeout=60_000)  # the first batch (slices 0-3) encodes
    assert click_button(qtbot, widget, "Cancel").startswith("Cancelling: ")
    gate.set()  # that batch ends, then the job stops
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._status.text().startswith("Cancelled: ")
    assert "(the slices it had embedded are kept)" in widget._status.text()
    assert widget._emb_state.text() == "cancelled: 4 of 8 slices embedded"
    encoded = []
    real = tiny_predictor.encode_rgb
    monkeypatch.setattr(tiny_predictor, "encode_rgb",
                        lambda rgbs: encoded.extend([1] * len(rgbs)) or real(rgbs))
    click_button(qtbot, widget, "Compute embeddings")  # goes on from them
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._emb_state.text() == "8 of 8 slices embedded"
    assert len(encoded) == 4


def test_brush_strokes_after_autosave_failed_are_saved_again_and_say_it_failed(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    from napari_sam._qt.paint_autosave import PAINT_AUTOSAVE_MS

    viewer, widget, _ = dock_on_a_full_disk(make_widget, stack_file, tiny_ckpt, tmp_path,
                                            monkeypatch)
    c = widget.controller
    commit_on(viewer, widget, 1)  # its autosave fails: each stroke's autosave tries again
    assert widget._autosave.isChecked()
    said = []
    c.status_changed.connect(said.append)
    layer = c.target_layer
    viewer.layers.selection.active = layer
    layer.mode, layer.selected_label, layer.brush_size = "paint", 9, 3
    qtbot.wait(50)
    for n, row in enumerate((40, 50), start=1):  # two strokes of napari's brush
        canvas_drag(viewer, qtbot, (row, 10), (row, 40), steps=8, whole=True)
        assert np.asarray(layer.data)[1, row, 25] == 9
        qtbot.wait(PAINT_AUTOSAVE_MS + 500)
        reminders = [t for t in said if t.startswith(f"Painted in '{layer.name}'. ")]
        assert len(reminders) == n and all(STILL_OFF in t for t in reminders), said
        assert widget._status.text() == reminders[-1]


def _first_job_loads_the_model(make_widget, tiny_ckpt, qtbot):
    """The dock on an 8-slice stack with a checkpoint file picked and not yet loaded: the
    first job loads it. Returns ``(viewer, widget)``."""
    from sam_qt_helpers import pick_checkpoint

    viewer, widget = make_widget(blob_stack(z=8), sync=False, preload=False, name="stack")
    pick_checkpoint(widget, tiny_ckpt)
    assert widget.controller.predictor is None
    return viewer, widget


def _click_previews(viewer, widget, qtbot) -> str:
    """Click a nucleus on slice 0; the status line once the click's job is done."""
    from sam_qt_helpers import canvas_click

    c = widget.controller
    viewer.dims.set_current_step(0, 0)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    return widget._status.text()


def test_a_click_after_the_job_that_loaded_the_model_failed_previews(
        make_widget, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    """Review of session 41: the slices of a failed first job were kept, but the model it had
    loaded was not (a failed job's result is not applied): the next click found its slice
    embedded, decoded with no model and failed with "unexpected AttributeError: 'NoneType'
    object has no attribute 'model'", at every click until the model or image changed."""
    import zarr

    viewer, widget = _first_job_loads_the_model(make_widget, tiny_ckpt, qtbot)
    c = widget.controller
    widget._store.setText(str(tmp_path / "emb.zarr"))
    widget._on_store_changed()
    write = store_fills_from_slice(monkeypatch, 3)  # the features of slices 3.. find no space
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._emb_state.text() == "failed: 3 of 8 slices embedded"
    monkeypatch.setattr(zarr.Array, "__setitem__", write)  # space freed
    status = _click_previews(viewer, widget, qtbot)
    assert "unexpected" not in status and "object" in status, status


def test_a_click_after_cancelling_the_job_that_loaded_the_model_previews(
        make_widget, tiny_ckpt, monkeypatch, qtbot):
    """The same after Cancel: the kept slices must not make a click decode without a model."""
    import threading

    from napari_sam.predictor import Predictor

    viewer, widget = _first_job_loads_the_model(make_widget, tiny_ckpt, qtbot)
    c = widget.controller
    gate, entered = threading.Event(), threading.Event()
    real = Predictor.encode_rgb

    def held(self, rgbs):
        entered.set()
        assert gate.wait(60), "the test never let the encoder go on"
        return real(self, rgbs)

    monkeypatch.setattr(Predictor, "encode_rgb", held)
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(entered.is_set, timeout=60_000)
    assert click_button(qtbot, widget, "Cancel").startswith("Cancelling: ")
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._emb_state.text().startswith("cancelled: 4 of 8"), widget._emb_state.text()
    status = _click_previews(viewer, widget, qtbot)
    assert "unexpected" not in status and "object" in status, status
