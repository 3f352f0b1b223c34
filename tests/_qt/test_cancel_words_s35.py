"""Cancel says what it kept: the status said "Nothing was changed" while the slices the job
had embedded were kept (the embedding line went from 1 to 5 of 31). A first job's embeddings
are kept too (session 41: they were dropped); one cancelled before it embedded a slice does not
claim any."""

from __future__ import annotations

from sam_qt_helpers import held_model_load, use_predictor

from stacks import blob_stack


def _cancel_after(c, steps: int):
    """Cancel ``c``'s job at its progress report of ``steps`` done; returns the slot."""
    def cancel(done, total):
        if done >= steps:
            c.cancel()

    c.job_progress.connect(cancel)
    return cancel


def test_cancelling_an_embedding_says_what_it_kept(make_widget, tiny_predictor, qtbot):
    viewer, widget = make_widget(blob_stack(z=12), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    assert c.emb is None
    c.compute_embeddings([0])
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.embedding_summary() == "1 of 12 slices embedded"
    cancel_after_two = _cancel_after(c, 2)
    c.compute_embeddings()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.status.startswith("Cancelled: Computing SAM embeddings. The labels and prompts "
                               "are as they were (the slices it had embedded are kept)."), c.status
    calls = tiny_predictor.encoder_calls
    summary = c.embedding_summary()  # e.g. "4 of 12 slices embedded"
    embedded = int(summary.split()[0])
    assert 2 <= embedded < 12 and summary.endswith("of 12 slices embedded"), summary
    c.job_progress.disconnect(cancel_after_two)
    c.compute_embeddings()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.ready(range(12))
    assert tiny_predictor.encoder_calls - calls < 12  # the kept slices were not encoded again


def test_cancelling_a_first_embedding_before_a_slice_claims_nothing_kept(
        make_widget, tiny_predictor, qtbot, monkeypatch):

    viewer, widget = make_widget(blob_stack(z=12), sync=False, preload=False, name="blobs")
    c = widget.controller
    gate, entered = held_model_load(monkeypatch, c, tiny_predictor)
    c.compute_embeddings()  # it loads the model first: cancelled then, it embeds nothing
    qtbot.waitUntil(entered.is_set, timeout=30_000)
    c.cancel()
    gate.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.status == ("Cancelled: Computing SAM embeddings. The labels and prompts are as "
                        "they were."), c.status
    assert c.embedding_summary() == "0 of 12 slices embedded"
