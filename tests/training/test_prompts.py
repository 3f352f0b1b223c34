"""Prompt simulation and losses of the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.training.losses import LossWeights, dice_loss, focal_loss, mask_iou, sam_loss
from napari_sam.training.prompts import (
    boxes_of_masks_torch,
    central_point,
    correction_clicks,
    correction_clicks_torch,
    interior_depth,
    jitter_boxes,
    jitter_boxes_torch,
    masks_to_boxes,
    sample_points,
    sample_points_torch,
)


def _disk(shape, centre, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= r * r


def test_sample_points_inside_masks():
    rng = np.random.default_rng(0)
    masks = np.stack([_disk((40, 50), (10, 12), 4), _disk((40, 50), (30, 40), 6)])
    for bias in (0.0, 1.0):
        pts = sample_points(masks, 20, rng, interior_bias=bias)
        assert pts.shape == (2, 20, 2)
        for i in range(2):
            x, y = pts[i, :, 0].astype(int), pts[i, :, 1].astype(int)
            assert masks[i, y, x].all()  # (x, y) = (col, row)


def test_interior_bias_pulls_points_to_the_middle():
    rng = np.random.default_rng(1)
    m = _disk((64, 64), (32, 32), 20)[None]
    uniform = sample_points(m, 400, rng, interior_bias=0.0)[0]
    central = sample_points(m, 400, rng, interior_bias=1.0)[0]
    d_u = np.hypot(uniform[:, 0] - 32, uniform[:, 1] - 32).mean()
    d_c = np.hypot(central[:, 0] - 32, central[:, 1] - 32).mean()
    assert d_c < d_u - 2


def test_sample_points_rejects_empty_mask():
    with pytest.raises(ValueError, match="empty"):
        sample_points(np.zeros((1, 8, 8), bool), 1, np.random.default_rng(0))


def test_central_point_is_the_deepest_pixel():
    m = np.zeros((30, 30), bool)
    m[5:25, 8:14] = True  # 20 x 6 rectangle: centre rows 14/15, cols 10/11
    r, c = central_point(m)
    assert m[r, c] and 12 <= r <= 17 and c in (10, 11)
    with pytest.raises(ValueError):
        central_point(np.zeros((4, 4), bool))


def test_masks_to_boxes_inclusive():
    m = np.zeros((2, 20, 30), bool)
    m[0, 3:7, 10:21] = True
    boxes = masks_to_boxes(m)
    np.testing.assert_array_equal(boxes[0], [10, 3, 20, 6])
    np.testing.assert_array_equal(boxes[1], [0, 0, 0, 0])  # empty mask


def test_jitter_boxes_stay_in_bounds_and_ordered():
    rng = np.random.default_rng(0)
    boxes = np.array([[0, 0, 5, 5], [90, 40, 99, 49], [40, 20, 60, 30]] * 200, np.float32)
    out = jitter_boxes(boxes, rng, (50, 100), noise=0.3)
    assert out.shape == boxes.shape
    assert (out[:, 0] >= 0).all() and (out[:, 2] <= 99).all()
    assert (out[:, 1] >= 0).all() and (out[:, 3] <= 49).all()
    assert (out[:, 2] >= out[:, 0]).all() and (out[:, 3] >= out[:, 1]).all()
    # really jittered, by about noise x side (2 sigma cap)
    moved = np.abs(out - boxes)[2::3]
    assert moved.mean() > 0.5
    assert moved[:, [0, 2]].max() <= 2 * 0.3 * 21 + 1e-4


def test_jitter_noise_zero_is_identity():
    boxes = np.array([[3, 4, 10, 12]], np.float32)
    np.testing.assert_array_equal(jitter_boxes(boxes, np.random.default_rng(0), (20, 20), noise=0), boxes)


def test_correction_click_positive_in_missed_region():
    gt = _disk((40, 40), (20, 20), 10)[None]
    pred = np.zeros_like(gt)
    pred[0, :, :20] = gt[0, :, :20]  # right half missed
    xy, lab = correction_clicks(pred, gt, np.random.default_rng(0))
    assert lab[0] == 1
    x, y = int(xy[0, 0]), int(xy[0, 1])
    assert gt[0, y, x] and not pred[0, y, x]
    # farthest point inside the missed half-disk: well inside it
    assert x >= 22 and abs(y - 20) <= 3


def test_correction_click_negative_in_spurious_region():
    gt = _disk((40, 40), (10, 10), 5)[None]
    pred = gt | _disk((40, 40), (30, 30), 8)[None]
    for p_far in (1.0, 0.0):
        xy, lab = correction_clicks(pred, gt, np.random.default_rng(3), p_farthest=p_far)
        x, y = int(xy[0, 0]), int(xy[0, 1])
        assert lab[0] == 0 and pred[0, y, x] and not gt[0, y, x]


def test_correction_click_random_mode_lands_in_error_region():
    rng = np.random.default_rng(5)
    gt = np.stack([_disk((32, 32), (16, 16), 8)] * 50)
    pred = np.stack([_disk((32, 32), (16, 20), 8)] * 50)
    xy, lab = correction_clicks(pred, gt, rng, p_farthest=0.0)
    x, y = xy[:, 0].astype(int), xy[:, 1].astype(int)
    rows = np.arange(50)
    err = gt ^ pred
    assert err[rows, y, x].all()
    assert (gt[rows, y, x] == (lab == 1)).all()
    assert len(np.unique(xy, axis=0)) > 5  # random, not always the same pixel


def test_correction_click_perfect_prediction_is_padding():
    gt = _disk((16, 16), (8, 8), 4)[None]
    xy, lab = correction_clicks(gt.copy(), gt, np.random.default_rng(0))
    assert lab[0] == -1


def test_correction_clicks_accept_tensors():
    gt = torch.from_numpy(_disk((16, 16), (8, 8), 4)[None])
    pred = torch.zeros_like(gt)
    xy, lab = correction_clicks(pred, gt, np.random.default_rng(0))
    assert lab[0] == 1 and tuple(xy[0]) == (8.0, 8.0)


# ----------------------------------------------------------------------------- on the device


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_interior_depth_is_chessboard_distance_with_a_cap():
    m = torch.zeros(1, 9, 11, dtype=torch.bool)
    m[0, 1:8, 1:10] = True  # 7 x 9 rectangle: depth 1 on its rim, 4 in its middle row
    d = interior_depth(m)
    assert d[0, 0].eq(0).all() and d[0, 1, 1:10].eq(1).all()
    assert d[0, 4, 4:7].tolist() == [4.0, 4.0, 4.0] and float(d.max()) == 4
    full = torch.ones(1, 40, 40, dtype=torch.bool)  # the image border counts as outside
    assert float(interior_depth(full)[0, 20, 20]) == 20
    assert float(interior_depth(full, max_depth=6).max()) == 6


def test_boxes_of_masks_torch_match_numpy():
    m = np.zeros((3, 12, 15), bool)
    m[0, 2:5, 3:9] = True
    m[1, 11, 14] = True  # m[2] empty
    np.testing.assert_array_equal(boxes_of_masks_torch(torch.from_numpy(m)).numpy(),
                                  masks_to_boxes(m))


def test_jitter_boxes_torch_stay_in_bounds_ordered_and_move():
    boxes = torch.tensor([[0, 0, 99, 49], [10, 10, 12, 11], [90, 40, 99, 49]] * 50,
                         dtype=torch.float32)
    out = jitter_boxes_torch(boxes, _gen(), (50, 100), noise=0.3)
    assert (out[:, 0] >= 0).all() and (out[:, 2] <= 99).all()
    assert (out[:, 1] >= 0).all() and (out[:, 3] <= 49).all()
    assert (out[:, 2] >= out[:, 0]).all() and (out[:, 3] >= out[:, 1]).all()
    assert not torch.equal(out, boxes)
    assert torch.equal(jitter_boxes_torch(boxes, _gen(), (50, 100), noise=0.0), boxes)


def test_sample_points_torch_inside_masks_and_central_when_biased():
    masks = torch.from_numpy(np.stack([_disk((40, 50), (10, 12), 4),
                                       _disk((40, 50), (25, 25), 12)] * 1000))
    for bias in (0.0, 1.0):
        pts = sample_points_torch(masks, _gen(1), interior_bias=bias)
        assert pts.shape == (2000, 1, 2)
        x, y = pts[:, 0, 0].long(), pts[:, 0, 1].long()
        assert masks[torch.arange(2000), y, x].all()
    big = slice(1, None, 2)
    dist = {}
    for bias in (0.0, 1.0):
        pts = sample_points_torch(masks, _gen(2), interior_bias=bias)[big, 0]
        dist[bias] = float(((pts - torch.tensor([25.0, 25.0])) ** 2).sum(1).sqrt().mean())
    # uniform over a disk of radius 12: mean distance 8 from its centre; weighted by depth: 6
    assert dist[1.0] < dist[0.0] - 1.0
    with pytest.raises(ValueError, match="empty"):
        sample_points_torch(torch.zeros(1, 8, 8, dtype=torch.bool), _gen())


def test_correction_clicks_torch_positive_negative_and_padding():
    gt = torch.from_numpy(np.stack([_disk((40, 40), (20, 20), 10),
                                    _disk((40, 40), (10, 10), 5),
                                    _disk((40, 40), (20, 20), 6)]))
    pred = gt.clone()
    pred[0, :, 20:] = False  # right half missed -> positive click deep inside it
    pred[1] |= torch.from_numpy(_disk((40, 40), (30, 30), 8))  # spurious blob -> negative
    xy, lab = correction_clicks_torch(pred, gt, _gen(), p_farthest=1.0)  # pred[2] perfect
    assert lab.tolist() == [1, 0, -1]
    x, y = int(xy[0, 0]), int(xy[0, 1])
    assert gt[0, y, x] and not pred[0, y, x] and x >= 22 and abs(y - 20) <= 3
    x, y = int(xy[1, 0]), int(xy[1, 1])
    assert pred[1, y, x] and not gt[1, y, x] and abs(x - 30) <= 2 and abs(y - 30) <= 2
    assert xy[2].tolist() == [0.0, 0.0]


def test_correction_clicks_torch_random_mode_lands_in_error_region():
    gt = torch.from_numpy(np.stack([_disk((32, 32), (16, 16), 8)] * 50))
    pred = torch.from_numpy(np.stack([_disk((32, 32), (16, 20), 8)] * 50))
    xy, lab = correction_clicks_torch(pred, gt, _gen(5), p_farthest=0.0)
    x, y = xy[:, 0].long(), xy[:, 1].long()
    rows = torch.arange(50)
    assert (gt ^ pred)[rows, y, x].all()
    assert torch.equal(gt[rows, y, x], lab == 1)
    assert len(torch.unique(xy, dim=0)) > 5
    with pytest.raises(ValueError, match="differ in shape"):
        correction_clicks_torch(pred[:, :8], gt, _gen())


# ----------------------------------------------------------------------------- losses


def test_losses_are_small_for_right_and_large_for_wrong_masks():
    gt = torch.from_numpy(_disk((32, 32), (16, 16), 8)).float()[None]
    good = (gt * 20 - 10)[:, None]
    bad = -good
    assert focal_loss(good, gt[:, None]).item() < 1e-3 < focal_loss(bad, gt[:, None]).item()
    assert dice_loss(good, gt[:, None]).item() < 0.01
    assert dice_loss(bad, gt[:, None]).item() > 0.9
    assert mask_iou(good, gt[:, None]).item() == 1.0
    assert mask_iou(bad, gt[:, None]).item() == 0.0


def test_sam_loss_takes_the_best_candidate_and_trains_iou_head():
    gt = torch.from_numpy(_disk((32, 32), (16, 16), 8)).float()[None]
    right = gt * 20 - 10
    logits = torch.stack([-right, right, -right], 1).requires_grad_(True)  # (1, 3, H, W)
    iou_pred = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    loss, parts = sam_loss(logits, gt, iou_pred, LossWeights())
    assert parts["best"].item() == 1
    assert parts["iou"].item() == 1.0
    assert loss.item() < 0.05
    loss.backward()
    # only the chosen candidate receives a mask gradient
    g = logits.grad.abs().flatten(2).sum(-1)[0]
    assert g[0] == 0 and g[2] == 0
    # the IoU head is trained towards the actual IoUs (0, 1, 0): already exact here
    assert iou_pred.grad.abs().max().item() < 1e-6
