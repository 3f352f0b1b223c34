"""A contrast store a running job embeds into stays held until the job ends
(:func:`napari_sam.annotate.contrast_stores.held_while`). Before: three contrast changes
(a script's ``set_model_contrast`` in napari's console) while the dock's embedding ran let the
dock's hold on that store go, and another session sharing the Embedding store, which had
made it, deleted it under the job's writes. Real worker thread; the encoder is held."""

from __future__ import annotations

from sam_qt_helpers import held_encoder, use_predictor

from napari_sam.annotate.contrast_stores import store_in_use
from napari_sam.embeddings import is_embedding_store
from stacks import blob_session, blob_stack


def test_a_store_stays_held_while_a_job_writes_into_it(make_widget, tiny_predictor, tiny_sam,
                                                      qtbot, monkeypatch, tmp_path):
    store = tmp_path / "emb.contrast-0-60.zarr"
    other = blob_session(tiny_sam)  # another session on the same Embedding store makes it
    other.set_store(str(tmp_path / "emb.zarr"))
    other.set_model_contrast((0, 60))
    other.compute_embeddings([3])
    viewer, widget = make_widget(blob_stack(), name="blobs", sync=False, preload=False)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    c.set_store(str(tmp_path / "emb.zarr"))
    c.set_model_contrast((0, 60))
    gate, entered, _ = held_encoder(monkeypatch, tiny_predictor)
    try:
        job = c.compute_embeddings([4])  # the dock's job embeds slice 4 into the store
        qtbot.waitUntil(entered.is_set, timeout=30_000)
        for hi in (70, 80, 90):  # the dock's three most recent contrasts move on
            c.set_model_contrast((0, hi))
        assert job.running
        for hi in (70, 80, 90, 100):  # the other session's 4th change deleted it before
            other.set_model_contrast((0, hi))
        assert is_embedding_store(store) and store_in_use(store)  # the job holds it
    finally:
        gate.set()
    qtbot.waitUntil(lambda: not job.running, timeout=30_000)
    assert not store_in_use(store)  # the job ended: let go
    other.set_model_contrast((0, 110))  # made by the other session, used by nobody: deleted
    assert not store.exists()
