"""Session 41: the dock opened from the menu, as a user meets it.

- After the embedding store filled the disk part-way through 'Compute embeddings' the line
  beside the button said "failed: 0 of 8 slices embedded" although 3 slices were embedded
  and stored (the job's embeddings were dropped with its failure).
- *Save session* to a name of over 218 bytes (UTF-8) failed with "File name too long. Pick a
  folder you can write to.": the names of its labels' files are longer.
- With 'SAM points' hidden (and 'SAM boxes', so grid mode was not refused) napari puts the
  layer in pan/zoom mode: clicks added nothing while the status said "Click on an object".
- Checked, no defect: a box dragged on an image layer with ``rotate=`` is drawn by napari in
  the boxes layer's data space (the image's pixel grid, which that layer shares), so the box
  prompt is the rectangle shown, rotated with the image.
"""

from __future__ import annotations

import os

import numpy as np
from sam_qt_helpers import (
    blob_stack,
    canvas_click,
    canvas_drag,
    click_button,
    commit_on,
    dock_on,
    grid_of_two_images,
    store_fills_from_slice,
    use_predictor,
)


def test_the_embedding_line_counts_the_slices_stored_before_the_disk_filled(
        make_widget, tiny_predictor, tmp_path, monkeypatch, qtbot):
    import zarr

    _viewer, widget = make_widget(blob_stack(z=8), sync=False, preload=False, name="stack")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    store = tmp_path / "emb.zarr"
    widget._store.setText(str(store))
    widget._on_store_changed()
    assert widget._emb_state.text() == "0 of 8 slices embedded"
    write = store_fills_from_slice(monkeypatch, 3)  # the features of slices 3.. find no space
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert "no space left on the device" in widget._status.text()
    stored = np.asarray(zarr.open_group(str(store), mode="r")["slice_hash"][:]) != 0
    assert stored.tolist() == [True] * 3 + [False] * 5
    assert widget._emb_state.text() == "failed: 3 of 8 slices embedded"
    monkeypatch.setattr(zarr.Array, "__setitem__", write)  # space freed: it goes on from there
    click_button(qtbot, widget, "Compute embeddings")
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    assert widget._emb_state.text() == "8 of 8 slices embedded"


def test_save_session_under_a_name_too_long_for_its_labels_files_shortens_it(
        make_widget, stack_file, tiny_ckpt, tmp_path, monkeypatch):
    """File > Save SAM session... to a 225-byte name (non-ASCII: 2 bytes a letter) said
    "File name too long. Pick a folder you can write to." and saved nothing: the labels' TIFF
    beside it (and its temporary file) add up to 42 bytes to the name, past the 255 a file
    name may have."""
    from napari_sam import session as S
    from napari_sam._qt.session_menu import save_session

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget = dock_on(make_widget, stack_file, tiny_ckpt)
    c = widget.controller
    commit_on(viewer, widget, 2)
    asked = tmp_path / "out" / ("é" * 110 + ".json")
    asked.parent.mkdir()
    saved = save_session(viewer, str(asked))
    assert saved.parent == asked.parent and saved.name == S.fit_file_name(asked.name, 218)
    assert saved.name.startswith("é" * 90) and len(os.fsencode(saved.name)) <= 218
    assert widget._status.text() == (
        f"Saved the session (1 commits) to {saved} (the name given, 225 bytes, was too long: "
        "a session file's name may have 218 bytes, as the names of its labels' files add 37 "
        "and a file name may have 255; it was shortened to its start and a hash of the whole "
        "name).")
    back = S.read_session(saved)
    assert np.array_equal(back.labels, np.asarray(c.target_layer.data))
    assert sorted(np.unique(back.labels)) == [0, 1]
    assert sorted(p.suffix for p in asked.parent.iterdir()) == [".json", ".tif"]
    assert save_session(viewer, str(tmp_path / "out" / "short")) == tmp_path / "out" / "short.json"
    assert widget._status.text() == f"Saved the session (1 commits) to {saved.parent}/short.json."


def test_a_hidden_points_layer_says_clicks_add_nothing_and_shown_in_grid_mode_is_refused(
        make_widget, tiny_predictor, qtbot):
    viewer, widget, _grid = grid_of_two_images(make_widget, tiny_predictor, qtbot)
    c = widget.controller
    refused = ("Grid mode is on: each layer is drawn in a tile of its own, so a click on 'img' "
               "would prompt the pixel at that place of the 'SAM points' tile")
    assert widget._status.text().startswith(refused)
    viewer.layers.selection.active = c.points_layer
    c.boxes_layer.visible = False  # the user hides both with their eyes in the layer list
    c.points_layer.visible = False
    hidden = ("Click on an object in 'img' to segment it (Shift-click: negative point; draw a "
              "box in 'SAM boxes' for one object per box). 'SAM points' is hidden, so clicks "
              "on the canvas add nothing to it (napari edits no hidden layer): show it (its "
              "eye in the layer list) to segment.")
    assert widget._status.text() == hidden
    canvas_click(viewer, 20, 20)
    qtbot.wait(50)
    assert len(c.points_layer.data) == 0 and not c.previews
    assert widget._status.text() == hidden
    c.points_layer.visible = True  # shown again: its tile is apart from the image's
    assert widget._status.text().startswith(refused)
    canvas_click(viewer, 20, 20)
    qtbot.wait(50)
    assert len(c.points_layer.data) == 0 and not c.previews


def test_a_box_dragged_on_a_rotated_image_prompts_the_rectangle_drawn_over_its_pixels(
        make_widget, tiny_predictor, qtbot):
    img = np.random.default_rng(0).normal(20, 3, (128, 128)).astype(np.float32)
    viewer, widget = make_widget(img, name="rotated", rotate=30)
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    image = viewer.layers["rotated"]
    viewer.window._qt_window.resize(1100, 800)
    viewer.window._qt_window.show()
    qtbot.waitUntil(widget.isVisible, timeout=5000)
    qtbot.wait(200)  # the canvas takes its size
    viewer.reset_view()  # the whole image in view
    viewer.layers.selection.active = c.boxes_layer
    # from the pixel (70, 10) on the screen to the pixel (110, 50): a rotated square there
    canvas_drag(viewer, qtbot, image.data_to_world((70, 10))[-2:],
                image.data_to_world((110, 50))[-2:])
    assert np.allclose(c.boxes_layer.data[0], [[70, 10], [70, 50], [110, 50], [110, 10]],
                       atol=0.01)
    qtbot.waitUntil(lambda: c.job is None and bool(c.previews), timeout=30_000)
    assert np.allclose(c.prompt_arrays()[2], [[0, 70, 10, 110, 50]], atol=0.01)
    assert widget._status.text().startswith("box 1: score")
