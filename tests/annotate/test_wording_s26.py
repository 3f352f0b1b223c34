"""Words a new user met in the dock (session 26): a time series' automatic segmentation of
one frame is named by its frame, not a z."""

from __future__ import annotations


def test_segment_everything_on_a_frame_names_the_frame(session):
    s = session
    s.axis_kind = "t"
    s.segment_everything(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    assert list(s.results) == ["automatic segmentation t=3"]
    assert s.status.startswith("Segment everything: ") and " 1 objects" not in s.status
