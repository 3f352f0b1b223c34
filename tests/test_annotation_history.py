"""Commit / undo / redo on label arrays: labels are sacred (no Qt)."""

import numpy as np
import pytest

from napari_sam.annotation import CommitHistory, ObjectMask, apply_objects, fresh_id


def _labels():
    lab = np.zeros((3, 20, 20), np.uint32)
    lab[1, 2:8, 2:8] = 4
    lab[1, 10:15, 10:15] = 9
    return lab


def test_commit_gives_fresh_id_and_keeps_other_objects():
    lab = _labels()
    before = lab.copy()
    mask = np.zeros((20, 20), bool)
    mask[5:12, 5:12] = True  # overlaps both objects
    commit = apply_objects(lab, [ObjectMask(mask, z=1)])
    assert commit.ids == [10]
    others = (before != 0)
    assert np.array_equal(lab[others], before[others])  # every other pixel unchanged
    assert np.array_equal(lab[1] == 10, mask & (before[1] == 0))
    assert np.array_equal(lab[[0, 2]], before[[0, 2]])


def test_overwrite_replaces_other_objects_only_when_asked():
    lab = _labels()
    mask = np.zeros((20, 20), bool)
    mask[5:12, 5:12] = True
    apply_objects(lab, [ObjectMask(mask, z=1)], overwrite=True)
    assert (lab[1][mask] == 10).all()


def test_undo_redo_exact():
    lab = _labels()
    original = lab.copy()
    hist = CommitHistory()
    m1 = np.zeros((20, 20), bool)
    m1[0:5, 0:5] = True
    c1 = apply_objects(lab, [ObjectMask(m1, z=1)])
    hist.push(c1)
    after1 = lab.copy()
    vol = np.zeros(lab.shape, bool)
    vol[:, 12:18, 0:4] = True
    c2 = apply_objects(lab, [ObjectMask(vol), ObjectMask(np.roll(vol, 2, axis=2))])
    hist.push(c2)
    assert c2.ids == [11, 12]
    after2 = lab.copy()
    hist.undo(lab)
    assert np.array_equal(lab, after1)
    hist.undo(lab)
    assert np.array_equal(lab, original)
    assert hist.undo(lab) is None
    hist.redo(lab)
    hist.redo(lab)
    assert np.array_equal(lab, after2)
    # a new commit clears the redo stack
    hist.undo(lab)
    hist.push(apply_objects(lab, [ObjectMask(m1, z=0)]))
    assert not hist.can_redo


def test_objects_of_one_commit_do_not_overwrite_each_other():
    lab = np.zeros((1, 10, 10), np.uint16)
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True
    b = np.zeros((10, 10), bool)
    b[4:8, 4:8] = True
    commit = apply_objects(lab, [ObjectMask(a, 0), ObjectMask(b, 0)])
    assert (lab[0][a] == commit.ids[0]).all()
    assert (lab[0][b & ~a] == commit.ids[1]).all()


def test_refine_replaces_object_on_its_slice():
    lab = _labels()
    lab[2, 2:8, 2:8] = 4  # same object on another slice
    new = np.zeros((20, 20), bool)
    new[3:6, 3:10] = True
    commit = apply_objects(lab, [ObjectMask(new, z=1, replaces=4)])
    assert commit.ids == [4]
    assert np.array_equal(lab[1] == 4, new)
    assert (lab[2, 2:8, 2:8] == 4).all()  # other slice untouched


def test_errors():
    lab = _labels()
    with pytest.raises(ValueError):
        apply_objects(lab, [ObjectMask(np.ones((5, 5), bool), z=0)])
    with pytest.raises(TypeError):
        apply_objects(lab.astype(float), [ObjectMask(np.ones((20, 20), bool), z=0)])
    small = np.zeros((1, 4, 4), np.uint8)
    small[0, 0, 0] = 255
    with pytest.raises(OverflowError):
        apply_objects(small, [ObjectMask(np.ones((4, 4), bool), z=0)])
    assert fresh_id(np.zeros((2, 2), int), taken=[3]) == 4


def _two_commits():
    """(labels (3, 20, 20), history, commit of label 10, commit of label 11)."""
    lab, hist = _labels(), CommitHistory()
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[0:5, 0:5] = True
    b[16:20, 16:20] = True
    c1 = apply_objects(lab, [ObjectMask(a, z=1)])
    hist.push(c1)
    c2 = apply_objects(lab, [ObjectMask(b, z=2)])
    hist.push(c2)
    return lab, hist, c1, c2


@pytest.mark.parametrize("other", ["smaller", "larger"])
def test_undo_and_redo_refuse_labels_of_another_shape_and_keep_the_step(other):
    """Session 38: labels replaced by a smaller array made the undo fail with an IndexError
    after it had popped the step (lost); a larger one had other pixels written."""
    from napari_sam.annotation import LabelsReshaped

    lab, hist, c1, c2 = _two_commits()
    after = lab.copy()
    swapped = (lab[:, :12, :12].copy() if other == "smaller" else
               np.pad(lab, ((0, 0), (0, 5), (0, 5)), constant_values=3))
    kept = swapped.copy()
    with pytest.raises(LabelsReshaped, match=r"the labels have shape \(3, (12, 12|25, 25)\) but "
                       r"the commit of label 11 was written into labels of shape \(3, 20, 20\)"):
        hist.undo(swapped)
    np.testing.assert_array_equal(swapped, kept)
    assert hist.peek_undo() is c2 and not hist.can_redo
    assert hist.undo(lab) is c2  # the labels put back: the undo works
    with pytest.raises(LabelsReshaped, match="nothing was redone and the step is kept"):
        hist.redo(swapped)
    np.testing.assert_array_equal(swapped, kept)
    assert hist.redo(lab) is c2
    np.testing.assert_array_equal(lab, after)


def test_a_view_without_the_size_1_axis_is_the_same_labels():
    """The dock commits into a (1, Y, X) view of a 2D layer and undoes in the (Y, X) array."""
    lab, hist = np.zeros((20, 20), np.uint16), CommitHistory()
    mask = np.zeros((20, 20), bool)
    mask[2:5, 2:5] = True
    hist.push(apply_objects(lab[None], [ObjectMask(mask, z=0)]))
    hist.undo(lab)
    assert not lab.any()


def test_a_redo_whose_pixels_are_back_counts_as_redone_in_order():
    """Session 38: undo, then napari's Ctrl+Z put the commit's pixels back; the redo refused
    ("label 11 was given to other pixels"), and after a new commit the undo order skipped
    label 11."""
    lab, hist, c1, c2 = _two_commits()
    after = lab.copy()
    hist.undo(lab)
    assert not (lab == 11).any()
    lab[...] = after  # what napari's Ctrl+Z of the dock's undo does
    assert hist.redo(lab) is c2
    assert c2.found_back and c2.left == 0 and c2.n_pixels == 16
    np.testing.assert_array_equal(lab, after)
    mask = np.zeros((20, 20), bool)
    mask[10:12, 0:3] = True
    c3 = apply_objects(lab, [ObjectMask(mask, z=0)])
    hist.push(c3)
    assert [hist.undo(lab) for _ in range(3)] == [c3, c2, c1]
    np.testing.assert_array_equal(lab, _labels())
    assert hist.redo(lab) is c1 and not c1.found_back  # an ordinary redo writes again
    assert (lab == 10).sum() == c1.n_pixels == 16


def test_a_redo_with_its_pixels_only_partly_back_is_not_counted_as_redone():
    from napari_sam.annotation import LabelIdTaken

    lab, hist, c1, c2 = _two_commits()
    hist.undo(lab)
    lab[2, 16, 16] = 11  # one pixel of its id painted by hand: not the commit back
    with pytest.raises(LabelIdTaken):
        hist.redo(lab)
    assert hist.peek_redo() is c2 and not c2.found_back


@pytest.mark.parametrize("overlapping", [False, True])
def test_an_undo_of_pixels_taken_back_already_keeps_them_for_the_redo(overlapping):
    """napari's Ctrl+Z (here: the labels put back by hand) undid the commit before the dock's
    undo: the undo kept no pixel, and the redo wrote nothing (session 39). Two objects of one
    commit writing the same pixels (overwrite on) come back as the commit left them."""
    lab = _labels()
    start = lab.copy()
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[2:6, 2:6] = True
    b[4:8, 4:8] = True if overlapping else False
    b[12:14, 12:14] = True
    hist = CommitHistory()
    commit = apply_objects(lab, [ObjectMask(a, z=1), ObjectMask(b, z=1)], overwrite=True)
    hist.push(commit)
    committed = lab.copy()
    assert commit.n_written == commit.n_pixels
    lab[...] = start  # what napari's Ctrl+Z of the commit does
    assert hist.undo(lab) is commit
    np.testing.assert_array_equal(lab, start)
    assert commit.n_written == 0 and commit.left == 0 and commit.n_pixels > 0
    assert hist.redo(lab) is commit and not commit.found_back
    np.testing.assert_array_equal(lab, committed)
    assert commit.n_written == commit.n_pixels and commit.left == 0
    assert hist.undo(lab) is commit  # an ordinary undo after it
    np.testing.assert_array_equal(lab, start)
    assert commit.n_written == commit.n_pixels


def test_a_part_erased_before_the_undo_stays_erased_after_the_redo():
    """Only a commit taken back whole is put back whole by the redo: a part erased by hand
    before the undo is not brought back (the redo restores what the undo took)."""
    lab = _labels()
    a = np.zeros((20, 20), bool)
    a[16:20, 0:8] = True
    hist = CommitHistory()
    commit = apply_objects(lab, [ObjectMask(a, z=2)])
    hist.push(commit)
    lab[2, 16:20, 0:3] = 0  # the eraser over part of label 10
    erased = lab.copy()
    hist.undo(lab)
    assert commit.n_written == commit.n_pixels == 4 * 5 and commit.left == 0
    hist.redo(lab)
    np.testing.assert_array_equal(lab, erased)


def test_pixels_taken_back_already_that_a_later_commit_wrote_stay_that_commit_s():
    """Label 10 taken back by hand (napari's Ctrl+Z), a later commit (label 11) over part of
    it, both undone, both redone: label 11 comes back whole, label 10 around it."""
    lab = _labels()
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[16:20, 0:8] = True
    b[16:20, 4:12] = True
    hist = CommitHistory()
    first = apply_objects(lab, [ObjectMask(a, z=2)])
    hist.push(first)
    lab[2] = 0  # napari's Ctrl+Z of the commit
    lab[0, 0, 0] = 10  # a pixel painted with id 10: the next commit is 11
    second = apply_objects(lab, [ObjectMask(b, z=2)])
    hist.push(second)
    assert second.ids == [11]
    hist.undo(lab)
    hist.undo(lab)
    assert first.n_written == 0 and first.n_pixels == int((a & ~b).sum())
    hist.redo(lab)
    hist.redo(lab)
    assert second.left == 0 and np.array_equal(lab[2] == 11, b)
    assert np.array_equal(lab[2] == 10, a & ~b)


def test_the_reshaped_refusal_of_a_two_object_commit_says_labels():
    """It said "the commit of label 10, 11"."""
    from napari_sam.annotation import LabelsReshaped

    lab = _labels()
    a, b = np.zeros((20, 20), bool), np.zeros((20, 20), bool)
    a[16:18, 0:3] = True
    b[16:18, 10:13] = True
    hist = CommitHistory()
    hist.push(apply_objects(lab, [ObjectMask(a, z=0), ObjectMask(b, z=0)]))
    with pytest.raises(LabelsReshaped, match=r"the commit of labels 10, 11 was written"):
        hist.undo(lab[:, :10].copy())
