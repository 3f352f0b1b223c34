"""A commit never writes what the user did not see or did not mean: a preview older than the
prompts (live preview off), a refined label erased by an empty mask, or a refined label
moved onto another object (found by a new-user walk through the dock, session 25)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import UserError


def _commit_label_1(s):
    """Commit label 1 as the disc at (20, 20) of slice 3 (the tiny random model's masks are
    noise: the preview is set to the disc)."""
    s.add_box(3, 10, 10, 30, 30)
    (p,) = s.update_preview()
    yy, xx = np.mgrid[:64, :64]
    p.masks[:] = (yy - 20) ** 2 + (xx - 20) ** 2 < 64
    s.commit()
    label = s.labels[3] == 1
    assert label.sum() == p.masks[0].sum()
    return label.copy()


def test_a_preview_older_than_the_prompts_is_not_committed(session):
    s = session
    s.live = False
    s.add_point(3, 20, 20)
    (p,) = s.update_preview()
    shown = p.mask.copy()
    s.add_point(3, 44, 44)  # a second click after the preview: not yet decoded
    with pytest.raises(UserError, match="the prompts changed since the preview was computed"):
        s.commit()
    assert "press Shift+S to compute it" in s.status
    assert s.labels is None or not s.labels.any()  # nothing written
    (p,) = s.update_preview()  # Shift+S: the two points decoded together
    assert p.prompt.points.shape == (2, 2) and shown.shape == p.mask.shape
    commit = s.commit()
    assert commit.n_pixels > 0
    # a removed prompt is a change too
    s.add_point(3, 20, 20)
    s.add_point(3, 22, 22)
    s.update_preview()
    s.set_prompts(np.array([[3.0, 20.0, 20.0]]), [1], np.zeros((0, 5)))
    with pytest.raises(UserError, match="prompts changed"):
        s.commit()


def test_an_empty_refined_mask_does_not_erase_the_label(session):
    s = session
    label = _commit_label_1(s)
    s.refine, s.refine_label = True, 1
    s.add_point(3, 20, 20, positive=False)  # a negative point alone on the label
    previews = s.update_preview()
    for p in previews:  # the model left nothing (as the demo model does on real nuclei)
        p.masks[:] = False
    assert "Shift+C will not commit: the refined mask of label 1 on slice 3 is empty" in (
        s._preview_text())
    with pytest.raises(UserError, match=r"would erase label 1 there \(\d+ pixels\)"):
        s.commit()
    assert np.array_equal(s.labels[3] == 1, label)


def test_a_refined_mask_beside_the_label_does_not_move_it(session):
    s = session
    label = _commit_label_1(s)
    s.refine, s.refine_label = True, 1
    s.add_point(3, 20, 20)
    (p,) = s.update_preview()
    elsewhere = np.zeros_like(p.masks[0])
    elsewhere[40:50, 40:50] = True
    assert not (elsewhere & label).any()
    p.masks[:] = elsewhere  # the other disc, as a click on another nucleus gives
    with pytest.raises(UserError, match="does not touch label 1: it is another object"):
        s.commit()
    assert np.array_equal(s.labels[3] == 1, label)
    # a refined mask that overlaps the label commits
    p.masks[:] = label | elsewhere
    s.commit()
    assert (s.labels[3] == 1).sum() == (label | elsewhere).sum()


def test_the_autosave_after_a_commit_holds_no_committed_click(session, tmp_path):
    """The autosave is written after the commit cleared its prompts: a resumed session does
    not bring the committed click back as a pending prompt (it did: the click was saved
    before the clear)."""
    from napari_sam.session import read_session

    s = session
    s.path = str(tmp_path / "blobs.tif")
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    saved = read_session(s.saved_session_path())
    assert len(saved.operations) == 1
    assert saved.pending == {"points": [], "labels": [], "boxes": []}


def test_small_status_lines_say_what_is_true(session, tmp_path):
    """Shift+M with nothing prompted says so; a 3D session loaded onto a 2D image in the dock
    names the shapes without command-line advice (--axes, read_image)."""
    from napari_sam.annotate import AnnotationSession
    from stacks import blob_stack

    s = session
    assert s.next_candidate() is None
    assert s.status.startswith("Nothing to choose from: click an object first")
    s.path = str(tmp_path / "blobs.tif")
    s.add_point(3, 20, 20)
    s.update_preview()
    s.commit()
    s.release_session_file()  # its dock closed (a live session's file is not loaded elsewhere)
    flat = AnnotationSession()
    flat.set_image(blob_stack()[3:4], name="flat")
    with pytest.raises(UserError) as err:
        flat.load_session(s.saved_session_path())
    text = str(err.value)
    assert "made for an image of (Z, Y, X) (6, 64, 64)" in text and "is (Y, X) (64, 64)" in text
    assert "--axes" not in text and "read_image" not in text


def test_a_preview_made_with_another_refine_setting_is_not_committed(session):
    """Ticking or unticking 'Refine selected label', or picking another label, after the
    preview: the commit would replace the wrong label (found by a review)."""
    s = session
    _commit_label_1(s)
    s.add_point(3, 20, 20)
    s.update_preview()  # a plain click's preview
    s.refine, s.refine_label = True, 1
    with pytest.raises(UserError, match=r"the label refined changed since the preview .*"
                                        r"no label then, label 1 now"):
        s.commit()
    s.update_preview()  # Shift+S: now refining label 1
    s.refine = False
    with pytest.raises(UserError, match="label 1 then, no label now"):
        s.commit()
    assert (s.labels == 1).sum() and s.labels.max() == 1  # nothing written


def test_a_propagation_older_than_the_prompts_is_not_committed(session):
    s = session
    s.live = False
    s.add_point(3, 20, 20)
    s.propagate()
    assert s.volume is not None
    s.add_point(3, 44, 44)
    with pytest.raises(UserError, match="the prompts changed since the propagation"):
        s.commit()
    assert s.labels is None or not s.labels.any()
    s.propagate()  # Shift+D
    assert s.commit().n_pixels > 0


def test_a_reopened_session_takes_over_the_autosaved_log_at_once(session, tmp_path):
    """Beside the labels that hold the autosave, no resume offer and the log goes on at once:
    a session saved before the next commit keeps the earlier commits (it kept none)."""
    from napari_sam.annotate import AnnotationSession, ModelChoice
    from napari_sam.session import read_session
    from stacks import blob_stack

    s = session
    s.path = str(tmp_path / "blobs.tif")
    for r in (20, 44):
        s.add_point(3, r, r)
        s.update_preview()
        s.commit()
    s.release_session_file()  # (its dock closed: a live session's log is not taken over)
    again = AnnotationSession()
    again.set_image(blob_stack(), name="blobs")
    again.path = s.path
    again.labels = s.labels.copy()  # the labels layer still in the viewer
    choice = ModelChoice("tiny", "tiny")
    again.models.put(choice, "auto", s.predictor)
    again.set_model(choice)
    assert again.offer_resume() is None
    saved = read_session(again.save_session(tmp_path / "again"))
    assert [op["ids"] for op in saved.operations] == [[1], [2]]
