"""Work is never lost or misreported without a word, in the dock opened from the menu:
uncommitted prompts survive picking another image, negative clicks alone refine a selected
label, a refine's status tells the label's true size, one job's progress bar never runs
backwards within a phase, and autosave finds a writable place when the image's folder is
read-only."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from sam_qt_helpers import blob_stack, canvas_click, use_predictor


def _pick_image(widget, name: str) -> None:
    """The user picks ``name`` in the dock's 'Image' box."""
    box = widget._image
    index = box.findData(name)
    assert index >= 0, [box.itemData(i) for i in range(box.count())]
    box.setCurrentIndex(index)


def _manual_labels(viewer, widget, label: int = 5):
    """A labels layer 'manual' with ``label`` on slices 2 and 3 (a 16 x 16 square at the
    first disc) and label 2 elsewhere, chosen as the dock's target."""
    existing = np.zeros((6, 64, 64), np.uint32)
    existing[2:4, 12:28, 12:28] = label
    existing[3, 40:50, 40:50] = 2
    layer = viewer.add_labels(existing.copy(), name="manual")
    widget._refresh_targets()
    widget._target.setCurrentIndex(widget._target.findText("manual"))
    widget._on_target_changed()
    layer.selected_label = label
    viewer.layers.selection.active = widget.controller.points_layer
    return layer, existing


def test_uncommitted_prompts_are_set_aside_and_restored_with_their_image(make_widget,
                                                                        tiny_predictor):
    viewer, widget = make_widget(blob_stack(), name="blobs")
    use_predictor(widget, tiny_predictor)
    viewer.add_image(np.zeros((64, 64), np.float32), name="other")
    c = widget.controller
    assert c.image_name() == "blobs"
    viewer.layers.selection.active = c.points_layer  # napari made 'other' the active layer
    viewer.dims.set_point(0, 3)
    canvas_click(viewer, 20, 20)
    canvas_click(viewer, 30, 30, modifiers=("Shift",))
    c.boxes_layer.add([[[3, 36, 36], [3, 36, 52], [3, 52, 52], [3, 52, 36]]],
                      shape_type="rectangle")
    drawn = c.prompt_arrays()
    assert len(drawn[0]) == 2 and drawn[1].tolist() == [1, 0] and len(drawn[2]) == 1

    _pick_image(widget, "other")
    assert c.image_name() == "other"
    text = widget._status.text()
    assert "Set aside 3 uncommitted prompts of 'blobs' (2 points, 1 box)" in text, text
    assert "pick 'blobs' in 'Image' again to get them back" in text
    assert len(c.points_layer.data) == 0 and len(c.boxes_layer.data) == 0
    # the first status line keeps saying where they are
    assert "Set aside: 3 uncommitted prompts of 'blobs'" in c.next_step()

    _pick_image(widget, "blobs")
    points, labels, boxes = c.prompt_arrays()
    np.testing.assert_allclose(points, drawn[0])
    assert labels.tolist() == [1, 0]
    np.testing.assert_allclose(boxes, drawn[2])
    text = widget._status.text()
    assert text.startswith("Restored 3 uncommitted prompts of 'blobs' (2 points, 1 box) on "
                           "slice 3"), text
    # previewed again (live preview): the point object and the box
    assert [p.key for p in c.previews] == ["points", ("box", 0)]
    assert set(np.unique(c.source.zyx_view(c.preview_layer.data)[3])) == {0, 1, 2}
    assert "Set aside" not in c.next_step()
    assert widget._on_commit().ids == [1, 2]  # and they commit as drawn


def test_negative_clicks_alone_refine_a_selected_label(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    labels, existing = _manual_labels(viewer, widget)
    # without 'Refine selected label', a negative click alone says why nothing happens
    canvas_click(viewer, 20, 20, modifiers=("Shift",))
    assert c.previews == []
    text = widget._status.text()
    assert ("negative points alone do not say which object to cut from ('Refine selected "
            "label' is off)") in text, text
    assert "tick 'Refine selected label'" in text
    widget._refine.setChecked(True)
    widget._on_segment()  # Shift+S: the same negative click, now refining label 5
    (preview,) = c.previews
    # the negative click, and a positive point placed on the part of the label it leaves
    assert preview.mask_prompt and preview.prompt.labels.tolist() == [0, 1]
    assert "a positive point was placed at" in widget._status.text()
    mask = preview.mask.copy()
    commit = widget._on_commit()
    assert commit.ids == [5]
    allowed = (existing[3] == 0) | (existing[3] == 5)
    assert np.array_equal(labels.data[3] == 5, mask & allowed)
    assert np.array_equal(labels.data[2], existing[2])  # other slices keep the label
    widget._on_undo()
    assert np.array_equal(labels.data, existing)


def test_negative_clicks_on_a_slice_without_the_selected_label_say_so(stack_widget):
    viewer, widget = stack_widget
    c = widget.controller
    _manual_labels(viewer, widget)
    widget._refine.setChecked(True)
    viewer.dims.set_point(0, 4)  # label 5 is on slices 2 and 3 only
    canvas_click(viewer, 20, 20, modifiers=("Shift",))
    assert c.previews == []
    assert "(label 5 is not on slice 4)" in widget._status.text(), widget._status.text()


def test_a_refine_commit_reports_the_labels_true_size(stack_widget):
    viewer, widget = stack_widget
    labels, existing = _manual_labels(viewer, widget)
    widget._refine.setChecked(True)
    canvas_click(viewer, 20, 20)
    widget._on_commit()
    after = labels.data[3]
    added = int(((after == 5) & (existing[3] != 5)).sum())
    removed = int(((after != 5) & (existing[3] == 5)).sum())
    size = int((after == 5).sum())
    assert added and removed  # the tiny model's mask differs from the square both ways
    text = widget._status.text()
    assert text.startswith(f"Refined label 5: {size} pixels on slice 3 now ({added} added, "
                           f"{removed} removed). Shift+U undoes it."), text


def _record_bar(c, bar) -> list:
    """What the progress bar shows after each report of a job: (format, value, maximum)."""
    shown = []

    def record(*_):
        shown.append((bar.format(), bar.value(), bar.maximum()))

    c.job_progress.connect(record)  # after the widget's own slot: what the bar shows now
    c.job_phase.connect(record)
    return shown


def _never_backwards_within_a_phase(shown) -> None:
    for (f0, v0, m0), (f1, v1, m1) in zip(shown, shown[1:]):
        if f0 == f1 and m0 > 0 and m1 > 0:
            assert v1 / m1 >= v0 / m0, shown


def test_one_jobs_progress_never_runs_backwards_without_naming_a_new_phase(make_widget,
                                                                          tiny_predictor,
                                                                          qtbot):
    """Segment everything on a stack not embedded yet: embedding, then segmenting, in one
    job in a worker thread; a propagation: propagating only (its slices are embedded as the
    object reaches them); every report the bar shows is recorded."""
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    c.live = False
    viewer.dims.set_point(0, 3)
    bar = widget._progress
    shown = _record_bar(c, bar)
    widget._auto_scope.setCurrentIndex(1)  # the whole stack
    widget._pps.setValue(4)
    widget._on_automatic()
    qtbot.waitUntil(lambda: c.job is None, timeout=120_000)
    formats = [f for f, _, _ in shown]
    assert "embedding %v/%m" in formats and "segmenting %v/%m" in formats, shown
    assert formats.index("embedding %v/%m") < formats.index("segmenting %v/%m")
    _never_backwards_within_a_phase(shown)
    embedded = [(v, m) for f, v, m in shown if f == "embedding %v/%m" and m > 0]
    assert embedded[-1] == (6, 6), shown  # the phase ran to its end before the next began
    assert bar.value() == bar.maximum() > 0 and bar.text() == "100%"  # done: full
    shown.clear()
    canvas_click(viewer, 20, 20)
    widget._on_propagate()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert c.volume is not None
    formats = [f for f, _, _ in shown]
    assert "propagating %v/%m" in formats and "embedding %v/%m" not in formats, shown
    _never_backwards_within_a_phase(shown)
    assert bar.value() == bar.maximum() > 0 and bar.text() == "100%"


def test_autosave_falls_back_to_the_cache_folder_when_the_image_folder_is_read_only(
        make_widget, tiny_ckpt, tmp_path, monkeypatch):
    import tifffile

    from napari_sam.annotate import session_places
    from napari_sam.session import session_file_for

    folder = tmp_path / "read-only"
    folder.mkdir()
    image = folder / "blobs.tif"
    tifffile.imwrite(image, blob_stack())
    cache = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(cache))
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root: chmod does not stop writes
            print("running as root: chmod 0o555 does not stop root's writes, so the "
                  "folder's writability check reads the permission bits instead")
            monkeypatch.setattr(session_places, "folder_writable",
                                lambda f: bool(Path(f).stat().st_mode & 0o222))
        viewer, widget = make_widget()
        widget._model.setCurrentIndex(widget._model.count() - 1)  # "Checkpoint file..."
        widget._on_model_changed(str(tiny_ckpt))
        viewer.open(str(image), plugin="napari")
        c = widget.controller
        viewer.dims.set_point(0, 3)
        canvas_click(viewer, 20, 20)
        assert widget._on_commit().ids == [1]
        fallback = session_places.fallback_session_file(image)
        assert fallback.is_relative_to(cache / "sessions") and fallback.is_file()
        assert sorted(p.name for p in folder.iterdir()) == ["blobs.tif"]  # nothing beside
        text = widget._status.text()
        assert text.startswith("Committed label 1 (")
        assert (f"The folder of 'blobs' ({folder}) is not writable: the session is autosaved "
                f"in {fallback}.") in text, text
        assert c.autosave and not session_file_for(image).exists()
        # said once: the next commit's line does not repeat it, and autosave goes on
        viewer.dims.set_point(0, 1)
        canvas_click(viewer, 44, 44)
        assert widget._on_commit().ids == [2]
        assert "not writable" not in widget._status.text()
        from napari_sam.session import read_session

        assert len(read_session(fallback, load_labels=False).operations) == 2
        # opened again beside the labels that hold its session: the dock goes on with the
        # session in the cache folder (no resume offer, which would copy the labels again)
        viewer.layers.remove("blobs")
        viewer.open(str(image), plugin="napari")
        assert not widget._resume_row.isVisibleTo(widget)
        viewer.dims.set_point(0, 5)
        canvas_click(viewer, 20, 20)
        assert widget._on_commit().ids == [3]
        assert len(read_session(fallback, load_labels=False).operations) == 3
        # without those labels (another viewer), the image offers its session from there
        # once the first dock has closed (a live dock's file is offered to no other)
        viewer.window.remove_dock_widget(widget)
        other, w2 = make_widget()
        w2._model.setCurrentIndex(w2._model.count() - 1)
        w2._on_model_changed(str(tiny_ckpt))
        other.open(str(image), plugin="napari")
        assert w2._resume_row.isVisibleTo(w2)
        assert "3 commits" in w2._resume_label.text()
        assert len(w2._on_resume().operations) == 3
    finally:
        folder.chmod(0o755)


def test_a_long_phase_says_about_how_long_it_has_left(make_widget, tiny_predictor, qtbot,
                                                      monkeypatch):
    """Segment everything on a 3000 px image ran 382 s with a bar that said only how many
    tiles were done (helper walk-through, session 29). A phase that has run for a few
    seconds now says about how long it has left, from its pace; not before (no pace yet),
    not when done, and again from 0 in the next phase."""
    from napari_sam._qt import job_bar
    from napari_sam._qt.job_bar import time_left_text

    assert [time_left_text(s) for s in (3, 41, 250, 4000)] == [
        "about 5 s", "about 40 s", "about 4 min", "about 1 h 7 min"]
    clock = [100.0]
    monkeypatch.setattr(job_bar.time, "monotonic", lambda: clock[0])
    bar = job_bar.JobBar(lambda: None)

    class Running:
        running = True

    bar.on_job_changed(Running())
    bar.on_phase("embedding tiles")
    clock[0] += 2.0
    bar.on_progress(10, 441)
    assert bar.progress.format() == "embedding tiles %v/%m"  # no pace yet
    clock[0] += 18.0  # 20 s for the first 40 tiles: 401 more take about 200 s
    bar.on_progress(40, 441)
    assert bar.progress.format() == "embedding tiles %v/%m, about 3 min left"
    assert bar.progress.text() == "embedding tiles 40/441, about 3 min left"
    bar.on_phase("segmenting")  # a new phase: its own pace
    clock[0] += 1.0
    bar.on_progress(1, 10)
    assert bar.progress.format() == "segmenting %v/%m"
    clock[0] += 9.0
    bar.on_progress(10, 10)
    assert bar.progress.format() == "segmenting %v/%m"  # done: nothing left to say

    # a real threaded job in the dock (no wait: every report after the first says it)
    monkeypatch.undo()
    monkeypatch.setattr(job_bar, "ESTIMATE_AFTER_S", 0.0)
    viewer, widget = make_widget(blob_stack(), sync=False, preload=False, name="blobs")
    use_predictor(widget, tiny_predictor)
    c = widget.controller
    shown = []
    c.job_progress.connect(lambda *_: shown.append(widget._progress.text()))
    c.compute_embeddings()
    qtbot.waitUntil(lambda: c.job is None, timeout=60_000)
    assert any(t.startswith("embedding ") and t.endswith(" left") for t in shown), shown
