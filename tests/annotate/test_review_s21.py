"""Review s21 (no napari, no Qt): undo and redo never overwrite pixels edited since the commit
(or the undo) and never give two objects one id; a labels target that is not an in-memory
numpy array is refused with what to do before anything reads it; a click beside the image is
explained as lying beside the image."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from napari_sam.annotate import UserError
from napari_sam.annotation import CommitHistory, LabelIdTaken, ObjectMask, apply_objects

# --------------------------------------------------------------------- CommitHistory alone


def _disc(shape, centre, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < r * r


def _commit(lab, hist, mask, **kw):
    commit = apply_objects(lab, [ObjectMask(mask, z=0, **kw)])
    hist.push(commit)
    return commit


def test_undo_leaves_hand_painted_pixels_and_redo_puts_back_only_what_it_took():
    lab = np.zeros((1, 40, 40), np.uint32)
    hist = CommitHistory()
    a = _disc((40, 40), (10, 10), 6)
    c1 = _commit(lab, hist, a)
    painted = np.zeros((40, 40), bool)
    painted[8:12, 4:30] = True  # half inside label 1, half on background
    lab[0][painted] = 7
    b = _disc((40, 40), (30, 30), 5)
    _commit(lab, hist, b)
    hist.undo(lab)
    assert (lab[0] == 2).sum() == 0 and (lab[0] == 7).sum() == painted.sum()
    assert hist.undo(lab) is c1
    assert c1.left == int((a & painted).sum()) > 0
    assert (lab[0] == 7).sum() == painted.sum()  # the hand edit survives the undo
    assert (lab[0] == 1).sum() == 0
    hist.redo(lab)
    assert c1.left == 0
    assert np.array_equal(lab[0] == 1, a & ~painted)
    assert (lab[0] == 7).sum() == painted.sum()


def test_redo_leaves_pixels_painted_after_the_undo():
    lab = np.zeros((1, 40, 40), np.uint32)
    hist = CommitHistory()
    a = _disc((40, 40), (20, 20), 8)
    c1 = _commit(lab, hist, a)
    hist.undo(lab)
    brush = _disc((40, 40), (20, 26), 5)  # the user paints label 9 where label 1 was
    lab[0][brush] = 9
    hist.redo(lab)
    assert c1.left == int((a & brush).sum()) > 0
    assert (lab[0] == 9).sum() == brush.sum()
    assert np.array_equal(lab[0] == 1, a & ~brush)
    # undoing again removes exactly what the redo wrote
    hist.undo(lab)
    assert c1.left == 0 and (lab[0] == 1).sum() == 0 and (lab[0] == 9).sum() == brush.sum()


def test_undo_of_a_refinement_keeps_later_paint_and_restores_the_rest():
    lab = np.zeros((1, 40, 40), np.uint32)
    hist = CommitHistory()
    old = _disc((40, 40), (20, 20), 6)
    lab[0][old] = 5  # an existing label, refined by the commit
    new = _disc((40, 40), (20, 24), 6)
    c = _commit(lab, hist, new, replaces=5)
    assert c.ids == [5] and c.new_ids == []
    gained = new & ~old
    lab[0][gained & (np.arange(40) < 26)[None, :]] = 3  # painted over part of the gain
    painted = int((lab[0] == 3).sum())
    hist.undo(lab)
    assert c.left == painted > 0
    assert np.array_equal(lab[0] == 5, old)  # the old shape is back
    assert (lab[0] == 3).sum() == painted


def test_ids_after_a_label_deleted_by_hand_never_make_two_objects_of_one_id():
    """Commit 1, 2, 3; erase label 3 by hand; commit a new object (it gets id 3 again);
    undo twice, redo twice: only the new object holds id 3."""
    lab = np.zeros((1, 60, 60), np.uint32)
    hist = CommitHistory()
    discs = [_disc((60, 60), c, 6) for c in ((10, 10), (10, 45), (45, 10), (45, 45))]
    for d in discs[:3]:
        _commit(lab, hist, d)
    assert np.unique(lab).tolist() == [0, 1, 2, 3]
    lab[lab == 3] = 0  # the user erases label 3
    fourth = _commit(lab, hist, discs[3])
    assert fourth.ids == [3]
    hist.undo(lab)
    third = hist.undo(lab)
    assert third.ids == [3] and third.n_pixels == 0  # nothing of it was left to undo
    assert np.unique(lab).tolist() == [0, 1, 2]
    hist.redo(lab)
    hist.redo(lab)
    assert np.array_equal(lab[0] == 3, discs[3])  # one object 3: the new one
    assert (lab[0][discs[2]] == 0).all()  # the erased label stays erased


def test_redo_refuses_an_id_given_to_other_pixels_since_the_undo():
    lab = np.zeros((1, 40, 40), np.uint32)
    hist = CommitHistory()
    a = _disc((40, 40), (10, 10), 5)
    _commit(lab, hist, a)
    hist.undo(lab)
    lab[0, 30:35, 30:35] = 1  # the user paints a new object with id 1
    before = lab.copy()
    with pytest.raises(LabelIdTaken, match="label 1 was given to other pixels"):
        hist.redo(lab)
    assert np.array_equal(lab, before) and hist.can_redo and not hist.can_undo
    lab[0, 30:35, 30:35] = 4  # gives it another id: the redo goes through
    hist.redo(lab)
    assert np.array_equal(lab[0] == 1, a)


def test_redo_keeps_the_objects_own_pixels_left_by_a_partial_undo():
    """Pixels of the new id left after the undo (the user extended the object by hand) do
    not block its redo."""
    lab = np.zeros((1, 40, 40), np.uint32)
    hist = CommitHistory()
    a = _disc((40, 40), (20, 20), 5)
    _commit(lab, hist, a)
    extra = np.zeros((40, 40), bool)
    extra[20, 25:30] = True  # just beside the disc
    assert not (a & extra).any()
    lab[0][extra] = 1  # extended by hand with its own id
    hist.undo(lab)
    assert np.array_equal(lab[0] == 1, extra)  # the hand-painted pixels stay
    hist.redo(lab)
    assert np.array_equal(lab[0] == 1, a | extra)


def test_overwriting_objects_of_one_commit_undo_and_redo_exactly():
    lab = np.zeros((1, 30, 30), np.uint16)
    lab[0, 5:15, 5:15] = 2
    original = lab.copy()
    hist = CommitHistory()
    m1 = np.zeros((30, 30), bool)
    m1[0:12, 0:12] = True
    m2 = np.zeros((30, 30), bool)
    m2[8:20, 8:20] = True
    commit = apply_objects(lab, [ObjectMask(m1, 0), ObjectMask(m2, 0)], overwrite=True)
    hist.push(commit)
    after = lab.copy()
    hist.undo(lab)
    assert np.array_equal(lab, original) and commit.left == 0
    hist.redo(lab)
    assert np.array_equal(lab, after) and commit.left == 0


# --------------------------------------------------------------------- the session


def _commit_click(s, row, col):
    s.add_point(3, row, col)
    mask = s.update_preview()[0].mask.copy()
    return s.commit(), mask


def test_session_undo_keeps_a_hand_painted_label_and_says_so(session):
    s = session
    first, mask1 = _commit_click(s, 20, 20)
    assert first.ids == [1]
    painted = np.zeros((64, 64), bool)
    painted[18:23, 10:40] = True
    s.labels[3][painted] = 7  # the user paints label 7 over label 1 and the background
    n7 = int(painted.sum())
    inside = int((mask1 & painted).sum())
    assert inside > 0
    second, _ = _commit_click(s, 44, 44)
    assert second.ids == [8]  # one more than the painted label
    s.undo()
    assert int((s.labels == 7).sum()) == n7 and int((s.labels == 8).sum()) == 0
    assert s.status.startswith("Undid commit of label 8 in 'labels'.")
    assert s.undo() is first
    assert int((s.labels == 7).sum()) == n7  # the hand edit survives
    assert int((s.labels == 1).sum()) == 0
    assert (f"Undid commit of label 1 in 'labels'. {inside} pixels changed since the commit "
            "(painted, erased or committed over) were left as they are.") in s.status
    s.redo()
    assert np.array_equal(s.labels[3] == 1, mask1 & ~painted)
    assert int((s.labels == 7).sum()) == n7
    assert s.status.startswith("Redid commit of label 1 in 'labels'.")
    assert "changed since" not in s.status


def test_session_redo_keeps_a_label_painted_after_the_undo(session):
    s = session
    _, mask1 = _commit_click(s, 20, 20)
    s.undo()
    brush = np.zeros((64, 64), bool)
    brush[15:25, 15:25] = True
    s.labels[3][brush] = 9
    hit = int((mask1 & brush).sum())
    assert hit > 0
    s.redo()
    assert int((s.labels == 9).sum()) == brush.sum()
    assert np.array_equal(s.labels[3] == 1, mask1 & ~brush)
    assert (f"{hit} pixels changed since the undo (painted, erased or committed over) were "
            "left as they are.") in s.status
    assert [op["ids"] for op in s.log] == [[1]]  # the log followed the redo


def test_session_ids_after_a_label_erased_by_hand(session):
    s = session
    _, mask1 = _commit_click(s, 20, 20)
    s.labels[s.labels == 1] = 0  # the user erases label 1
    second, mask2 = _commit_click(s, 44, 44)
    assert second.ids == [1]  # the id is free again
    s.undo()
    s.undo()
    assert not s.labels.any()
    assert "nothing else was left" not in s.status  # erased pixels hold what undo restores
    s.redo()
    s.redo()
    assert np.array_equal(s.labels[3] == 1, mask2)  # one object 1, not the erased one too
    assert [op["ids"] for op in s.log] == [[1], [1]]


def test_session_redo_refused_when_its_id_was_painted_since(session):
    s = session
    _, mask1 = _commit_click(s, 20, 20)
    s.undo()
    s.labels[0, :4, :4] = 1  # napari's brush with label 1, on another slice
    before = s.labels.copy()
    with pytest.raises(UserError, match=r"Not redone: label 1 was given to other pixels since "
                       r"the undo \(painted or committed\); redoing would make two objects of "
                       r"one id in 'labels'"):
        s.redo()
    assert np.array_equal(s.labels, before)
    assert s.log == []  # the log still has the commit undone
    s.labels[0, :4, :4] = 0
    s.redo()
    assert np.array_equal(s.labels[3] == 1, mask1) and [op["ids"] for op in s.log] == [[1]]


# --------------------------------------------------------------------- defect 7: target kind


def _dask(shape):
    da = pytest.importorskip("dask.array")
    return da.zeros(shape, dtype=np.uint32, chunks=(1, 32, 32))


@pytest.mark.parametrize("kind", ["dask", "read-only", "zarr"])
def test_commit_into_a_labels_array_that_is_not_writable_numpy_is_refused_first(session, kind):
    s = session
    shape = s.source.shape
    if kind == "dask":
        s.labels, name = _dask(shape), "(dask.Array)"
    elif kind == "zarr":
        zarr = pytest.importorskip("zarr")
        s.labels, name = zarr.zeros(shape, dtype=np.uint32, chunks=(1, 32, 32)), "(zarr."
    else:
        s.labels, name = np.zeros(shape, np.uint32), "(read-only)"
        s.labels.setflags(write=False)
    s.add_point(3, 20, 20)
    s.update_preview()
    assert s.previews
    with pytest.raises(UserError) as info:
        s.commit()
    text = str(info.value)
    assert text.startswith(f"Not committed: the data of 'labels' {name}")
    assert ("is not an in-memory writable numpy array. Pick a new layer in 'Labels layer', "
            "or convert this one: type in napari's console: ") in text
    assert not np.asarray(s.labels).any() and s.log == [] and not s.history.can_undo
    assert len(s.prompt_arrays()[0]) == 1  # the prompts are kept for the next try
    # the console line works as typed in napari's console (which defines 'viewer' only)
    line = text.split("type in napari's console: ", 1)[1].removesuffix(" (then commit again).")
    layer = SimpleNamespace(data=s.labels)
    exec(line, {"viewer": SimpleNamespace(layers={"labels": layer})})
    s.labels = layer.data
    s.commit()
    assert np.asarray(s.labels)[3].any() and len(s.log) == 1


# --------------------------------------------------------------------- defect 9: beside


def test_positive_click_beside_the_image_is_explained_as_beside_it(session):
    s = session
    s.add_point(3, -20, 40)  # napari's points layer takes a click above the image
    assert s.update_preview() == []
    assert s.status == (
        "1 prompt lies beside the image and is ignored: delete it (select in 'SAM points' / "
        "'SAM boxes', Delete). Add a point (click) or a box (boxes layer) to segment an "
        "object.")
    assert "negative points alone" not in s.status


def test_negative_click_with_a_positive_one_beside_the_image(session):
    s = session
    s.add_point(3, 20, 80)  # beside the image (64 wide)
    s.add_point(3, 20, 20, positive=False)
    assert s.update_preview() == []
    assert s.status.startswith("1 prompt lies beside the image and is ignored: delete it")
    assert "negative points alone do not say which object to cut from" in s.status
    s.add_point(3, 90, 90, positive=False)
    s.update_preview()
    assert s.status.startswith("2 prompts lie beside the image and are ignored: delete them")
