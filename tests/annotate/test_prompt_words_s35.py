"""What the session says when a commit or a propagation finds nothing to do although the
user has prompts: with 'Live preview' off (a click is not decoded until Shift+S), and after
scrolling away from the prompted slice (a keyboard user's report: both said "click a point
first" to a user who had just clicked)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.annotate import UserError


def test_commit_with_live_preview_off_says_to_preview_first(session):
    s = session
    s.live = False
    with pytest.raises(UserError, match="Nothing to commit: click a point"):
        s.commit()
    s.add_point(3, 20, 20)
    with pytest.raises(UserError) as err:
        s.commit()
    assert str(err.value) == (
        "Not committed: the prompts have no preview yet ('Live preview' is off). Press "
        "Shift+S to preview them on this slice, check the mask, then Shift+C.")
    s.update_preview()
    assert s.commit().ids == [1] and (s.labels[3] == 1).any()


def test_propagate_from_another_slice_names_the_prompted_slices(session):
    s = session
    s.add_point(3, 20, 20)
    s.add_point(4, 20, 20)
    s.go_to_slice(1)
    with pytest.raises(UserError) as err:
        s.propagate()
    assert str(err.value) == (
        "No prompts on this slice (1) to propagate; there are prompts on slices 3-4: go there "
        "and propagate, or pick 'all objects with prompts' in 'Propagate' to propagate every "
        "prompted object.")
    s.axis_kind = "t"
    with pytest.raises(UserError, match=r"^No prompts on this frame \(1\) .* on frames 3-4"):
        s.propagate()
    s.axis_kind = "z"
    s.propagate(all_objects=True)  # what the message offers works from here
    assert s.volume is not None and np.asarray(s.volume.labels)[3].any()


def test_commit_with_prompts_on_another_slice_names_them(session):
    s = session
    s.live = False
    s.add_point(3, 20, 20)
    s.go_to_slice(1)
    with pytest.raises(UserError) as err:
        s.commit()
    assert str(err.value) == (
        "Not committed: nothing is previewed on this slice (1); the prompts are on slice 3: "
        "go there to preview and commit them (Shift+D propagates them).")
