"""The dock under a memory limit (a laptop, a cluster job's cgroup): a job that would not fit
is refused before it starts, with numbers and what to do, and the labels stay. Under a
cgroup's limit nothing raises ``MemoryError``: the kernel kills napari, with the user's
labels (Session 42's walk-through: Segment everything on a 300 x 1024 x 1024 stack under 3
GiB). The limit is faked through napari_sam.memory's readers (``memory_room``)."""

from __future__ import annotations

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, canvas_click, click_button, use_predictor

GB = 1_000_000_000


def _committed(viewer, widget, tiny_predictor):
    """The dock on the blob stack (slice 3 shown) with one label committed; its layer."""
    use_predictor(widget, tiny_predictor)
    viewer.dims.set_point(0, 3)
    widget.wait()
    c = widget.controller
    c.add_point(3, 20, 20)
    widget.wait()
    widget._on_commit()
    widget.wait()
    assert c.status.startswith("Committed label 1"), c.status
    return c.target_layer


def test_segment_everything_that_cannot_fit_is_refused_and_the_labels_stay(
        make_widget, tiny_predictor, memory_room, notifications, qtbot):
    viewer, widget = make_widget(blob_stack(z=6), sync=False, name="blobs")
    target = _committed(viewer, widget, tiny_predictor)
    before, n_layers = np.array(target.data, copy=True), len(viewer.layers)
    c = widget.controller
    memory_room(40 * 10**6)
    widget._auto_scope.setCurrentIndex(1)  # whole stack, propagated
    status = click_button(qtbot, widget, "Segment everything")
    assert status.startswith(
        "Not started: Segment everything on the whole 6 x 64 x 64 stack, its objects "
        "propagated, needs about 52 MB of memory, more than the 40 MB free here (or under "
        "napari's memory limit): out of memory, the system could close napari. Instead: "
        "untick 'Propagate objects through the stack' (the slices' objects linked only: "
        "about 52 MB); pick 'current slice' in 'Where'"), status
    assert ("warning", status) in notifications  # 52: 50 working, 1.3 of embeddings
    assert c.job is None and len(viewer.layers) == n_layers
    np.testing.assert_array_equal(target.data, before)
    # with the memory there (another program closed) the same button segments
    memory_room(10 * GB)
    widget._auto_propagate.setChecked(False)
    click_button(qtbot, widget, "Segment everything")
    widget.wait()
    assert c.status.startswith("Segment everything: "), c.status
    assert "automatic segmentation" in viewer.layers
    np.testing.assert_array_equal(target.data, before)


def test_a_propagation_that_cannot_fit_is_refused_and_keeps_its_prompts(
        make_widget, tiny_predictor, memory_room, qtbot):
    viewer, widget = make_widget(blob_stack(z=6), sync=False, name="blobs")
    target = _committed(viewer, widget, tiny_predictor)
    c = widget.controller
    c.add_point(3, 44, 44)
    widget.wait()
    memory_room(100_000)
    status = click_button(qtbot, widget, "Propagate")
    assert status.startswith("Not started: Propagating 1 object through this 6 x 64 x 64 "
                             "stack needs about "), status
    assert "more than the 0.1 MB free here" in status
    assert "crop the stack (a smaller region, fewer slices) and propagate there" in status
    assert c.job is None and c.volume is None
    assert len(c.points_layer.data) == 1  # the prompt is kept
    assert set(np.unique(target.data)) == {0, 1}
    memory_room(10 * GB)
    click_button(qtbot, widget, "Propagate")
    widget.wait()
    assert c.status.startswith("Propagated 1 object"), c.status


def _large_image_refused(make_widget, memory_room, qtbot):
    """``(viewer, widget)``: the dock (threaded jobs) on a 2000 x 2000 image with 150 MB free,
    its preload refused for memory (and ``widget.wait()``, what a script driving the dock
    calls, raising that)."""
    memory_room(150 * 10**6)
    image = np.random.default_rng(0).integers(0, 255, (2000, 2000), dtype=np.uint8)
    viewer, widget = make_widget(image, sync=False, preload=True, name="large")
    qtbot.waitUntil(lambda: widget.controller.job is None
                    and widget.controller.status.startswith("Not started"), timeout=120_000)
    with pytest.raises(RuntimeError, match="'Computing SAM embeddings' was refused: Not started"):
        widget.wait()
    return viewer, widget


def test_a_large_image_whose_tiles_cannot_fit_is_refused_then_embeds_into_a_store(
        make_widget, memory_room, demo_available, qtbot, tmp_path):
    """A 2000 x 2000 image and the demo model: 121 tiles of 1 MiB kept in memory, and 40 MB
    left for the first commit's labels. Under 150 MB free the embedding is refused (was:
    started; an 8000 x 8000 image's 1764 tiles held 1.8 GB, and the first commit under a 3
    GiB limit was killed by the kernel, napari with it); with an 'Embedding store' at most
    75 MB of tiles stay in memory (half the free memory, at least 64 MiB) and it embeds."""
    viewer, widget = _large_image_refused(make_widget, memory_room, qtbot)
    c = widget.controller
    # a refusal, not a failure (was: "Failed: Computing SAM embeddings (embedding tiles).
    # Not started: ...", a job that failed and did not start)
    assert c.status.startswith(
        "Not started: Embedding this 2000 x 2000 image in 121 tiles (kept in memory, with "
        "room for its labels) needs about 167 MB of memory, more than the 150 MB free here"
    ), c.status
    assert "Failed" not in c.status and c.status.endswith(
        "Nothing was changed: your labels and prompts are kept. [demo model]"), c.status
    assert widget._emb_state.text() == "refused: not embedded yet"  # (was "failed: ...")
    assert ("Instead: set an 'Embedding store' (a folder on disk: the tiles' embeddings go "
            "there and at most 75 MB of them stay in memory); untick 'Tile large images'"
            ) in c.status
    assert c.job is None and not widget._cancel.isEnabled()
    widget._store.setText(str(tmp_path / "emb.zarr"))
    widget._on_store_changed()
    widget._on_compute()
    widget.wait()
    assert c.status.startswith("Embeddings ready (1 slice, tiled: 2000 x 2000 in 121 tiles"), (
        c.status)
    assert c.emb.cache_bytes == 75 * 10**6 and (tmp_path / "emb.zarr").is_dir()
    # less memory free now: a click, then its slice's other tiles read back from the store
    # in the background, need no more than the tiles held already (was: refused, "Failed:
    # Embedding the other tiles of this slice ... needs about 115 MB", over the preview)
    memory_room(60 * 10**6)
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 1000, 1000)
    widget.wait()
    assert c.status.startswith("point object: "), c.status
    assert c.previews  # (and wait() raised no failure of the background job)


def test_clicks_on_a_large_image_whose_tiles_cannot_fit_are_decoded_tile_by_tile(
        make_widget, memory_room, demo_available, qtbot):
    """The preload of a 2000 x 2000 image was refused for memory (no store): a click is
    still previewed (only its tiles are embedded), and the slice's other tiles are not
    embedded in the background, the status line saying so (was: that background job failed
    with the refusal over the click's preview, at every click)."""
    viewer, widget = _large_image_refused(make_widget, memory_room, qtbot)
    c = widget.controller
    viewer.layers.selection.active = c.points_layer
    canvas_click(viewer, 1000, 1000)
    widget.wait()
    assert c.status.startswith("point object: "), c.status
    assert c.status.endswith("The slice's other tiles are not embedded (too little memory "
                             "free for them); each click embeds the tiles it needs; set an "
                             "'Embedding store' to embed them all. [demo model]"), c.status
    assert c.previews and c.job is None
    assert c.emb.missing([0]) == [0] and 0 < c.emb.bytes_in_memory < 121 * (1 << 20)
