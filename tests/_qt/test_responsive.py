"""The UI thread stays free while embeddings and propagation compute in worker threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, use_predictor


@pytest.fixture
def mid_predictor():
    """A random ViT slow enough (about 0.3 s per slice) that jobs take seconds."""
    import torch

    from napari_sam.models import SamConfig, build_sam
    from napari_sam.predictor import Predictor

    cfg = SamConfig(
        encoder="vit", img_size=256, patch_size=16, encoder_embed_dim=128, encoder_depth=4,
        encoder_num_heads=4, encoder_global_attn_indexes=(3,), window_size=8, decoder_depth=1,
        decoder_mlp_dim=256, name="mid_vit",
    )
    torch.manual_seed(0)
    return Predictor(build_sam(cfg), device="cpu")


class ThreadLog:
    """Which thread ran each encoder forward, decoder forward and slice read, and whether
    a job of the controller was running at that moment."""

    def __init__(self, controller, predictor, monkeypatch):
        from napari_sam.annotate.image_source import SliceView

        self.main = threading.get_ident()
        self.calls: list[tuple[str, int, bool]] = []
        self._c = controller
        from napari_sam.models.cached_decoder import CachedDecoder

        for name, module in (("encoder", predictor.model.image_encoder),
                             ("decoder", predictor.model.mask_decoder)):
            monkeypatch.setattr(module, "forward", self._wrap(name, module.forward))
        # a single click decodes through the click decoder (image-side work cached)
        monkeypatch.setattr(CachedDecoder, "decode", self._wrap("decoder", CachedDecoder.decode))
        monkeypatch.setattr(SliceView, "__getitem__", self._wrap("slice read",
                                                                 SliceView.__getitem__))

    def _wrap(self, name, fn):
        def recorded(*args, **kwargs):
            job = self._c.job
            self.calls.append((name, threading.get_ident(), job is not None and job.running))
            return fn(*args, **kwargs)

        return recorded

    def on_ui_thread_during_a_job(self) -> list[str]:
        return [n for n, t, running in self.calls if t == self.main and running]

    def off_ui_thread(self) -> set[str]:
        return {n for n, t, _ in self.calls if t != self.main}


def _wait(qtbot, controller, timeout=120_000):
    qtbot.waitUntil(lambda: controller.job is None, timeout=timeout)


def test_ui_thread_runs_no_model_or_slice_read_while_jobs_run(make_widget, mid_predictor, qtbot,
                                                             monkeypatch):
    """While a job runs, every encoder and decoder forward and every slice read happens in a
    worker thread (recorded by thread id); the UI thread only applies results. (How long
    the UI thread stalls is measured in benchmarks/bench_gui_responsive.py: a timing fails
    on a busy machine for reasons that are not defects.)"""
    n_slices = 24
    viewer, widget = make_widget(blob_stack(z=n_slices, size=96), sync=False)
    use_predictor(widget, mid_predictor, "mid")
    c = widget.controller
    log = ThreadLog(c, mid_predictor, monkeypatch)
    viewer.dims.set_point(0, 5)
    widget._on_compute()
    assert c.job is not None and c.job.running and c.job.worker is not None
    assert widget._progress.maximum() == 0  # the dock's bar shows the job (busy at first)
    c.points_layer.add([5, 20, 20])  # a click while the job runs: previewed afterwards
    assert not c.previews and "Waiting" in c.status
    _wait(qtbot, c)
    assert c.ready(range(n_slices))
    assert c.previews and c.previews[0].z == 5, c.status

    # a second image: the propagation job computes its embeddings and then propagates
    viewer.add_image(blob_stack(z=10, size=96, seed=4), name="second")
    widget._image.setCurrentIndex(widget._image.findText("second"))
    c.points_layer.add([5, 44, 44])  # starts computing the slice in a worker
    _wait(qtbot, c)
    job = c.propagate(all_objects=True, iou_threshold=0.0, area_factor=1e9, min_area=0)
    assert job.running
    _wait(qtbot, c)
    assert c.volume is not None and c.ready(range(10))
    assert log.on_ui_thread_during_a_job() == []
    assert log.off_ui_thread() == {"encoder", "decoder", "slice read"}
    assert ("decoder", log.main, False) in log.calls  # previews decode on the UI thread,
    # between jobs, from embeddings in memory


def test_cancel_in_a_worker_changes_nothing(make_widget, mid_predictor, qtbot):
    viewer, widget = make_widget(blob_stack(z=12, size=96), sync=False)
    use_predictor(widget, mid_predictor, "mid")
    c = widget.controller
    before = {ly.name: np.array(ly.data, copy=True) for ly in viewer.layers if ly.name != "SAM boxes"}
    c.job_progress.connect(lambda done, total: done > 0 and c.cancel())
    widget._on_compute()
    assert widget._cancel.isEnabled()
    _wait(qtbot, c)
    assert not widget._cancel.isEnabled()
    assert "Cancelled" in c.status
    # the slices it embedded are kept (session 41: they were dropped), the rest are not
    done = 12 - len(c.emb.missing(range(12)))
    assert 0 < done < 12 and c.embedding_summary() == f"{done} of 12 slices embedded"
    for ly in viewer.layers:
        if ly.name in before:
            assert np.array_equal(np.asarray(ly.data), before[ly.name])
    assert mid_predictor.encoder_calls < 3  # stopped after the first batch
