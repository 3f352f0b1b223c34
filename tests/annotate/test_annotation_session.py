"""The annotation session driven from plain Python (no napari, no Qt): prompts, preview,
commit into a labels array, undo and redo, propagation, the session log."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import POINT_OBJECT, AnnotationSession, UserError
from stacks import blob_stack


def test_point_preview_commit_undo_redo(session):
    s = session
    assert s.next_step().startswith("Click on an object in 'blobs'")
    s.add_point(3, 20, 20)
    previews = s.update_preview()  # embeds slices 3-5 first (on this thread), then decodes
    assert s.ready([3, 4, 5]) and not s.ready([0])
    assert [(p.key, p.z) for p in previews] == [(POINT_OBJECT, 3)]
    mask = previews[0].mask.copy()
    assert mask.any()
    shown = s.preview_labels()
    assert np.array_equal(shown[3], mask.astype(np.uint16)) and not shown[[0, 1, 2, 4, 5]].any()
    assert s.status.endswith("Shift+C commits.")

    first = s.commit()
    assert first.ids == [1] and first.n_pixels == int(mask.sum())
    assert s.labels.dtype == np.uint32 and s.labels.shape == (6, 64, 64)
    assert np.array_equal(s.labels[3], mask.astype(np.uint32))
    assert not s.labels[[0, 1, 2, 4, 5]].any()
    assert len(s.prompt_arrays()[0]) == 0 and s.previews == []
    assert s.status.startswith(f"Committed label 1 ({mask.sum()} pixels)")
    after_first = s.labels.copy()

    # a positive and a negative point make one object; it gets the next id and leaves label
    # 1's pixels alone
    s.add_point(3, 44, 44)
    s.add_point(3, 4, 60, positive=False)
    (obj,) = s.objects()
    assert obj.slices[3].labels.tolist() == [1, 0]
    mask2 = s.update_preview()[0].mask.copy()
    second = s.commit()
    assert second.ids == [2]
    assert np.array_equal(s.labels[s.labels == 1], after_first[after_first == 1])
    assert np.array_equal(s.labels[3] == 2, mask2 & (after_first[3] == 0))
    after_second = s.labels.copy()

    assert s.undo() is second
    assert np.array_equal(s.labels, after_first)
    assert s.redo() is second
    assert np.array_equal(s.labels, after_second)
    s.undo()
    s.undo()
    assert not s.labels.any()
    with pytest.raises(UserError, match="Nothing to undo"):
        s.undo()
    s.redo()
    assert np.array_equal(s.labels, after_first)
    assert [op["ids"] for op in s.log] == [[1]]  # the log follows undo and redo


def test_the_status_counts_the_propagated_objects(session):
    """"Propagated 1 object(s)" read as a form; two boxes propagate as "2 objects"."""
    s = session
    s.add_box(3, 10, 10, 30, 30)
    s.add_box(3, 34, 34, 54, 54)
    s.propagate(all_objects=True)
    assert s.volume is not None and s.volume.object_ids == [1, 2]
    assert s.status.startswith("Propagated 2 objects over slices "), s.status


def test_boxes_are_objects(session):
    s = session
    s.add_box(3, 10, 10, 30, 30)
    s.add_box(3, 34, 34, 54, 54)
    previews = s.update_preview()
    assert [p.key for p in previews] == [("box", 0), ("box", 1)]
    masks = [p.mask.copy() for p in previews]
    commit = s.commit()
    assert commit.ids == [1, 2]
    assert np.array_equal(s.labels[3] == 1, masks[0])
    assert np.array_equal(s.labels[3] == 2, masks[1] & ~masks[0])


def test_propagate_then_commit_and_undo(session):
    s = session
    s.add_point(3, 20, 20)
    assert s.propagate() is None  # ran on this thread
    assert s.volume is not None and s.previews == []
    preview = s.preview_labels()
    assert np.array_equal(preview, s.volume.labels) and preview[3].any()
    lo, hi = s.volume.slice_range[1]
    where = f"slices {lo}-{hi}" if lo < hi else f"slice {lo}"
    assert f"Propagated 1 object over {where} (" in s.status
    assert s.trace is not None
    commit = s.commit()
    assert commit.ids == [1]
    assert np.array_equal(s.labels, (preview > 0).astype(np.uint32))
    s.undo()
    assert not s.labels.any()


def test_propagation_needs_a_stack(tiny_sam):
    s = AnnotationSession()
    s.set_image(blob_stack()[0])
    s.add_point(0, 20, 20)
    with pytest.raises(UserError, match="needs a 3D stack"):
        s.propagate()


def test_saved_session_replays_to_the_same_labels(session, tmp_path):
    from napari_sam.session import read_session, replay

    s = session
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    s.add_point(3, 44, 44)
    s.propagate()
    s.overwrite = True  # the random tiny model may find the first object again
    s.commit()
    path = s.save_session(tmp_path / "blobs")
    assert path.name == "blobs.json"
    sess = read_session(path)
    assert [op["kind"] for op in sess.operations] == ["slice", "volume"]
    assert np.array_equal(sess.labels, s.labels)
    assert np.array_equal(replay(sess, s.emb).labels, s.labels)


def test_without_image_or_model_the_session_says_what_to_do():
    s = AnnotationSession()
    assert s.next_step().startswith("Open an image")
    with pytest.raises(UserError, match="No image"):
        s.update_preview()
    s.set_image(blob_stack())
    assert s.next_step() == "Pick a model in 'Model'."
    s.add_point(0, 20, 20)
    with pytest.raises(UserError, match="No model"):
        s.update_preview()
