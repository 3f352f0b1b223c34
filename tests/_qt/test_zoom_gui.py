"""An object larger than a tile in the dock (opened from the menu, jobs in napari's worker
threads): a box over it previews the whole object, and the zoomed-out view is encoded in a
job, off the UI thread (a reviewer, session 27: the view's encoder ran on napari's main
thread with no progress or Cancel, seconds per view with SAM's ViT on a CPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SIZE, CENTRE, RADIUS = 1400, (700, 650), 190


def test_a_box_over_a_large_object_is_zoomed_out_in_a_job(make_widget, qtbot, monkeypatch):
    from napari_sam.tiling import TiledEmbedding

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    gt = (yy - CENTRE[0]) ** 2 + (xx - CENTRE[1]) ** 2 < RADIUS ** 2
    image = (gt * 120 + 30 + rng.normal(0, 10, gt.shape)).clip(0, 255).astype(np.uint8)
    viewer, widget = make_widget(image, sync=False, preload=False, name="big")
    idx = next(i for i in range(widget._model.count())
               if widget._model.itemData(i) is not None and widget._model.itemData(i).is_demo)
    widget._model.setCurrentIndex(idx)
    widget._on_model_changed()
    c = widget.controller
    widget._on_compute()
    qtbot.waitUntil(lambda: c.job is None, timeout=300_000)
    assert c.emb[0].tiling.window == 256

    threads = []
    real = TiledEmbedding.view_embedding

    def recorded(self, predictor, view):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(self, predictor, view)

    monkeypatch.setattr(TiledEmbedding, "view_embedding", recorded)
    r0, c0, r1, c1 = (CENTRE[0] - RADIUS, CENTRE[1] - RADIUS, CENTRE[0] + RADIUS,
                      CENTRE[1] + RADIUS)
    c.boxes_layer.add([[[r0, c0], [r0, c1], [r1, c1], [r1, c0]]], shape_type="rectangle")
    qtbot.waitUntil(lambda: c.job is None and c.previews and c.previews[0].view is not None,
                    timeout=120_000)
    assert threads and not any(threads)  # encoded in the job's worker thread only
    (p,) = c.previews
    assert float((p.mask & gt).sum() / (p.mask | gt).sum()) >= 0.9
    assert "Decoded in a zoomed-out view" in widget._status.text()
