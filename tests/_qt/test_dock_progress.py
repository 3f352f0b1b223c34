"""The dock's jobs show their progress in the dock's own bar only: napari's progress bar
beside it (in napari's activity dock) made every job about 1.4x slower on software OpenGL
(Xvfb, remote desktops, machines without a GPU driver: the main thread redrew napari's
window while it was shown; benchmarks/bench_dock_jobs.py), and said nothing the dock's bar
does not."""

from __future__ import annotations

from sam_qt_helpers import blob_stack, use_predictor


def test_dock_jobs_report_in_the_dock_bar_without_napari_progress_bars(
        make_widget, tiny_predictor, qtbot):
    from napari.utils import progress

    viewer, widget = make_widget(blob_stack(z=6), sync=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    made = []

    def added(event):
        made.extend(event.added)

    progress._all_instances.events.changed.connect(added)
    try:
        c.compute_embeddings(range(6))
        assert c.job is not None  # threaded: it runs while the test waits
        qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    finally:
        progress._all_instances.events.changed.disconnect(added)
    assert c.ready(range(6))
    assert made == []
    bar = widget._progress
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
