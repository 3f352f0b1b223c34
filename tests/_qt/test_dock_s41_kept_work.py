"""Session 41: work the user did is kept, or the user is told it is not being saved.

- Cancelling *Compute embeddings* after it had embedded slices dropped them: the line beside
  the button said "cancelled: 0 of 8 slices embedded" and the next *Compute embeddings*
  encoded them all again.
"""

from __future__ import annotations

from sam_qt_helpers import blob_stack, click_button, held_encoder, use_predictor


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
