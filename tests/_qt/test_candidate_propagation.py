"""The dock opened from the menu: a click, Shift+M to another candidate mask, then Propagate
(real worker threads, real mouse events and key presses) starts the object from the mask
that was shown, and the preview shows it again after a trip to another slice."""

from __future__ import annotations

import numpy as np
from sam_qt_helpers import blob_stack, canvas_click, use_predictor


def test_propagate_starts_from_the_mask_shift_m_showed(make_widget, tiny_predictor, qtbot):
    viewer, widget = make_widget(blob_stack(), sync=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    viewer.dims.set_point(0, 3)
    qtbot.waitUntil(lambda: c.job is None and c.ready([3]), timeout=60_000)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 20, 20)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    (p,) = c.previews
    best = p.index
    for _ in range(2):  # Shift+M until the mask shown is not the best scoring one
        viewer.window._qt_viewer._key_map_handler.press_key("Shift-M")
        if (p.masks[p.index] != p.masks[best]).sum() > 20:
            break
    chosen = p.index
    assert chosen != best
    shown = c.source.zyx_view(c.preview_layer.data)[3] == 1
    assert np.array_equal(shown, p.masks[chosen])
    assert f"candidate {chosen + 1}/3" in widget._status.text()

    viewer.dims.set_point(0, 4)  # another slice and back: the same candidate is shown
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    viewer.dims.set_point(0, 3)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=60_000)
    assert c.previews[0].index == chosen

    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None and c.volume is not None, timeout=120_000)
    got = c.volume.labels[3] == 1
    assert np.array_equal(got, shown)  # before: the best scoring candidate's mask
    assert not np.array_equal(got, p.masks[best])
    commit = widget._on_commit()
    assert commit.ids == [1]
    assert np.array_equal(c.target_labels()[3] == 1, shown)
