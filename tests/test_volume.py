"""Tests of napari_sam.volume: propagation of objects through a stack.

Most tests use an *oracle* decoder that answers a prompt with the ground-truth object under
it, so scheduling, stopping rules, meeting in the middle, batching and overlap resolution are
checked exactly without a model. The last tests use a tiny random model (the real decoder
path) and the bundled demo model on synthetic nuclei (quality).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from demo_targets import floor, short_of_target
from napari_sam.volume import (
    STOP_REASONS,
    SlicePrompt,
    VolumeResult,
    box_from_mask,
    center_from_mask,
    mask_contrast,
    mask_to_logits,
    points_from_mask,
    prompts_from_labels,
    segment_volume,
    stop_reason,
)

DEMO_WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "napari_sam" / "weights" / "demo.pt"


# ---------------------------------------------------------------------------- oracle decoder
class _Emb:
    def __init__(self, z, size):
        self.z = z
        self.original_size = size
        self.input_size = size
        self.model_id = "oracle"


class OraclePredictor:
    """Answers each prompt with the ground-truth object under it (logits +8 in, -8 out).

    The target is the label under the first positive point, else under the box centre, else
    the label most covered by the mask prompt. Low-resolution size = image size, so
    upsampling is the identity. With ``multimask`` the right mask is the *last* of three
    candidates and has the best score (the others: empty, and the whole box).
    """

    def __init__(self, gt):
        self.gt = np.asarray(gt)
        _, h, w = self.gt.shape
        assert h == w
        self.img_size = h
        self.low_res_size = h
        self.device = torch.device("cpu")
        self.model = SimpleNamespace(mask_threshold=0.0)
        self.decoder_calls = 0
        self.calls: list[tuple[int, int]] = []  # (slice, number of prompts)

    def _target(self, plane, n, points, labels, boxes, masks):
        if points is not None:
            pos = np.flatnonzero(np.asarray(labels[n]) == 1)
            if pos.size:
                r, c = np.round(np.asarray(points[n][pos[0]])).astype(int)
                return plane[r, c]
        if boxes is not None:
            b = np.asarray(boxes[n])
            return plane[int(round((b[0] + b[2]) / 2)), int(round((b[1] + b[3]) / 2))]
        if masks is not None:
            m = np.asarray(masks[n]).reshape(plane.shape) > 0
            vals = plane[m]
            vals = vals[vals > 0]
            return np.bincount(vals).argmax() if vals.size else 0
        return 0

    def predict_batch(self, embedding=None, points=None, labels=None, boxes=None,
                      mask_inputs=None, multimask=True, upsample=True):
        z = embedding.z
        plane = self.gt[z]
        n = len(next(v for v in (points, boxes, mask_inputs) if v is not None))
        if points is not None:
            assert np.asarray(points).shape[:2] == np.asarray(labels).shape
        logits = []
        for i in range(n):
            t = self._target(plane, i, points, labels, boxes, mask_inputs)
            right = np.where((plane == t) & (t != 0), 8.0, -8.0)
            if multimask:
                empty = np.full_like(right, -8.0)
                everything = np.full_like(right, 8.0)
                logits.append(np.stack([empty, everything, right]))
            else:
                logits.append(right[None])
        c = 3 if multimask else 1
        scores = torch.tensor([[0.2, 0.5, 0.9] if multimask else [0.9]] * n)
        self.decoder_calls += 1
        self.calls.append((z, n))
        return SimpleNamespace(masks=None, scores=scores.reshape(n, c),
                               logits=torch.tensor(np.stack(logits), dtype=torch.float32))


class OracleStack:
    def __init__(self, gt):
        self.shape = tuple(np.asarray(gt).shape)
        self.predictor = OraclePredictor(gt)

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, z):
        return _Emb(int(z), self.shape[1:])


def disk(shape, center, radius):
    yy, xx = np.indices(shape)
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def cylinders(n_slices=20, size=64, objects=((1, (20, 20), 6, 3, 12),)):
    """GT volume of discs: (id, centre, radius, first slice, last slice)."""
    gt = np.zeros((n_slices, size, size), np.int32)
    for i, c, r, z0, z1 in objects:
        gt[z0 : z1 + 1][:, disk((size, size), c, r)] = i
    return gt


# ------------------------------------------------------------------- prompt derivation
def test_box_and_center_from_mask():
    m = np.zeros((30, 40), bool)
    m[5:11, 7:20] = True
    np.testing.assert_array_equal(box_from_mask(m), [5, 7, 10, 19])
    assert box_from_mask(np.zeros((5, 5), bool)) is None
    np.testing.assert_array_equal(center_from_mask(m), [8, 13])
    # a ring: the centroid is in the hole, so the centre point must move onto the object
    ring = disk((41, 41), (20, 20), 15) & ~disk((41, 41), (20, 20), 8)
    c = center_from_mask(ring).astype(int)
    assert ring[c[0], c[1]]
    assert center_from_mask(np.zeros((5, 5), bool)) is None


def test_points_from_mask_positives_deep_inside_and_negatives_outside():
    # dumbbell: two discs joined by a thin bar -> one positive in each lobe
    m = disk((60, 100), (30, 25), 12) | disk((60, 100), (30, 75), 12)
    m[29:32, 25:75] = True
    pts, lab = points_from_mask(m, n_positive=2, n_negative=4)
    pos, neg = pts[lab == 1].astype(int), pts[lab == 0].astype(int)
    assert len(pos) == 2 and len(neg) == 4
    assert sorted(abs(p[1] - 50) > 20 for p in pos) == [True, True]  # lobes, not the bar
    assert {int(p[1] < 50) for p in pos} == {0, 1}  # one per lobe
    assert all(np.hypot(p[0] - 30, min(abs(p[1] - 25), abs(p[1] - 75))) <= 2 for p in pos)
    assert not m[neg[:, 0], neg[:, 1]].any()
    assert m[pos[:, 0], pos[:, 1]].all()
    # a single disc has one depth maximum: the second positive is refused (too shallow)
    one = disk((50, 50), (25, 25), 10)
    pts, lab = points_from_mask(one, n_positive=2, n_negative=0)
    np.testing.assert_array_equal(pts, [[25, 25]])
    # negatives that would fall outside the image are dropped
    corner = np.zeros((20, 20), bool)
    corner[:6, :6] = True
    pts, lab = points_from_mask(corner, n_positive=1, n_negative=4)
    assert (lab == 0).sum() == 2 and (pts >= 0).all() and (pts < 20).all()
    pts, lab = points_from_mask(np.zeros((5, 5), bool))
    assert pts.shape == (0, 2) and lab.shape == (0,)


def test_mask_to_logits_round_trips_through_upsampling():
    from napari_sam.prompts import upsample_logits

    m = disk((100, 80), (45, 30), 20)
    emb = SimpleNamespace(original_size=(100, 80), input_size=(64, 51))
    low = mask_to_logits(m, (100, 80), (64, 51), img_size=64, low_res_size=32)
    assert low.shape == (32, 32)
    assert low.max() > 5 and low.min() < -5
    back = upsample_logits(low[None], emb, 64)[0].numpy() > 0
    iou = (back & m).sum() / (back | m).sum()
    assert iou > 0.9


# ---------------------------------------------------------------------- stopping rules
def test_stop_reason_rules():
    r = stop_reason(
        area=[100, 0, 3, 300, 30, 100, 100, 100],
        prev_area=[100, 100, 4, 100, 100, 100, 100, 100],
        iou=[0.9, 0.0, 0.7, 0.3, 0.3, 0.4, 0.9, 0.6],
        score=[0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.9],
        min_area=5, iou_threshold=0.5, area_factor=2.5, min_score=0.5,
    )
    assert list(r) == ["", "vanished", "vanished", "area", "area", "iou", "score", ""]
    assert set(r) - {""} <= set(STOP_REASONS)
    # thresholds are inclusive on the accepting side
    r = stop_reason([250, 40], [100, 100], [0.5, 0.5], iou_threshold=0.5, area_factor=2.5)
    assert list(r) == ["", ""]
    # rules can be relaxed to accept anything but an empty mask
    r = stop_reason([1, 1000, 0], [100, 1, 10], [0.0, 0.0, 0.0], min_area=0,
                    iou_threshold=0.0, area_factor=np.inf)
    assert list(r) == ["", "", "vanished"]


def test_stop_reason_fade_rule_follows_the_sign_of_the_reference():
    r = stop_reason(
        area=[100] * 6, prev_area=[100] * 6, iou=[0.9] * 6,
        contrast=[60, 40, -60, -40, 5, 0.0], ref_contrast=[100, 100, -100, -100, np.nan, 100],
        fade_fraction=0.5,
    )
    # bright objects fade below +50, dark ones above -50; no reference, no test
    assert list(r) == ["", "faded", "", "faded", "", "faded"]
    # other rules come first; without fade_fraction the contrast is ignored
    r = stop_reason([0, 100], [100, 100], [0.9, 0.9], contrast=[0, 0], ref_contrast=[9, 9],
                    fade_fraction=0.5)
    assert list(r) == ["vanished", "faded"]
    r = stop_reason([100], [100], [0.9], contrast=[0], ref_contrast=[9])
    assert list(r) == [""]


def test_stop_reason_rebound_rule_needs_a_dip_then_a_rise():
    # reference 100 (bright) or -100 (dark), rebound_fraction 0.1: both the dip from the peak
    # and the rise from the low must exceed 10, in the sign of the reference
    r = stop_reason(
        area=[100] * 7, prev_area=[100] * 7, iou=[0.9] * 7,
        contrast=[75, 65, 75, -75, 95, 75, 75],
        ref_contrast=[100, 100, 100, -100, 100, 100, np.nan],
        peak_contrast=[100, 100, 100, 100, 100, 105, 100],
        low_contrast=[60, 60, 95, 60, 95, 60, 60],
        rebound_fraction=0.1,
    )
    # rose 15 after a dip of 40 (bright and dark alike); rose 5 only; dipped 5 only (a wiggle
    # near the middle, even with a large rise after it); no reference: no test
    assert list(r) == ["rebounded", "", "", "rebounded", "", "rebounded", ""]
    assert "rebounded" in STOP_REASONS
    # off without rebound_fraction; the fade rule comes first
    r = stop_reason([100], [100], [0.9], contrast=[75], ref_contrast=[100],
                    peak_contrast=[100], low_contrast=[60])
    assert list(r) == [""]
    r = stop_reason([100], [100], [0.9], contrast=[45], ref_contrast=[100], fade_fraction=0.5,
                    peak_contrast=[100], low_contrast=[20], rebound_fraction=0.1)
    assert list(r) == ["faded"]


def test_stop_reason_rebound_bars_follow_the_contrasts_noise():
    # dip 40 (100 -> 60) and rise 15 (60 -> 75) against a 10 % floor of 100; with
    # rebound_noise 2 each must also exceed 2 standard errors of the difference
    kw = dict(area=[100] * 4, prev_area=[100] * 4, iou=[0.9] * 4, contrast=[75] * 4,
              ref_contrast=[100] * 4, peak_contrast=[100] * 4, low_contrast=[60] * 4,
              rebound_fraction=0.1, rebound_noise=2.0)
    r = stop_reason(**kw, contrast_error=[1, 6, 1, 0], peak_error=[1, 1, 15, 0],
                    low_error=[1, 1, 15, 0])
    # quiet: rebounded; a noisy new slice (2 * hypot(6, 1) = 12.2 < 15: still a rise); a noisy
    # object (2 * hypot(15, 15) = 42 > 40: the dip is a wobble); errors 0: the floor alone
    assert list(r) == ["rebounded", "rebounded", "", "rebounded"]
    r = stop_reason(**kw, contrast_error=[7] * 4, peak_error=[1] * 4, low_error=[1] * 4)
    assert list(r) == ["rebounded"] * 4  # 2 * hypot(7, 1) = 14.1 < 15: a rise
    r = stop_reason(**kw, contrast_error=[8] * 4, peak_error=[1] * 4, low_error=[1] * 4)
    assert list(r) == [""] * 4  # 2 * hypot(8, 1) = 16.1 > 15: the rise is within the noise
    # without the errors the noise term is off
    r = stop_reason(**{**kw, "rebound_noise": 2.0})
    assert list(r) == ["rebounded"] * 4


def test_a_drawn_mask_seed_does_at_least_as_well_as_a_click_when_larger_than_the_models():
    """The fade reference of a drawn mask comes from the mask the model decodes from it: a
    drawn mask larger than the model's masks (its ring in the dark background, the model's on
    the object's bright rim) no longer stops the chain on the next slice."""
    size, n = 48, 12
    yy, xx = np.indices((size, size))
    r2 = (yy - 24) ** 2 + (xx - 24) ** 2
    plane = np.where(r2 <= 8**2, 200.0, np.where(r2 <= 10**2, 180.0, 10.0))  # core, rim
    image = np.repeat(plane[None], n, 0).astype(np.float32)
    gt = np.zeros((n, size, size), np.int32)
    gt[:, r2 <= 8**2] = 1  # what the oracle (the model) segments: the core
    stack = OracleStack(gt)
    stack.stack = image
    drawn = r2 <= 10**2  # the user drew core and rim
    res = segment_volume(stack, {1: SlicePrompt(6, mask=drawn)})
    click = segment_volume(stack, {1: SlicePrompt(6, points=[[24, 24]])})
    assert res.slice_range[1] == click.slice_range[1] == (0, n - 1)
    assert res.stop_reasons[1] == {"up": "edge", "down": "edge"}


def test_mask_contrast_is_inside_minus_the_ring_around():
    img = np.full((40, 40), 10.0)
    bright = disk((40, 40), (12, 12), 5)
    dark = disk((40, 40), (28, 28), 5)
    img[bright] = 110.0
    img[dark] = 4.0
    c = mask_contrast(img, np.stack([bright, dark, np.zeros_like(bright)]))
    np.testing.assert_allclose(c[:2], [100.0, -6.0])
    assert np.isnan(c[2])
    # a mask covering the image has no surroundings; RGB slices are averaged
    assert np.isnan(mask_contrast(img, np.ones((40, 40), bool))[0])
    rgb = np.stack([img, img, img], -1)
    np.testing.assert_allclose(mask_contrast(rgb, bright), [100.0])
    with pytest.raises(ValueError, match="do not match"):
        mask_contrast(img, np.zeros((30, 30), bool))


# -------------------------------------------------------------------- propagation (oracle)
def test_single_click_propagates_to_the_whole_object_and_stops_when_it_vanishes():
    gt = cylinders(objects=((3, (20, 20), 6, 4, 13),))
    stack = OracleStack(gt)
    res = segment_volume(stack, {3: [SlicePrompt(8, points=[[20, 20]])]})
    assert isinstance(res, VolumeResult)
    np.testing.assert_array_equal(res.labels, gt)
    assert res.labels.dtype == np.uint8
    assert res.stop_reasons == {3: {"up": "vanished", "down": "vanished"}}
    assert res.slice_range == {3: (4, 13)}
    assert sorted(res.scores[3]) == list(range(4, 14))
    assert res.scores[3][8] == pytest.approx(0.9)  # best of the 3 candidates was kept
    np.testing.assert_array_equal(np.asarray(res), res.labels)


@pytest.mark.parametrize("mode", ["box", "box+mask", "points", "center"])
def test_every_mode_follows_a_drifting_object(mode):
    gt = np.zeros((16, 64, 64), np.int32)
    for z in range(16):
        gt[z][disk((64, 64), (20 + z, 30), 8)] = 1  # drifts one row per slice
    res = segment_volume(OracleStack(gt), {1: {"slice": 5, "points": [[25, 30]]}}, mode=mode)
    np.testing.assert_array_equal(res.labels, gt)
    assert res.stop_reasons[1] == {"up": "edge", "down": "edge"}


def test_propagation_stops_where_the_object_fades_bright_or_dark():
    # the labels (and so the oracle's masks) go on through all 20 slices, but the object
    # is only visible on slices 4-13: the fade rule ends propagation there
    gt = cylinders(objects=((1, (20, 20), 6, 0, 19),))
    visible = np.zeros(20, bool)
    visible[4:14] = True
    for sign in (+1, -1):
        image = np.full(gt.shape, 100.0)
        image[(gt == 1) & visible[:, None, None]] += sign * 50.0
        stack = OracleStack(gt)
        stack.stack = image
        res = segment_volume(stack, {1: SlicePrompt(8, points=[[20, 20]])})
        assert res.slice_range[1] == (4, 13)
        assert res.stop_reasons[1] == {"up": "faded", "down": "faded"}
        # disabled, along time (bleaching is not an end), or with no images to look at, it
        # goes on to the edges
        res = segment_volume(stack, {1: SlicePrompt(8, points=[[20, 20]])}, fade_fraction=None)
        assert res.slice_range[1] == (0, 19)
        res = segment_volume(stack, {1: SlicePrompt(8, points=[[20, 20]])}, axis_kind="t")
        assert res.slice_range[1] == (0, 19)
        del stack.stack
        res = segment_volume(stack, {1: SlicePrompt(8, points=[[20, 20]])})
        assert res.slice_range[1] == (0, 19)


def test_fading_is_judged_against_the_strongest_annotated_slice():
    # one object labelled on all 20 slices; its contrast: 50 on slices 4-9, 30 on 10-11, 20
    # on 12-13, none elsewhere (a blurred nucleus seen through its dim ends)
    gt = cylinders(objects=((1, (20, 20), 6, 0, 19),))
    contrast = np.zeros(20)
    contrast[4:10], contrast[10:12], contrast[12:14] = 50.0, 30.0, 20.0
    image = 100.0 + contrast[:, None, None] * (gt == 1)
    stack = OracleStack(gt)
    stack.stack = image
    one = segment_volume(stack, {1: SlicePrompt(7, points=[[20, 20]])})
    assert one.slice_range[1] == (4, 11)  # stops below half of 50
    # a second annotation on a dimmer slice does not lower the bar: as with one click
    two = segment_volume(stack, {1: [SlicePrompt(7, points=[[20, 20]]),
                                     SlicePrompt(10, points=[[20, 20]])]})
    assert two.slice_range[1] == (4, 11)
    assert two.stop_reasons[1] == {"up": "faded", "down": "faded"}
    # but slices as contrasted as an annotated dim slice are kept
    dim = segment_volume(stack, {1: [SlicePrompt(7, points=[[20, 20]]),
                                     SlicePrompt(12, points=[[20, 20]])]})
    assert dim.slice_range[1] == (4, 13)


@pytest.mark.parametrize("sign", [1, -1], ids=["bright", "dark"])
def test_propagation_stops_where_it_runs_into_an_object_nobody_annotated(sign):
    # two nuclei stacked in z at the same place, only the first annotated: the oracle lets
    # its propagation run on into the second (same disc, IoU 1), and the contrast never
    # fades below half; but it dims to the end of the first nucleus and rises again
    gt = cylinders(objects=((1, (20, 20), 6, 0, 9), (2, (20, 20), 6, 10, 19)))
    contrast = np.array([26, 35, 45, 50, 50, 49, 40, 47, 38, 30,  # nucleus 1 (a blip at 7)
                         32, 45, 50, 50, 50, 50, 50, 50, 50, 50], float)  # nucleus 2
    image = 100.0 + sign * contrast[:, None, None] * (gt > 0)
    stack = OracleStack(gt)
    stack.stack = image
    res = segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])})
    # slice 7 rose 7 over the low of 40 at slice 6 (more than 0.05 x 50), but one slice only;
    # slices 11 and 12 rose 15 and 20 over the low of 30 at slice 9: stopped at 12 and cut
    # back to the low (slices 10 and 11 go too)
    assert res.slice_range[1] == (0, 9)
    assert res.stop_reasons[1] == {"up": "rebounded", "down": "edge"}
    np.testing.assert_array_equal(res.labels == 1, gt == 1)
    assert set(res.scores[1]) == set(range(10))
    # a tighter rule stops at slice 11 already (risen on 10 and 11), a looser one later (0.35:
    # at slice 13, dip and rise 20 > 17.5 on slices 12 and 13), both cut back to slice 9; 0.45
    # never (dip 20 < 22.5); None disables it
    for fraction in (0.03, 0.35):
        res = segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])},
                             rebound_fraction=fraction)
        assert res.slice_range[1] == (0, 9) and res.stop_reasons[1]["up"] == "rebounded"
    for loose in (0.45, None):
        assert segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])},
                              rebound_fraction=loose).slice_range[1] == (0, 19)
    # along t the rule is off by default (objects may brighten over time)
    assert segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])},
                          axis_kind="t").slice_range[1] == (0, 19)
    with pytest.raises(ValueError, match="rebound_fraction"):
        segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])}, rebound_fraction=1.5)
    with pytest.raises(ValueError, match="rebound_fraction"):
        segment_volume(stack, {1: SlicePrompt(4, points=[[20, 20]])}, rebound_fraction="on")


def test_an_object_yields_to_the_object_nearer_its_annotation():
    # two nuclei stacked in z at the same place: the oracle lets each one's propagation run
    # on into the other (same disc, IoU 1, no rule sees it)
    gt = cylinders(objects=((1, (20, 20), 6, 0, 9), (2, (20, 20), 6, 10, 19)))
    prompts = {1: SlicePrompt(4, points=[[20, 20]]), 2: SlicePrompt(15, points=[[20, 20]])}
    res = segment_volume(OracleStack(gt), prompts)
    np.testing.assert_array_equal(res.labels, gt)
    assert res.stop_reasons == {1: {"up": "claimed", "down": "edge"},
                                2: {"up": "edge", "down": "claimed"}}
    assert res.slice_range == {1: (0, 9), 2: (10, 19)}
    # without the rule each runs on into the other, up to where the other was clicked; the
    # labels still give each slice to the nearer annotation, and slice_range reports the
    # labels (not the slices the runs decoded)
    res = segment_volume(OracleStack(gt), prompts, claimed_fraction=None)
    lasts = {(c["id"], c["direction"]): c["last"] for c in res.chains}
    assert lasts[(1, "up")] == 15 and lasts[(2, "down")] == 4
    np.testing.assert_array_equal(res.labels, gt)
    assert res.slice_range == {1: (0, 9), 2: (10, 19)}
    assert set(res.scores[1]) == set(range(10)) and set(res.scores[2]) == set(range(10, 20))


def test_stop_markers_and_stack_edges_are_respected_exactly():
    gt = cylinders(n_slices=20, objects=((1, (20, 20), 6, 0, 19), (2, (45, 45), 7, 0, 19)))
    prompts = {
        1: [SlicePrompt(5, points=[[20, 20]]), SlicePrompt(9, stop=True),
            SlicePrompt(2, stop=True)],
        2: [{"slice": 10, "box": [38, 38, 52, 52]}],
    }
    res = segment_volume(OracleStack(gt), prompts)
    obj1 = (res.labels == 1).any((1, 2))
    np.testing.assert_array_equal(np.flatnonzero(obj1), [3, 4, 5, 6, 7, 8])
    np.testing.assert_array_equal(res.labels[3:9] == 1, gt[3:9] == 1)
    np.testing.assert_array_equal(res.labels == 2, gt == 2)
    assert res.stop_reasons[1] == {"up": "stop_marker", "down": "stop_marker"}
    assert res.stop_reasons[2] == {"up": "edge", "down": "edge"}
    assert res.slice_range == {1: (3, 8), 2: (0, 19)}
    # a stop marker right next to the annotated slice: nothing propagates that way
    res = segment_volume(OracleStack(gt), {1: [SlicePrompt(5, points=[[20, 20]]),
                                               SlicePrompt(6, stop=True)]})
    assert res.slice_range[1] == (0, 5)
    assert res.stop_reasons[1] == {"up": "stop_marker", "down": "edge"}


def test_gap_between_annotated_slices_is_filled_from_both_ends_meeting_in_the_middle():
    gt = cylinders(objects=((1, (20, 20), 6, 0, 19),))
    stack = OracleStack(gt)
    res = segment_volume(stack, {1: [SlicePrompt(2, points=[[20, 20]]),
                                     SlicePrompt(12, points=[[20, 20]])]})
    np.testing.assert_array_equal(res.labels, gt)
    gap = {(c["direction"], c["start"]): (c["last"], c["reason"]) for c in res.chains}
    assert gap[("up", 2)] == (7, "met")
    assert gap[("down", 12)] == (8, "met")
    assert res.stop_reasons[1] == {"up": "edge", "down": "edge"}
    # every slice was decoded once (annotated slices once, others by one sweep only)
    assert res.calls_per_slice.tolist() == [1] * 20


def test_gap_fill_continues_past_the_middle_when_the_other_side_stops_early():
    # the object jumps sideways between slices 4 and 5: propagating up from 2 loses it at 5,
    # so the down chain from 14 must fill down to 5, past the middle (8)
    gt = np.zeros((18, 64, 64), np.int32)
    gt[:5][:, disk((64, 64), (20, 20), 6)] = 1
    gt[5:][:, disk((64, 64), (20, 40), 6)] = 1
    res = segment_volume(OracleStack(gt), {1: [SlicePrompt(2, points=[[20, 20]]),
                                               SlicePrompt(14, points=[[20, 40]])]})
    np.testing.assert_array_equal(res.labels, gt)
    chains = {(c["direction"], c["start"]): (c["last"], c["reason"]) for c in res.chains}
    assert chains[("up", 2)] == (4, "vanished")
    assert chains[("down", 14)] == (5, "met")


def test_iou_and_area_rules_stop_propagation_into_a_neighbour():
    # object 1 ends at slice 9; object 2 (not prompted) starts at 10 right below it: with a
    # box prompt the oracle would follow into object 2 -> the IoU rule must stop it
    gt = np.zeros((20, 64, 64), np.int32)
    gt[2:10][:, disk((64, 64), (30, 30), 8)] = 1
    gt[10:][:, disk((64, 64), (30, 36), 8)] = 2
    res = segment_volume(OracleStack(gt), {1: SlicePrompt(5, points=[[30, 30]])}, mode="box")
    np.testing.assert_array_equal(res.labels == 1, gt == 1)
    assert res.stop_reasons[1]["up"] == "iou"
    # with a relaxed IoU rule it leaks; the area rule catches a much bigger neighbour
    res = segment_volume(OracleStack(gt), {1: SlicePrompt(5, points=[[30, 30]])}, mode="box",
                         iou_threshold=0.0)
    assert (res.labels[10:] == 1).any()
    gt[10:] = 0
    gt[10:][:, disk((64, 64), (30, 30), 20)] = 2
    res = segment_volume(OracleStack(gt), {1: SlicePrompt(5, points=[[30, 30]])}, mode="box",
                         iou_threshold=0.0)
    np.testing.assert_array_equal(res.labels == 1, gt == 1)
    assert res.stop_reasons[1]["up"] == "area"


class _NegativeAwareOracle(OraclePredictor):
    """The oracle, but negative points carve a disc of radius 4 out of the mask they are in,
    and every call's points are recorded."""

    def __init__(self, gt):
        super().__init__(gt)
        self.point_calls: list[tuple[int, int, np.ndarray, np.ndarray]] = []

    def predict_batch(self, embedding=None, points=None, labels=None, boxes=None,
                      mask_inputs=None, multimask=True, upsample=True):
        out = super().predict_batch(embedding, points, labels, boxes, mask_inputs, multimask,
                                    upsample)
        if points is None:
            return out
        h = self.gt.shape[1]
        for n in range(len(points)):
            self.point_calls.append((embedding.z, len(points), np.asarray(points[n]),
                                     np.asarray(labels[n])))
            for (r, c), lab in zip(np.asarray(points[n]), np.asarray(labels[n])):
                if lab == 0:
                    out.logits[n, :, torch.as_tensor(disk((h, h), (r, c), 4))] = -8.0
        return out


def test_negative_points_alone_constrain_the_propagated_mask_on_their_slice():
    gt = cylinders(objects=((1, (20, 20), 8, 2, 14), (2, (45, 45), 6, 2, 14)))
    stack = OracleStack(gt)
    stack.predictor = _NegativeAwareOracle(gt)
    neg = [[14.0, 20.0]]  # inside object 1, near its edge, on a slice it reaches by propagation
    res = segment_volume(stack, {1: [SlicePrompt(8, points=[[20, 20]]),
                                     {"slice": 11, "points": neg, "labels": [0]}],
                                 2: SlicePrompt(8, points=[[45, 45]])})
    carved = disk(gt.shape[1:], neg[0], 4)
    assert (res.labels[11] == 1).sum() == ((gt[11] == 1) & ~carved).sum()
    assert not (res.labels[11][carved] == 1).any()
    for z in (10, 12, 13):  # the constraint is on its slice only
        np.testing.assert_array_equal(res.labels[z] == 1, gt[z] == 1)
    np.testing.assert_array_equal(res.labels == 2, gt == 2)  # decoded apart, unchanged
    # propagated onto slice 11, not started there: one chain each way from slice 8
    assert {(c["id"], c["start"]) for c in res.chains} == {(1, 8), (2, 8)}
    on_11 = [(n, p, lab) for z, n, p, lab in stack.predictor.point_calls if z == 11]
    assert len(on_11) == 1 and on_11[0][0] == 1  # a call of its own, object 2 not in it
    np.testing.assert_allclose(on_11[0][1][on_11[0][2] == 0], neg)


def test_an_object_with_only_negative_points_is_refused():
    gt = cylinders()
    with pytest.raises(ValueError, match="only negative points"):
        segment_volume(OracleStack(gt), {1: {"slice": 5, "points": [[20, 20]], "labels": [0]}})


def test_max_slices_limits_propagation():
    gt = cylinders(objects=((1, (20, 20), 6, 0, 19),))
    res = segment_volume(OracleStack(gt), {1: SlicePrompt(10, points=[[20, 20]])}, max_slices=3)
    assert res.slice_range[1] == (7, 13)
    assert res.stop_reasons[1] == {"up": "max_slices", "down": "max_slices"}


def test_twenty_objects_use_the_same_decoder_calls_per_slice_as_one():
    centres = [(8 + 12 * (i // 5), 8 + 12 * (i % 5)) for i in range(20)]
    objs = tuple((i + 1, c, 4, 2 + i % 3, 15 - i % 4) for i, c in enumerate(centres))
    gt = cylinders(n_slices=20, size=64, objects=objs)
    one = OracleStack(gt)
    r1 = segment_volume(one, {1: SlicePrompt(8, points=[centres[0]])})
    many = OracleStack(gt)
    r20 = segment_volume(many, {i + 1: SlicePrompt(8, points=[c]) for i, c in enumerate(centres)})
    np.testing.assert_array_equal(r20.labels, gt)
    assert r20.calls_per_slice.max() == r1.calls_per_slice.max() == 1
    assert many.predictor.decoder_calls == r20.decoder_calls == int(r20.calls_per_slice.sum())
    # the slices that object 1 spans take exactly as many calls as with object 1 alone
    np.testing.assert_array_equal(r20.calls_per_slice[2:16], r1.calls_per_slice[2:16])
    # and each call decoded every object still alive on that slice
    sizes = {z: n for z, n in many.predictor.calls}
    assert sizes[8] == 20 and sizes[9] == 20 and sizes[3] == 20
    assert sizes[2] == sum(1 for o in objs if o[3] <= 3)  # alive on 3, vanish on 2 or not
    np.testing.assert_array_equal(r20.calls_per_slice, r1.calls_per_slice)


class DiskPredictor(OraclePredictor):
    """Every prompt yields a disc of radius 10 around the prompt with logits = 10 - distance."""

    def predict_batch(self, embedding=None, points=None, labels=None, boxes=None,
                      mask_inputs=None, multimask=True, upsample=True):
        n = len(points if points is not None else boxes)
        h = self.img_size
        yy, xx = np.indices((h, h))
        out = []
        for i in range(n):
            if points is not None:
                r, c = np.asarray(points[i][0])
            else:
                b = np.asarray(boxes[i])
                r, c = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            out.append(10.0 - np.hypot(yy - r, xx - c))
        self.decoder_calls += 1
        self.calls.append((embedding.z, n))
        c = 3 if multimask else 1
        logits = torch.tensor(np.stack(out), dtype=torch.float32)[:, None].expand(n, c, h, h)
        return SimpleNamespace(masks=None, scores=torch.full((n, c), 0.9), logits=logits)


def test_overlaps_go_to_the_higher_logit_not_to_the_first_object():
    stack = OracleStack(np.zeros((5, 64, 64), np.int32))
    stack.predictor = DiskPredictor(np.zeros((5, 64, 64), np.int32))
    a, b = (32, 24), (32, 38)  # overlapping discs of radius 10
    res_ab = segment_volume(stack, {1: SlicePrompt(2, points=[a]), 2: SlicePrompt(2, points=[b])})
    res_ba = segment_volume(stack, {2: SlicePrompt(2, points=[b]), 1: SlicePrompt(2, points=[a])})
    np.testing.assert_array_equal(res_ab.labels, res_ba.labels)
    lab = res_ab.labels[2]
    yy, xx = np.indices(lab.shape)
    d1, d2 = np.hypot(yy - a[0], xx - a[1]), np.hypot(yy - b[0], xx - b[1])
    both = (d1 < 10) & (d2 < 10)
    assert both.sum() > 50
    np.testing.assert_array_equal(lab[both & (d1 < d2 - 0.01)], 1)
    np.testing.assert_array_equal(lab[both & (d2 < d1 - 0.01)], 2)
    # swapping which id is where swaps the labels: the geometry decides, not the order
    # (on the prompted slice only: ties decide the next prompts, so propagation may differ)
    res_sw = segment_volume(stack, {2: SlicePrompt(2, points=[a]), 1: SlicePrompt(2, points=[b])},
                            max_slices=0)
    swapped = np.choose(res_ab.labels[2], [0, 2, 1]).astype(res_ab.labels.dtype)
    tie = np.abs(d1 - d2) < 1e-6  # exact ties go to the smaller id
    np.testing.assert_array_equal(res_sw.labels[2][~tie], swapped[~tie])
    assert (res_ab.labels[2][tie & both] == 1).all() and (res_sw.labels[2][tie & both] == 1).all()
    # exclusive: the objects' next prompts come from their resolved masks (boxes move apart)
    def col(labels, i):
        return np.nonzero(labels == i)[1].mean()

    assert col(res_ab.labels[3], 1) < col(res_ab.labels[2], 1) - 0.5
    assert col(res_ab.labels[3], 2) > col(res_ab.labels[2], 2) + 0.5
    res_inc = segment_volume(stack, {1: SlicePrompt(2, points=[a]), 2: SlicePrompt(2, points=[b])},
                             exclusive=False)
    np.testing.assert_array_equal(res_inc.labels[3], res_inc.labels[2])
    np.testing.assert_array_equal(res_inc.labels[2], res_ab.labels[2])


def test_on_its_annotated_slice_an_object_outranks_masks_propagated_there():
    stack = OracleStack(np.zeros((4, 64, 64), np.int32))
    stack.predictor = DiskPredictor(np.zeros((4, 64, 64), np.int32))
    a, b = (32, 24), (32, 31)  # discs of radius 10, overlapping a lot
    # (without the claim rule, which would cut each object where the other was annotated)
    res = segment_volume(stack, {1: SlicePrompt(2, points=[a]), 2: SlicePrompt(1, points=[b])},
                         iou_threshold=0.0, claimed_fraction=None)
    yy, xx = np.indices((64, 64))
    disc_a = np.hypot(yy - a[0], xx - a[1]) < 10
    disc_b = np.hypot(yy - b[0], xx - b[1]) < 10
    # slice 2: 1 was clicked there, 2 propagated there; 1 keeps its whole disc
    np.testing.assert_array_equal(res.labels[2] == 1, disc_a)
    np.testing.assert_array_equal(res.labels[2] == 2, disc_b & ~disc_a)
    # slice 1: the other way round
    np.testing.assert_array_equal(res.labels[1] == 2, disc_b)
    np.testing.assert_array_equal(res.labels[1] == 1, disc_a & ~disc_b)
    # slices 0 and 3, where neither was annotated: the object propagated over fewer slices
    # keeps the shared pixels (2 on slice 0, one slice from its click; 1 on slice 3)
    np.testing.assert_array_equal(res.labels[0] == 2, disc_b)
    np.testing.assert_array_equal(res.labels[0] == 1, disc_a & ~disc_b)
    np.testing.assert_array_equal(res.labels[3] == 1, disc_a)
    np.testing.assert_array_equal(res.labels[3] == 2, disc_b & ~disc_a)


def test_user_masks_win_overlaps_and_seed_propagation():
    gt = cylinders(objects=((1, (20, 20), 6, 2, 12), (2, (40, 40), 8, 0, 19)))
    labels_slice = np.where(gt[7] == 1, 1, 0)
    labels_slice[18:23, 18:23] = 0  # the user's label differs from GT on slice 7
    prompts = prompts_from_labels(labels_slice, slice=7)
    prompts[2] = [SlicePrompt(7, mask=gt[7] == 2)]
    res = segment_volume(OracleStack(gt), prompts)
    np.testing.assert_array_equal(res.labels[7] == 1, labels_slice == 1)  # kept as given
    assert res.scores[1][7] == 1.0
    np.testing.assert_array_equal(res.labels[8:] == 1, gt[8:] == 1)
    np.testing.assert_array_equal(res.labels == 2, gt == 2)
    # 3D labels without a slice: each object seeded on its largest slice
    p3 = prompts_from_labels(gt)
    assert set(p3) == {1, 2} and all(len(v) == 1 and v[0].mask is not None for v in p3.values())
    res = segment_volume(OracleStack(gt), p3)
    np.testing.assert_array_equal(res.labels, gt)
    only2 = prompts_from_labels(gt, slice=5, ids=[2])
    assert list(only2) == [2] and only2[2][0].slice == 5


def test_time_series_motion_follows_fast_moving_objects():
    # a disc of radius 6 accelerating along columns: 3 px, then 8 px per frame
    cols = [10, 13, 21, 29, 37, 45, 53]
    gt = np.zeros((len(cols), 64, 64), np.int32)
    for t, c in enumerate(cols):
        gt[t][disk((64, 64), (32, c), 6)] = 5
    for mode in ("box", "center", "box+mask"):
        res = segment_volume(OracleStack(gt), {5: SlicePrompt(0, points=[[32, 10]])},
                             axis_kind="t", mode=mode, iou_threshold=0.1)
        np.testing.assert_array_equal(res.labels, gt, err_msg=mode)
        res = segment_volume(OracleStack(gt), {5: SlicePrompt(0, points=[[32, 10]])},
                             axis_kind="t", mode=mode, iou_threshold=0.1, motion=False)
        assert res.slice_range[5] == (0, 1), mode
        assert res.stop_reasons[5]["up"] == "vanished"


def test_progress_is_reported_per_slice():
    """One object on a 20-slice stack: (done, 20), the stack's slices (2 Z, one per
    direction, before session 36), moving as it is carried (the down sweep's slices, in its
    own thread, are reported as the calling thread sees them), never back."""
    gt = cylinders(objects=((1, (20, 20), 6, 4, 13),))
    seen = []
    segment_volume(OracleStack(gt), {1: SlicePrompt(8, points=[[20, 20]])},
                   progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert seen[-1] == (20, 20) and {t for _, t in seen} == {20}
    assert done == sorted(set(done)) and len(seen) >= 6  # the up sweep's 6 slices at least


# ----------------------------------------------------------------------------- bad input
def _err(prompts, match, shape=(10, 32, 32), **kw):
    with pytest.raises(ValueError, match=match):
        segment_volume(OracleStack(np.zeros(shape, np.int32)), prompts, **kw)


def test_bad_inputs_give_clear_errors():
    _err({1: SlicePrompt(3, points=[[40, 5]])}, r"outside the slices of shape \(32, 32\)")
    _err({1: SlicePrompt(3, box=[40, 40, 50, 50])}, "lies outside the slices")
    _err({1: SlicePrompt(10, points=[[4, 5]])}, r"slice 10 is out of range .*0\.\.9")
    _err({1: SlicePrompt(-1, points=[[4, 5]])}, "out of range")
    _err({1: []}, "object 1 has no prompts")
    _err({1: [SlicePrompt(3, stop=True)]}, "object 1 has no prompts")
    _err({}, "no prompts given")
    _err({1: SlicePrompt(3, mask=np.ones((16, 16), bool))},
         r"mask has shape \(16, 16\) but the embedded stack's slices are \(32, 32\)")
    _err(prompts_from_labels(np.ones((20, 20), np.int32), slice=2), "mask has shape")
    _err({1: SlicePrompt(3, mask=np.zeros((32, 32), bool))}, "mask is empty")
    _err({0: SlicePrompt(3, points=[[4, 5]])}, "positive integers")
    _err({"a": SlicePrompt(3, points=[[4, 5]])}, "positive integers")
    _err({1: SlicePrompt(3)}, "no points, box or mask")
    _err({1: SlicePrompt(3, points=[[4, 5]], labels=[1, 0])}, "one label per point")
    _err({1: SlicePrompt(3, points=[[4, 5]], labels=[2])}, "labels must be 1")
    _err({1: SlicePrompt(3, box=[10, 10, 5, 20])}, "inverted")
    _err({1: [SlicePrompt(3, points=[[4, 5]]), SlicePrompt(3, stop=True)]},
         "both a stop marker and prompts")
    _err({1: SlicePrompt(3, points=[[4, 5]], stop=True)}, "stop marker carries no")
    _err({1: {"z": 3, "points": [[4, 5]]}}, "unknown slice prompt keys")
    _err({1: SlicePrompt(3, points=[[4, 5]])}, "mode must be one of", mode="boxes")
    _err({1: SlicePrompt(3, points=[[4, 5]])}, "axis_kind", axis_kind="x")
    _err({1: SlicePrompt(3, points=[[4, 5]])}, r"fade_fraction must be in \[0, 1\]",
         fade_fraction=1.5)
    _err({1: SlicePrompt(3, points=[[4, 5]])}, "fade_fraction must be a number", fade_fraction="on")
    _err({1: SlicePrompt(3, points=[[4, 5]])}, "claimed_fraction", claimed_fraction=-0.1)
    with pytest.raises(TypeError, match="mapping"):
        segment_volume(OracleStack(np.zeros((4, 8, 8), np.int32)), [SlicePrompt(0, box=[1, 1, 2, 2])])
    with pytest.raises(ValueError, match=r"\(Z, Y, X\) stack"):
        segment_volume(SimpleNamespace(shape=(8, 8)), {1: SlicePrompt(0, box=[1, 1, 2, 2])})
    with pytest.raises(ValueError, match="need the slice"):
        prompts_from_labels(np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="out of range"):
        prompts_from_labels(np.ones((3, 4, 4), np.int32), slice=3)
    with pytest.raises(ValueError, match="no objects"):
        prompts_from_labels(np.zeros((3, 4, 4), np.int32))
    with pytest.raises(ValueError, match=r"labels \[7\] are not present"):
        prompts_from_labels(np.ones((3, 4, 4), np.int32), ids=[7])


def test_label_dtype_fits_the_ids():
    gt = cylinders(objects=((1, (20, 20), 6, 4, 13),))
    res = segment_volume(OracleStack(gt), {300: SlicePrompt(8, points=[[20, 20]])})
    assert res.labels.dtype == np.uint16 and set(np.unique(res.labels)) == {0, 300}
    res = segment_volume(OracleStack(gt), {70000: SlicePrompt(8, box=[14, 14, 26, 26])})
    assert res.labels.dtype == np.uint32


# ------------------------------------------------------------------ real decoder (tiny model)
def _record_calls(predictor):
    calls = []
    inner = predictor.predict_batch

    def wrapped(embedding=None, points=None, labels=None, boxes=None, mask_inputs=None,
                multimask=True, upsample=True):
        n = len(next(v for v in (points, boxes, mask_inputs) if v is not None))
        calls.append(dict(n=n, points=points is not None, boxes=boxes is not None,
                          masks=mask_inputs is not None, multimask=multimask))
        return inner(embedding=embedding, points=points, labels=labels, boxes=boxes,
                     mask_inputs=mask_inputs, multimask=multimask, upsample=upsample)

    predictor.predict_batch = wrapped
    return calls


def test_real_decoder_path_with_a_tiny_model(tiny_sam):
    from napari_sam.embeddings import embed

    rng = np.random.default_rng(0)
    stack = rng.random((6, 48, 40)).astype(np.float32)
    emb = embed(stack, tiny_sam, batch_size=6)
    calls = _record_calls(emb.predictor)
    before = emb.predictor.decoder_calls
    prompts = {
        1: SlicePrompt(2, points=[[10, 10]]),  # single click: multimask group
        2: SlicePrompt(2, points=[[30, 20], [35, 25]], labels=[1, 0]),  # points group
        3: SlicePrompt(2, points=[[20, 30]]),  # joins object 1's call
        4: {"slice": 2, "box": [5, 5, 20, 30]},  # box group
        5: {"slice": 2, "mask": disk((48, 40), (24, 20), 6), "points": [[24, 20]]},
        6: [{"slice": 4, "mask": disk((48, 40), (30, 10), 5)}],  # no decoder call
    }
    res = segment_volume(emb, prompts, iou_threshold=0.0, area_factor=np.inf, min_area=1,
                         max_slices=2)
    assert res.labels.shape == (6, 48, 40) and res.labels.dtype == np.uint8
    assert emb.predictor.decoder_calls - before == res.decoder_calls == len(calls)
    first = calls[:4]  # the annotation pass on slice 2: one call per prompt kind
    kinds = sorted((c["points"], c["boxes"], c["masks"], c["multimask"], c["n"]) for c in first)
    assert kinds == [(False, True, False, False, 1), (True, False, False, False, 1),
                     (True, False, False, True, 2), (True, False, True, False, 1)]
    # propagation decodes every live object of a slice together, with one prompt kind
    assert all(c["boxes"] and c["masks"] and not c["points"] for c in calls[4:])
    # slice 2: 4 annotation calls (+ at most one per sweep direction)
    assert 4 <= res.calls_per_slice[2] <= 6 and np.delete(res.calls_per_slice, 2).max() <= 2
    np.testing.assert_array_equal(res.labels[4] == 6, disk((48, 40), (30, 10), 5)
                                  & (res.labels[4] == 6))
    assert res.scores[6][4] == 1.0
    for mode in ("points", "center", "box"):
        r = segment_volume(emb, {1: SlicePrompt(3, box=[5, 5, 30, 30])}, mode=mode,
                           iou_threshold=0.0, area_factor=np.inf, min_area=1)
        assert r.labels.shape == (6, 48, 40)
        assert set(r.stop_reasons[1].values()) <= set(STOP_REASONS)


# ------------------------------------------------------------- quality with the demo model
QUALITY_SEEDS = (10000, 10001, 10003)  # held out: the trainer uses seeds < 10000


@pytest.fixture(scope="module")
def demo_model():
    if not DEMO_WEIGHTS.exists():
        pytest.skip(f"demo model not trained yet: {DEMO_WEIGHTS} does not exist")
    import napari_sam as ns

    return ns.load_model("demo")


@pytest.fixture(scope="module")
def nuclei_cases(demo_model):
    """Synthetic 3D nuclei volumes (32, 128, 128) with their demo-model embeddings."""
    from napari_sam.embeddings import embed
    from napari_sam.synthetic import nuclei_3d

    cases = []
    for seed in QUALITY_SEEDS:
        sample = nuclei_3d(seed=seed)
        emb = embed(sample.image, demo_model, batch_size=8, cache_size=64, compute=True)
        cases.append((sample, emb))
    return cases


def deepest_point(mask2d):
    """Where a user clicks: the pixel deepest inside the object."""
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(np.pad(mask2d, 1))[1:-1, 1:-1]
    return np.array(np.unravel_index(np.argmax(d), d.shape), float)


def object_slices(gt, i):
    return np.flatnonzero((gt == i).any((1, 2)))


def evaluate(pred, gt):
    """Per GT object: 3D IoU with the prediction of the same id, and the fraction of the
    predicted pixels that lie on other GT objects (leak)."""
    ious, leaks = {}, {}
    for i in np.unique(gt)[1:]:
        p, g = pred == i, gt == i
        ious[int(i)] = (p & g).sum() / max((p | g).sum(), 1)
        leaks[int(i)] = (p & (gt > 0) & ~g).sum() / max(p.sum(), 1)
    return ious, leaks


def one_click_prompts(gt):
    prompts = {}
    for i in np.unique(gt)[1:]:
        zs = object_slices(gt, i)
        z = int(zs[len(zs) // 2])
        prompts[int(i)] = [SlicePrompt(z, points=[deepest_point(gt[z] == i)])]
    return prompts


def two_slice_prompts(gt):
    prompts = {}
    for i in np.unique(gt)[1:]:
        zs = object_slices(gt, i)
        chosen = sorted({int(zs[len(zs) // 4]), int(zs[(3 * len(zs)) // 4])})
        prompts[int(i)] = [SlicePrompt(z, points=[deepest_point(gt[z] == i)]) for z in chosen]
    return prompts


@pytest.fixture(scope="module")
def one_click_results(nuclei_cases):
    out = []
    for sample, emb in nuclei_cases:
        t0 = time.perf_counter()
        res = segment_volume(emb, one_click_prompts(sample.labels))
        out.append((res, time.perf_counter() - t0))
    return out


@pytest.fixture(scope="module")
def one_click_scores(nuclei_cases, one_click_results):
    """Mean 3D IoU over all nuclei of the test volumes and the worst leak of any object."""
    all_ious, worst_leak = [], 0.0
    for (sample, _), (res, secs) in zip(nuclei_cases, one_click_results):
        ious, leaks = evaluate(res.labels, sample.labels)
        all_ious += list(ious.values())
        worst = max(leaks, key=leaks.get)
        worst_leak = max(worst_leak, leaks[worst])
        print(f"seed {sample.seed}: {len(ious)} nuclei, mean 3D IoU {np.mean(list(ious.values())):.3f}, "
              f"worst leak {leaks[worst]:.3f} (object {worst}), {secs:.1f} s")
    print(f"overall mean 3D IoU {np.mean(all_ious):.3f} over {len(all_ious)} nuclei, "
          f"worst leak {worst_leak:.3f}")
    return float(np.mean(all_ious)), worst_leak


@pytest.mark.slow
@short_of_target("volume_one_click_iou")
def test_demo_one_click_per_nucleus_segments_the_volume(one_click_scores):
    """Issue #3's line: mean 3D IoU >= 0.75 and no object leaking 5 % into a neighbour."""
    mean_iou, worst_leak = one_click_scores
    assert worst_leak < 0.05, f"an object leaks {worst_leak:.1%} into neighbours"
    assert mean_iou >= 0.75


@pytest.mark.slow
def test_demo_one_click_per_nucleus_floor(one_click_scores):
    """What the shipped demo model measures (tests/demo_targets.py): no worse."""
    mean_iou, worst_leak = one_click_scores
    assert mean_iou >= floor("volume_one_click_iou")
    assert worst_leak <= floor("volume_one_click_worst_leak", 0.05)


@pytest.mark.slow
def test_demo_two_annotated_slices_do_at_least_as_well_as_one(nuclei_cases, one_click_results):
    one, two, worst_two = [], [], 0.0
    for (sample, emb), (res1, _) in zip(nuclei_cases, one_click_results):
        res2 = segment_volume(emb, two_slice_prompts(sample.labels))
        one += list(evaluate(res1.labels, sample.labels)[0].values())
        ious2, leaks2 = evaluate(res2.labels, sample.labels)
        two += list(ious2.values())
        worst_two = max(worst_two, max(leaks2.values()))
    print(f"mean 3D IoU: one click {np.mean(one):.3f}, two annotated slices {np.mean(two):.3f}; "
          f"worst leak with two slices {worst_two:.3f}")
    assert np.mean(two) >= np.mean(one), (
        f"two annotated slices ({np.mean(two):.3f}) did worse than one click ({np.mean(one):.3f})")
    assert worst_two <= floor("volume_one_click_worst_leak", 0.05)


@pytest.mark.slow
def test_demo_stop_markers_and_the_stack_edge_are_respected_exactly(nuclei_cases):
    sample, emb = nuclei_cases[0]
    gt = sample.labels
    ids = np.unique(gt)[1:]
    spans = {int(i): object_slices(gt, i) for i in ids}
    # the tallest nucleus, stopped two slices above and below its middle
    tall = max(spans, key=lambda i: len(spans[i]))
    mid = int(spans[tall][len(spans[tall]) // 2])
    # the nucleus with the largest area on the first slice, clicked there
    edge = int(np.bincount(gt[0].ravel(), minlength=2)[1:].argmax() + 1)
    prompts = {
        tall: [SlicePrompt(mid, points=[deepest_point(gt[mid] == tall)]),
               SlicePrompt(mid + 2, stop=True), SlicePrompt(mid - 2, stop=True)],
        edge: [SlicePrompt(0, points=[deepest_point(gt[0] == edge)])],
    }
    res = segment_volume(emb, prompts)
    present = np.flatnonzero((res.labels == tall).any((1, 2)))
    np.testing.assert_array_equal(present, [mid - 1, mid, mid + 1])
    assert res.stop_reasons[tall] == {"up": "stop_marker", "down": "stop_marker"}
    assert res.slice_range[edge][0] == 0 and res.stop_reasons[edge]["down"] == "edge"
    assert (res.labels[0] == edge).sum() > 0.5 * (gt[0] == edge).sum()


@pytest.mark.slow
def test_demo_twenty_objects_take_as_many_decoder_calls_per_slice_as_one(nuclei_cases):
    sample, emb = max(nuclei_cases, key=lambda c: max(
        len(np.unique(c[0].labels[z])) for z in range(c[0].labels.shape[0])))
    gt = sample.labels
    z = int(np.argmax([len(np.unique(gt[k])) for k in range(gt.shape[0])]))
    ids = [int(i) for i in np.unique(gt[z])[1:]]
    if len(ids) < 20:
        pytest.fail(f"need 20 nuclei on one slice, slice {z} of seed {sample.seed} has {len(ids)}")
    # all 20 on the same slice; the 1-object run uses the one spanning most slices
    ids = sorted(ids, key=lambda i: -len(object_slices(gt, i)))[:20]
    prompts = {i: SlicePrompt(z, points=[deepest_point(gt[z] == i)]) for i in ids}
    calls = _record_calls(emb.predictor)
    r1 = segment_volume(emb, {ids[0]: prompts[ids[0]]})
    n1 = len(calls)
    r20 = segment_volume(emb, prompts)
    sizes = [c["n"] for c in calls[n1:]]
    del emb.predictor.predict_batch  # back to the class method
    print(f"decoder calls: 1 object {r1.decoder_calls}, 20 objects {r20.decoder_calls}; "
          f"prompts per call {sizes}")
    assert r1.calls_per_slice.max() == r20.calls_per_slice.max() == 1
    assert sizes[0] == 20 and max(sizes) == 20
    lo, hi = r1.slice_range[ids[0]]
    np.testing.assert_array_equal(r20.calls_per_slice[lo : hi + 1], r1.calls_per_slice[lo : hi + 1])
