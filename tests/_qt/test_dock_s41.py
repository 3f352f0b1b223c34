"""Session 41: the dock opened from the menu, as a user meets it.

- After the embedding store filled the disk part-way through 'Compute embeddings' the line
  beside the button said "failed: 0 of 8 slices embedded" although 3 slices were embedded
  and stored (the job's embeddings were dropped with its failure).
"""

from __future__ import annotations

import errno

import numpy as np
from sam_qt_helpers import blob_stack, click_button, use_predictor


def test_the_embedding_line_counts_the_slices_stored_before_the_disk_filled(
        make_widget, tiny_predictor, tmp_path, monkeypatch, qtbot):
    import zarr

    _viewer, widget = make_widget(blob_stack(z=8), sync=False, preload=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    store = tmp_path / "emb.zarr"
    widget._store.setText(str(store))
    widget._on_store_changed()
    assert widget._emb_state.text() == "0 of 8 slices embedded"
    write = zarr.Array.__setitem__

    def full_from_slice_3(self, key, value):  # the features of slices 3.. find no space
        if np.ndim(value) == 3 and key >= 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", full_from_slice_3)
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert "no space left on the device" in widget._status.text()
    stored = np.asarray(zarr.open_group(str(store), mode="r")["slice_hash"][:]) != 0
    assert stored.tolist() == [True] * 3 + [False] * 5
    assert widget._emb_state.text() == "failed: 3 of 8 slices embedded"
    monkeypatch.setattr(zarr.Array, "__setitem__", write)  # space freed: it goes on from there
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._emb_state.text() == "8 of 8 slices embedded"
