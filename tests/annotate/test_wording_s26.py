"""Words a new user met in the dock (session 26): a time series' automatic segmentation of
one frame is named by its frame, not a z."""

from __future__ import annotations


def test_segment_everything_on_a_frame_names_the_frame(session):
    s = session
    s.axis_kind = "t"
    s.segment_everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert list(s.results) == ["automatic segmentation t=3"]
    assert s.status.startswith("Segment everything: ") and " 1 objects" not in s.status


def test_a_preview_on_a_constant_slice_says_the_mask_follows_the_prompts_alone(tiny_sam):
    """A blank frame (or the wrong channel) previewed a blob around the click, scored like any
    other mask, without a word (helper walk-through, session 28)."""
    import numpy as np

    from stacks import blob_session, blob_stack

    s = blob_session(tiny_sam)
    stack = blob_stack()
    stack[3] = 12
    s.set_image(stack, name="blank slice 3")
    s.go_to_slice(3)
    s.add_point(3, 20, 20)
    s.update_preview()
    assert s.previews and "This slice is constant (every pixel 12): the mask follows your " \
        "prompts alone, not the image." in s.status
    s.go_to_slice(2)
    s.add_point(2, 20, 20)
    s.update_preview()
    assert s.previews and "constant" not in s.status
    assert np.ptp(stack[2]) > 0
    s.set_image(np.full((64, 64), np.nan, np.float32), name="no finite pixel")  # 2D
    assert s.current_z() == 0  # it stayed 2, a slice the 2D image has not: no preview
    s.add_point(0, 20, 20)
    s.update_preview()
    assert "This image is constant (no pixel holds a finite value)" in s.status, s.status


def test_a_tiff_loaded_as_a_session_is_refused_without_double_punctuation(session, tmp_path):
    """"... is not UTF-8 text; is it a session file?." (helper walk-through, session 29)."""
    import pytest

    from napari_sam.annotate.errors import UserError

    tif = tmp_path / "labels.tif"
    tif.write_bytes(b"II*\x00\x08\x00\x00\x00\xff\xfe")
    with pytest.raises(UserError) as err:
        session.load_session(tif)
    assert str(err.value).endswith("is it a session file?"), str(err.value)
