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
    use_predictor,
)

#: the status line's reminder while autosave is off after a failed write
STILL_OFF = ("Autosave is still off since it failed (No space left on device): turn it on "
             "again once it can write (space, permissions; it saves at once), or use 'Save "
             "session'.")


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


def test_brush_strokes_after_autosave_failed_remind_that_it_is_off_once_a_stroke(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch, qtbot):
    from napari_sam._qt.paint_autosave import PAINT_AUTOSAVE_MS

    viewer, widget, _ = dock_on_a_full_disk(make_widget, stack_file, tiny_ckpt, tmp_path,
                                            monkeypatch)
    c = widget.controller
    commit_on(viewer, widget, 1)  # its autosave fails: autosave goes off
    assert not widget._autosave.isChecked()
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
        reminders = [t for t in said if STILL_OFF in t]
        assert reminders == [f"Painted in '{layer.name}'. {STILL_OFF}"] * n, said
        assert widget._status.text() == reminders[-1]
