"""The dock on a large (tiled) image: a click while the preload still embeds the slice's
windows is previewed as soon as the windows holding it are encoded (the preload makes way
and goes on afterwards), and a commit does not wait for the rest (real worker threads, a
real click on the canvas; napari_sam.annotate.click_first)."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import canvas_click

from napari_sam.annotate.click_first import RESUME_DESCRIPTION

pytestmark = pytest.mark.slow

SIZE, BLOB = 1400, (200, 1150)


def _image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    blob = (yy - BLOB[0]) ** 2 + (xx - BLOB[1]) ** 2 < 15 ** 2
    return (blob * 120 + 30 + rng.normal(0, 10, blob.shape)).clip(0, 255).astype(np.uint8)


def _missing(c) -> int:
    return sum(1 for i in range(len(c.emb.tiling)) if c.emb.window_stack(i).missing([0]))


def test_a_click_during_the_preload_is_previewed_before_the_slice_is_embedded(
        make_widget, qtbot, demo_available):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QPushButton

    viewer, widget = make_widget(_image(), sync=False, preload=True, name="large")
    c = widget.controller
    idx = next(i for i in range(widget._model.count())
               if widget._model.itemData(i) is not None and widget._model.itemData(i).is_demo)
    if widget._model.currentIndex() != idx:
        widget._model.setCurrentIndex(idx)
    qtbot.waitUntil(lambda: c.job is not None and c.job.phase == "embedding tiles",
                    timeout=60_000)
    preload = c.job
    camera = viewer.camera
    camera.center, camera.zoom = BLOB, 4.0
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, *BLOB)
    assert np.allclose(c.points_layer.data, [BLOB], atol=0.5)
    qtbot.waitUntil(lambda: bool(np.asarray(c.preview_layer.data).any()), timeout=120_000)
    # previewed while most of the slice's 49 windows were still to embed ...
    assert len(c.emb.tiling) == 49 and _missing(c) >= 25, _missing(c)
    assert not preload.running and preload.pause.is_set()  # ... as the preload made way
    # the rest is embedded next (after the zoomed-out step, which may still run)
    qtbot.waitUntil(lambda: c.job is not None and c.job.description == RESUME_DESCRIPTION,
                    timeout=120_000)
    assert c.job.running and _missing(c) > 0
    assert "Shift+C commits" in c.status and "Meanwhile the other tiles" in c.status
    (p,) = c.previews
    rr, cc = np.nonzero(p.mask)
    assert p.mask[BLOB] and np.ptp(rr) < 60 and np.ptp(cc) < 60  # the blob (30 px across)
    commit = next(b for b in widget.findChildren(QPushButton) if b.text().startswith("Commit"))
    qtbot.mouseClick(commit, Qt.MouseButton.LeftButton)  # does not wait for the embedding
    labels = np.asarray(c.target_layer.data)
    assert np.array_equal(labels == 1, p.mask), c.status
    qtbot.waitUntil(lambda: c.job is None, timeout=300_000)
    assert _missing(c) == 0 and c.status.startswith("Committed label 1")
