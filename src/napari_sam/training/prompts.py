"""Prompt simulation for training and evaluation, the way SAM was trained.

All functions work in one pixel frame given by the masks passed in (the trainer uses the
resized model-input frame; evaluation uses the original image). Points are returned as SAM's
(x, y) = (col, row) of a pixel index, boxes as (x0, y0, x1, y1) with inclusive pixel extents,
so that a point at pixel (row, col) converted by :func:`napari_sam.preprocess.points_to_model`
lands at the same place.

- :func:`sample_points`: random positive points inside each object, optionally biased to its
  interior (distance transform).
- :func:`masks_to_boxes` and :func:`jitter_boxes`: tight boxes and boxes perturbed by a
  Gaussian of ``noise`` times the side length, clipped to the image.
- :func:`correction_clicks`: one click per object from the error region between a
  prediction and the ground truth: a positive click in a false-negative region or a negative
  click in a false-positive region, at the point farthest inside the region or at random.

The trainer uses the batched variants ending in ``_torch``: the same prompts drawn on the
training device for all objects at once, with no round trip to the host (on a GPU the numpy
versions' per-object distance transforms bounded the step rate). "Farthest inside" there is
the chessboard depth of :func:`interior_depth` (repeated 3 x 3 erosions, capped), not the
Euclidean distance; evaluation keeps the exact numpy versions.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from napari_sam.automatic import masks_to_boxes as _row_col_boxes

__all__ = [
    "boxes_of_masks_torch",
    "central_point",
    "correction_clicks",
    "correction_clicks_torch",
    "interior_depth",
    "jitter_boxes",
    "jitter_boxes_torch",
    "masks_to_boxes",
    "sample_points",
    "sample_points_torch",
]


def _to_numpy_bool(masks) -> np.ndarray:
    if isinstance(masks, Tensor):
        masks = masks.detach().cpu().numpy()
    return np.asarray(masks).astype(bool, copy=False)


def _interior_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance to the nearest pixel outside ``mask`` (the image border counts as
    outside), computed on the mask's bounding crop only."""
    out = np.zeros(mask.shape, np.float32)
    rows = np.flatnonzero(mask.any(1))
    if rows.size == 0:
        return out
    cols = np.flatnonzero(mask.any(0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    crop = np.pad(mask[r0:r1, c0:c1], 1)
    out[r0:r1, c0:c1] = ndimage.distance_transform_edt(crop)[1:-1, 1:-1]
    return out


def central_point(mask) -> tuple[int, int]:
    """(row, col) of the pixel of ``mask`` farthest from its boundary; among equally deep
    pixels the one nearest the mask's centroid. Raises ValueError for an empty mask."""
    m = _to_numpy_bool(mask)
    if not m.any():
        raise ValueError("mask is empty")
    d = _interior_distance(m)
    rr, cc = np.nonzero(d >= d.max() - 1e-6)
    cy, cx = np.argwhere(m).mean(0)
    k = int(np.argmin((rr - cy) ** 2 + (cc - cx) ** 2))
    return int(rr[k]), int(cc[k])


def sample_points(
    masks,
    n_points: int,
    rng: np.random.Generator,
    *,
    interior_bias: float = 0.0,
) -> np.ndarray:
    """Random positive points inside each mask.

    Parameters
    ----------
    masks : (N, H, W) bool array or tensor
        Every mask must be non-empty.
    n_points : int
        Points per mask (drawn with replacement).
    rng : numpy.random.Generator
    interior_bias : float in [0, 1]
        Probability, per mask, of drawing with weights proportional to the distance from the
        boundary (clicks near the middle, like a user's) instead of uniformly.

    Returns
    -------
    numpy.ndarray (N, n_points, 2) float32, (x, y) = (col, row) pixel indices.
    """
    m = _to_numpy_bool(masks)
    n = m.shape[0]
    out = np.empty((n, n_points, 2), np.float32)
    for i in range(n):
        if rng.random() < interior_bias:
            w = _interior_distance(m[i]).ravel().astype(np.float64)
        else:
            w = m[i].ravel().astype(np.float64)
        total = w.sum()
        if total <= 0:
            raise ValueError(f"mask {i} is empty: cannot sample a point inside it")
        idx = rng.choice(w.size, size=n_points, p=w / total)
        r, c = np.divmod(idx, m.shape[2])
        out[i, :, 0] = c
        out[i, :, 1] = r
    return out


def masks_to_boxes(masks) -> np.ndarray:
    """Tight boxes of (N, H, W) masks -> (N, 4) float32 (x0, y0, x1, y1), inclusive pixel
    indices. Empty masks give (0, 0, 0, 0)."""
    m = _to_numpy_bool(masks)
    n = m.shape[0]
    out = np.zeros((n, 4), np.float32)
    rows_any = m.any(2)
    cols_any = m.any(1)
    for i in range(n):
        rows = np.flatnonzero(rows_any[i])
        if rows.size == 0:
            continue
        cols = np.flatnonzero(cols_any[i])
        out[i] = (cols[0], rows[0], cols[-1], rows[-1])
    return out


def jitter_boxes(
    boxes,
    rng: np.random.Generator,
    size: tuple[int, int],
    *,
    noise: float = 0.1,
    max_shift: float | None = None,
) -> np.ndarray:
    """Perturb boxes like SAM's training: each coordinate moves by a Gaussian with standard
    deviation ``noise`` times the box side, at most ``max_shift`` pixels (default: unlimited
    by pixels, but never more than 2 standard deviations); results stay inside the image and
    are never inverted.

    Parameters
    ----------
    boxes : (N, 4) x0, y0, x1, y1
    rng : numpy.random.Generator
    size : (H, W) of the image frame
    noise : float
        Relative standard deviation (0.1 in SAM).
    max_shift : float, optional
        Absolute cap in pixels (SAM: 20 px at 1024).

    Returns
    -------
    numpy.ndarray (N, 4) float32
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    h, w = size
    side = np.stack([b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1], 1)  # (N, 2) w, h
    std = noise * np.concatenate([side, side], 1)  # x0 y0 x1 y1
    shift = np.clip(rng.standard_normal(b.shape), -2.0, 2.0) * std
    if max_shift is not None:
        shift = np.clip(shift, -max_shift, max_shift)
    out = b + shift
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w - 1)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h - 1)
    # never inverted: a collapsed box becomes a one-pixel-wide box around its middle
    for lo, hi in ((0, 2), (1, 3)):
        bad = out[:, hi] < out[:, lo]
        if bad.any():
            mid = (out[bad, lo] + out[bad, hi]) / 2
            out[bad, lo] = mid
            out[bad, hi] = mid
    return out.astype(np.float32)


def correction_clicks(
    pred,
    gt,
    rng: np.random.Generator,
    *,
    p_farthest: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """One corrective click per object from the error region of a prediction.

    The click corrects the larger of the two error types: a positive click (label 1) in the
    false-negative region (object pixels the prediction missed) or a negative click (label 0)
    in the false-positive region. With probability ``p_farthest`` (per object) the click is
    the pixel farthest inside that region (what a user does; deterministic), otherwise a
    uniformly random pixel of it. An object without error gets a padding point (label -1),
    which the prompt encoder ignores.

    Parameters
    ----------
    pred, gt : (N, H, W) bool arrays or tensors
    rng : numpy.random.Generator
    p_farthest : float in [0, 1]

    Returns
    -------
    coords : numpy.ndarray (N, 2) float32, (x, y) = (col, row)
    labels : numpy.ndarray (N,) int64 in {1, 0, -1}
    """
    p = _to_numpy_bool(pred)
    g = _to_numpy_bool(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred {p.shape} and gt {g.shape} differ in shape")
    n = g.shape[0]
    coords = np.zeros((n, 2), np.float32)
    labels = np.full(n, -1, np.int64)
    fn_all = g & ~p
    fp_all = p & ~g
    fn_area = fn_all.reshape(n, -1).sum(1)
    fp_area = fp_all.reshape(n, -1).sum(1)
    for i in range(n):
        if fn_area[i] == 0 and fp_area[i] == 0:
            continue
        positive = fn_area[i] >= fp_area[i]
        region = fn_all[i] if positive else fp_all[i]
        if rng.random() < p_farthest:
            d = _interior_distance(region)
            r, c = np.unravel_index(int(np.argmax(d)), region.shape)
        else:
            idx = np.flatnonzero(region.ravel())
            r, c = np.divmod(int(idx[rng.integers(idx.size)]), region.shape[1])
        coords[i] = (c, r)
        labels[i] = 1 if positive else 0
    return coords, labels


def as_tensor_points(coords: np.ndarray, labels: np.ndarray, device) -> tuple[Tensor, Tensor]:
    """(coords (N, P, 2) float32, labels (N, P) int64) as tensors on ``device``."""
    return (
        torch.as_tensor(coords, dtype=torch.float32, device=device),
        torch.as_tensor(labels, dtype=torch.int64, device=device),
    )


# ----------------------------------------------------------------------------- on the device


def _erosion_depth(masks: Tensor, max_depth: int) -> Tensor:
    """(N, H, W) bool -> (N, H, W) float32 chessboard depth, by repeated 3 x 3 erosions."""
    cur = masks[:, None].float()
    depth = torch.zeros_like(cur)
    for i in range(int(max_depth)):
        depth += cur
        cur = -F.max_pool2d(-F.pad(cur, (1, 1, 1, 1), value=0.0), 3, stride=1)
        if i % 4 == 3 and not bool(cur.any()):
            break
    return depth[:, 0]


def interior_depth(masks: Tensor, max_depth: int = 32) -> Tensor:
    """Chessboard depth of each pixel inside its mask: how many 3 x 3 erosions it survives.

    The erosions run on one window per mask, as large as the largest mask's bounding box
    (placed to cover each mask's box, inside the image), not on the whole image.

    Parameters
    ----------
    masks : (N, H, W) bool tensor
    max_depth : int
        Cap: deeper pixels get ``max_depth``. The loop stops early once every mask has
        eroded away (checked every 4 erosions).

    Returns
    -------
    torch.Tensor (N, H, W) float32 on the masks' device: 0 outside, 1 on the boundary
    (the image border counts as outside), 2 one pixel further in, ...
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(masks.shape, device=masks.device)
    boxes = _row_col_boxes(masks)  # (N, 4) r0, c0, r1, c1
    kh, kw = ((boxes[:, 2:] - boxes[:, :2]).amax(0) + 1).tolist()
    if kh * kw * 2 > h * w:
        return _erosion_depth(masks, max_depth)
    # windows of kh x kw holding each box; the origin moves in where the image ends, so
    # every window pixel is an image pixel and each is written back once
    dev = masks.device
    r0 = torch.minimum(boxes[:, 0], torch.tensor(h - kh, device=dev))
    c0 = torch.minimum(boxes[:, 1], torch.tensor(w - kw, device=dev))
    rows = (r0[:, None] + torch.arange(kh, device=dev))[:, :, None]  # (N, kh, 1)
    cols = (c0[:, None] + torch.arange(kw, device=dev))[:, None, :]  # (N, 1, kw)
    obj = torch.arange(n, device=dev)[:, None, None]
    out = torch.zeros(masks.shape, device=dev)
    out[obj, rows, cols] = _erosion_depth(masks[obj, rows, cols], max_depth)
    return out


def boxes_of_masks_torch(masks: Tensor) -> Tensor:
    """Tight boxes of (N, H, W) bool masks -> (N, 4) float32 (x0, y0, x1, y1), inclusive
    pixel indices, on the masks' device; empty masks give (0, 0, 0, 0) (as
    :func:`masks_to_boxes`)."""
    return _row_col_boxes(masks)[:, [1, 0, 3, 2]].float()


def jitter_boxes_torch(
    boxes: Tensor,
    generator: torch.Generator,
    size: tuple[int, int],
    *,
    noise: float = 0.1,
) -> Tensor:
    """:func:`jitter_boxes` on the device: each coordinate moves by a Gaussian of ``noise``
    times the box side (clipped at 2 standard deviations), the result clipped to the image
    of ``size`` (H, W); a collapsed side becomes a point at its middle.

    Parameters
    ----------
    boxes : (N, 4) float tensor, x0, y0, x1, y1
    generator : torch.Generator on the boxes' device

    Returns
    -------
    torch.Tensor (N, 4) float32
    """
    b = boxes.float()
    h, w = size
    side = torch.stack([b[:, 2] - b[:, 0] + 1, b[:, 3] - b[:, 1] + 1], 1)
    std = noise * torch.cat([side, side], 1)
    z = torch.randn(b.shape, generator=generator, device=b.device).clamp_(-2.0, 2.0)
    out = b + z * std
    lim = torch.tensor([w - 1, h - 1, w - 1, h - 1], dtype=out.dtype, device=out.device)
    out = torch.minimum(out.clamp_min(0), lim)
    lo, hi = out[:, :2], out[:, 2:]
    mid = (lo + hi) / 2
    bad = hi < lo
    return torch.cat([torch.where(bad, mid, lo), torch.where(bad, mid, hi)], 1)


def _argmax_pixel(score: Tensor) -> Tensor:
    """(N, H, W) scores -> (N, 2) float32 (x, y) = (col, row) of each map's maximum."""
    w = score.shape[-1]
    flat = score.flatten(1).argmax(1)
    return torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], 1).float()


def sample_points_torch(
    masks: Tensor,
    generator: torch.Generator,
    *,
    interior_bias: float = 0.0,
) -> Tensor:
    """One random positive point inside each mask, on the masks' device (:func:`sample_points`
    with ``n_points=1``): uniform over the mask or, with probability ``interior_bias`` per
    mask, weighted by :func:`interior_depth` (clicks near the middle, like a user's).

    Parameters
    ----------
    masks : (N, H, W) bool tensor; every mask must be non-empty
    generator : torch.Generator on the masks' device

    Returns
    -------
    torch.Tensor (N, 1, 2) float32, (x, y) = (col, row) pixel indices.
    """
    n = masks.shape[0]
    if n and not bool(masks.flatten(1).any(1).all()):
        raise ValueError("a mask is empty: cannot sample a point inside it")
    dev = masks.device
    weight = masks.float()
    if interior_bias > 0:
        biased = torch.rand(n, generator=generator, device=dev) < interior_bias
        weight = torch.where(biased[:, None, None], interior_depth(masks), weight)
    # exponential race: argmax(w / E), E ~ Exp(1), draws a pixel with probability
    # proportional to w (Gumbel-max without the logarithm of w)
    u = torch.rand(weight.shape, generator=generator, device=dev).clamp_(1e-12, 1 - 1e-7)
    return _argmax_pixel(weight / -torch.log(u))[:, None]


def correction_clicks_torch(
    pred: Tensor,
    gt: Tensor,
    generator: torch.Generator,
    *,
    p_farthest: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """:func:`correction_clicks` for all objects at once on the device.

    The click corrects the larger error type: a positive click (label 1) in the false-
    negative region or a negative click (label 0) in the false-positive region. With
    probability ``p_farthest`` per object it is one of the deepest pixels of that region by
    :func:`interior_depth` (ties broken at random), otherwise a uniformly random pixel of it.
    An object without error gets a padding point (0, 0) with label -1.

    Parameters
    ----------
    pred, gt : (N, H, W) bool tensors on one device
    generator : torch.Generator on that device
    p_farthest : float in [0, 1]

    Returns
    -------
    coords : torch.Tensor (N, 2) float32, (x, y) = (col, row)
    labels : torch.Tensor (N,) int64 in {1, 0, -1}
    """
    if pred.shape != gt.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} differ in shape")
    n, dev = gt.shape[0], gt.device
    fn = gt & ~pred
    fp = pred & ~gt
    fn_area = fn.flatten(1).sum(1)
    fp_area = fp.flatten(1).sum(1)
    positive = fn_area >= fp_area
    region = torch.where(positive[:, None, None], fn, fp)
    score = region.float()
    if p_farthest > 0:
        far = torch.rand(n, generator=generator, device=dev) < p_farthest
        score = torch.where(far[:, None, None], interior_depth(region), score)
    # depths are whole numbers: noise below 1 picks at random among the deepest pixels
    noise = 0.5 * torch.rand(score.shape, generator=generator, device=dev)
    coords = _argmax_pixel(torch.where(region, score + noise, torch.full_like(score, -1.0)))
    has_error = (fn_area + fp_area) > 0
    labels = torch.where(has_error, positive.long(), torch.full_like(fn_area, -1))
    coords = torch.where(has_error[:, None], coords, torch.zeros_like(coords))
    return coords, labels
