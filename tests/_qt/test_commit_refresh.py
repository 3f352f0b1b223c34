"""A commit (and its undo) redraws the pixels it wrote, not the whole labels layer.

A whole-layer ``refresh`` re-colours the whole slice: 0.16 s on a 4000 x 4000 image, with
napari frozen, and a commit made two or three of them
(benchmarks/bench_commit_refresh.py measures it).
"""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack, open_from_menu, use_predictor


def _shown_colours_match(layer) -> bool:
    """Whether the colours napari gives the canvas for ``layer``'s slice are its data's."""
    view = np.asarray(layer._slice.image.view)
    return np.array_equal(view, layer._raw_to_displayed(np.asarray(layer._slice.image.raw)))


def test_a_commit_and_its_undo_redraw_only_what_they_wrote(make_napari_viewer, qtbot,
                                                            tiny_predictor, monkeypatch):
    from napari.layers import Labels

    viewer = make_napari_viewer(show=True)  # a hidden canvas redraws whole layers anyway
    viewer.add_image(blob_stack(), name="blobs")
    _dock, w = open_from_menu(viewer)
    w.preload = False
    w.controller.sync = True
    use_predictor(w, tiny_predictor)
    c = w.controller
    c.overwrite = True  # (the tiny random model's masks overlap)
    viewer.dims.set_point(0, 3)
    c.add_point(3, 20, 20)
    c.commit()  # the first makes the 'segmentation' layer
    target = c.target_layer
    qtbot.wait(100)  # drawn once: the canvas holds the slice's texture
    refreshed, updates = [], []
    original = Labels.refresh
    monkeypatch.setattr(Labels, "refresh", lambda self, *a, **k: (
        refreshed.append(self.name), original(self, *a, **k))[1])
    target.events.labels_update.connect(lambda e: updates.append(e.offset))
    before = np.asarray(target.data[3]).copy()
    thumb = target.thumbnail.copy()
    c.add_point(3, 45, 45)
    commit = c.commit()
    assert commit is not None and not np.array_equal(target.data[3], before)
    assert "segmentation" not in refreshed, refreshed  # the whole layer was not redrawn
    assert len(updates) == 1  # the box of the pixels written went to the canvas
    rows, cols = np.nonzero(target.data[3] != before)
    assert tuple(updates[0]) == (rows.min(), cols.min())
    assert _shown_colours_match(target)
    assert not np.array_equal(target.thumbnail, thumb)  # the layer list's thumbnail follows
    c.undo()
    assert np.array_equal(target.data[3], before)
    assert "segmentation" not in refreshed and len(updates) == 2
    assert _shown_colours_match(target)


def test_a_commit_into_a_hidden_labels_layer_is_kept_by_napari_undo(make_napari_viewer, qtbot,
                                                                     tiny_predictor):
    """Hidden, a labels layer shows a 1 x 1 uint8 placeholder: napari's ``data_setitem``
    cast the commit's values to it and failed on updating it, so the commit raised
    (its pixels written) and left a half-made step in napari's history, which the next brush
    stroke took in: Ctrl+Z on that stroke then wiped the commit too (reviewer's catch)."""
    viewer = make_napari_viewer(show=True)
    viewer.add_image(blob_stack(), name="blobs")
    _dock, w = open_from_menu(viewer)
    w.preload = False
    w.controller.sync = True
    use_predictor(w, tiny_predictor)
    c = w.controller
    c.overwrite = True
    viewer.dims.set_point(0, 3)
    c.add_point(3, 20, 20)
    c.commit()
    target = c.target_layer
    target.visible = False  # to see the image while clicking
    viewer.dims.set_point(0, 5)
    c.add_point(5, 44, 44)
    commit = c.commit()  # raised IndexError
    assert commit is not None
    committed = target.data[5] == commit.ids[0]
    assert committed.any()
    target.visible = True
    target.paint((0, 2, 2), 9, refresh=True)  # a brush stroke on slice 0, then napari's undo
    target.undo()
    assert target.data[0, 2, 2] != 9
    assert np.array_equal(target.data[5] == commit.ids[0], committed)  # the commit stays
