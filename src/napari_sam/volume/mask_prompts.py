"""Prompts derived from an object's mask, and the mask measures propagation needs.

Owns how the next slice is prompted from the previous slice's mask (:func:`box_from_mask`,
:func:`center_from_mask`, :func:`points_from_mask`), the per-mask areas, boxes and
centroids of a batch of masks (:func:`mask_stats`) and whole-pixel translation of masks and
logits (:func:`shift_pixels`, for motion along a time axis). Coordinates are (row, col);
boxes (row0, col0, row1, col1), inclusive.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["box_from_mask", "center_from_mask", "mask_stats", "points_from_mask", "shift_pixels"]


def box_from_mask(mask) -> np.ndarray | None:
    """Tight box of a mask.

    Parameters
    ----------
    mask : array-like (Y, X) bool

    Returns
    -------
    numpy.ndarray (4,) float64 or None
        (row0, col0, row1, col1) inclusive pixel coordinates; None for an empty mask.
    """
    m = np.asarray(mask, bool)
    rows = np.flatnonzero(m.any(1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(0))
    return np.array([rows[0], cols[0], rows[-1], cols[-1]], np.float64)


def center_from_mask(mask) -> np.ndarray | None:
    """A single point at the centre of a mask.

    The centroid when it lies inside the mask, otherwise the pixel deepest inside the mask
    (maximum of the distance transform), so concave shapes get a point on the object.

    Returns
    -------
    numpy.ndarray (2,) float64 (row, col) or None for an empty mask.
    """
    m = np.asarray(mask, bool)
    rr, cc = np.nonzero(m)
    if rr.size == 0:
        return None
    r, c = int(round(rr.mean())), int(round(cc.mean()))
    if m[r, c]:
        return np.array([r, c], np.float64)
    return points_from_mask(m, n_positive=1, n_negative=0)[0][0]


def points_from_mask(
    mask, n_positive: int = 2, n_negative: int = 4, min_separation: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Point prompts derived from a mask.

    Positives are maxima of the distance transform (the deepest pixels inside the mask): the
    deepest first, then further maxima at least ``min_separation`` away and at least half as
    deep. Negatives lie just outside the mask, at the middles of the sides of the mask's box
    grown by a margin (a quarter of the box's shorter side, at least 2 pixels), kept only when they fall
    inside the image and outside the mask.

    Parameters
    ----------
    mask : array-like (Y, X) bool
    n_positive, n_negative : int
        Maximum numbers of positive and negative points.
    min_separation : float, optional
        Minimum distance between positives; default the deepest depth.

    Returns
    -------
    points : numpy.ndarray (P, 2) float64, (row, col)
    labels : numpy.ndarray (P,) int64, 1 positive, 0 negative
        Empty arrays for an empty mask.
    """
    from scipy import ndimage as ndi

    m = np.asarray(mask, bool)
    box = box_from_mask(m)
    if box is None:
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    r0, c0, r1, c1 = box.astype(int)
    crop = np.pad(m[r0 : r1 + 1, c0 : c1 + 1], 1)
    dist = ndi.distance_transform_edt(crop)
    pos = []
    deepest = float(dist.max())
    sep = deepest if min_separation is None else float(min_separation)
    d = dist.copy()
    yy, xx = np.indices(d.shape)
    for _ in range(max(0, n_positive)):
        k = int(np.argmax(d))
        r, c = divmod(k, d.shape[1])
        if d[r, c] <= 0 or (pos and d[r, c] < 0.5 * deepest):
            break
        pos.append((r - 1 + r0, c - 1 + c0))
        d[(yy - r) ** 2 + (xx - c) ** 2 < sep**2] = 0
    neg = []
    if n_negative > 0:
        h, w = m.shape
        mr = mc = max(2, int(round(0.25 * min(r1 - r0 + 1, c1 - c0 + 1))))
        rm, cm = (r0 + r1) // 2, (c0 + c1) // 2
        for r, c in ((r0 - mr, cm), (r1 + mr, cm), (rm, c0 - mc), (rm, c1 + mc)):
            if len(neg) >= n_negative:
                break
            if 0 <= r < h and 0 <= c < w and not m[r, c]:
                neg.append((r, c))
    pts = np.array(pos + neg, np.float64).reshape(-1, 2)
    labels = np.array([1] * len(pos) + [0] * len(neg), np.int64)
    return pts, labels


def mask_stats(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Areas (N,), boxes (N, 4) and centroids (N, 2) of (N, H, W) bool masks (NaN if empty).

    Two passes over the masks (numpy: single-threaded, no thread-pool stalls on busy CPUs).
    """
    n, h, w = masks.shape
    rowcnt = np.count_nonzero(masks, axis=2)  # (N, H)
    colcnt = np.count_nonzero(masks, axis=1)  # (N, W)
    area = rowcnt.sum(1).astype(np.float64)
    rows, cols = rowcnt > 0, colcnt > 0
    boxes = np.stack([rows.argmax(1), cols.argmax(1), h - 1 - rows[:, ::-1].argmax(1),
                      w - 1 - cols[:, ::-1].argmax(1)], 1).astype(np.float64)
    safe = np.maximum(area, 1)
    cents = np.stack([rowcnt @ np.arange(h) / safe, colcnt @ np.arange(w) / safe], 1)
    boxes[area == 0] = np.nan
    cents[area == 0] = np.nan
    return area, boxes, cents


def shift_pixels(x, dr: int, dc: int, fill):
    """Translate a (..., H, W) array or tensor by whole pixels, filling the uncovered border."""
    if dr == 0 and dc == 0:
        return x
    out = torch.full_like(x, fill) if isinstance(x, torch.Tensor) else np.full_like(x, fill)
    h, w = x.shape[-2:]
    if abs(dr) >= h or abs(dc) >= w:
        return out
    sr = slice(max(0, -dr), h - max(0, dr))
    tr = slice(max(0, dr), h - max(0, -dr))
    sc = slice(max(0, -dc), w - max(0, dc))
    tc = slice(max(0, dc), w - max(0, -dc))
    out[..., tr, tc] = x[..., sr, sc]
    return out
