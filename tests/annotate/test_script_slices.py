"""Slices given by a script (session 33's scripting walk-through): a point added on another
slice than the one shown was kept but never previewed (the status asked for a point, commit
found nothing, the package docstring's example failed so), and slices the image does not
have (12 of 12, 99, 5.5) were taken without a word."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import UserError


def test_a_point_on_another_slice_shows_that_slice_and_commits(session):
    s = session
    assert s.current_z() == 3
    s.add_point(1, 20, 20)
    assert s.current_z() == 1
    (preview,) = s.update_preview()
    assert preview.z == 1
    s.commit()
    assert (s.labels[1] == 1).any() and not s.labels[[0, 2, 3, 4, 5]].any()
    s.add_box(4, 10, 10, 30, 30)
    assert s.current_z() == 4 and s.update_preview()[0].z == 4


@pytest.mark.parametrize("z", [6, 99, -1, 2.5, "3", None, True, float("nan")])
def test_a_slice_the_image_does_not_have_is_refused(session, z):
    s = session
    n = s.source.n_slices
    assert n == 6
    with pytest.raises(UserError, match=rf"Slice {z!r} is not a slice of 'blobs': it has "
                                        r"slices 0-5\."):
        s.add_point(z, 20, 20)
    with pytest.raises(UserError, match="is not a slice of 'blobs'"):
        s.go_to_slice(z)
    assert len(s.prompt_arrays()[0]) == 0 and s.current_z() == 3


def test_whole_numbers_of_any_type_are_slices_and_a_2d_image_has_slice_0(session):
    s = session
    s.add_point(np.int64(2), 20, 20)
    s.add_point(2.0, 25, 25)
    assert s.current_z() == 2 and s.prompt_arrays()[0][:, 0].tolist() == [2, 2]
    s.set_image(np.zeros((32, 32), np.float32), name="flat")
    s.add_point(0, 5, 5)
    with pytest.raises(UserError, match=r"Slice 1 is not a slice of 'flat': it has slice 0 "
                                        r"\(a 2D image\)\."):
        s.add_point(1, 5, 5)


def test_a_failed_load_goes_back_to_a_model_that_works_not_to_another_that_may_fail(session):
    """Two models that cannot be downloaded, picked one after the other, took turns: each
    failure went back to the other (the reviewer's catch). The fallback is the model that
    loaded last, else the one before if it is the demo model or a cached registry model."""
    from napari_sam.annotate import ModelChoice

    s = session
    a = ModelChoice("vit_b", "vit_b (download)", cached=False)
    b = ModelChoice("vit_h", "vit_h (download)", cached=False)
    s.set_model(a)
    s.set_model(b)
    assert s.previous_model_choice == a and s.fallback_choice(b) is None
    demo = ModelChoice("demo", "demo", is_demo=True)
    s.set_model(demo)
    s.set_model(b)
    assert s.fallback_choice(b) == demo
    s.working_model_choice = a  # it loaded once (downloaded meanwhile)
    assert s.fallback_choice(b) == a and s.fallback_choice(a) == demo
