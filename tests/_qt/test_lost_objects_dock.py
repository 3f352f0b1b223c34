"""Objects a propagation lost are said in the dock's status line, not warned, and without
touching the process's warning filters: the dock silenced its LostObjectsWarning with
``warnings.catch_warnings`` in its helper thread, which put an "ignore" filter in front of
every thread's while the propagation ran (a script's or a plugin's own LostObjectsWarning
meanwhile was dropped), and ``catch_warnings`` is not thread-safe."""

from __future__ import annotations

import threading
import warnings

from sam_qt_helpers import blob_stack, canvas_click, press_key, use_predictor

from napari_sam.volume import SlicePrompt
from napari_sam.volume.result import LostObjectsWarning
from test_volume import OracleStack, cylinders


def _ignored_lost() -> list:
    """The warning filters that drop every LostObjectsWarning (whatever its message)."""
    return [f for f in warnings.filters if f[0] == "ignore" and f[1] is None
            and issubclass(LostObjectsWarning, f[2])]


def test_the_dock_says_lost_objects_and_leaves_other_threads_warnings_alone(
        make_widget, tiny_predictor, qtbot, monkeypatch):
    import napari_sam.volume as V

    viewer, widget = make_widget(blob_stack(z=8), sync=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 3)
    qtbot.waitUntil(lambda: c.job is None and c.ready([3]), timeout=60_000)
    inside, go, real = threading.Event(), threading.Event(), V.segment_volume
    # object 2's click lies on object 1's disc: its masks lose every pixel to object 1
    gt = cylinders(n_slices=8, objects=((1, (20, 20), 6, 0, 7),))
    lost = {1: SlicePrompt(3, points=[[20, 20]]), 2: SlicePrompt(3, points=[[21, 21]])}

    def held(emb, prompts, **options):  # the dock's options, on a stack that loses object 2
        inside.set()
        assert go.wait(60)
        return real(OracleStack(gt), lost, **options)

    monkeypatch.setattr(V, "segment_volume", held)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    assert not _ignored_lost()
    press_key(viewer, "Shift-D")
    qtbot.waitUntil(inside.is_set, timeout=60_000)
    try:  # while the dock propagates: nothing drops a LostObjectsWarning of another thread
        assert not _ignored_lost()
    finally:
        go.set()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert not _ignored_lost()
    status = widget._status.text()
    assert c.volume is not None and list(c.volume.lost) == [2]
    assert "lost every pixel to other objects" in c.volume.lost[2]
    assert status.startswith("Propagated 1 object over slices 0-7"), status
    assert status.endswith(f" Not in the preview: object 2 ({c.volume.lost[2]})."), status
