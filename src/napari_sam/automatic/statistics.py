"""Mask statistics from low-resolution logits: the upsampling geometry of a crop
(:class:`UpsamplingGeometry`, SAM's ``postprocess_masks`` as per-axis interpolation tables),
pixel counts and boxes of the full-resolution masks without upsampling them
(:func:`mask_statistics`), and the stability score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_sam.automatic.boxes import masks_to_boxes


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PyTorch's bilinear interpolation (align_corners=False)."""
    scale = n_in / n_out
    dst = np.arange(n_out)
    src = np.maximum(scale * (dst + 0.5) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = src - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (dst, i0), 1.0 - l1)
    np.add.at(m, (dst, i1), l1)
    return m


@dataclass
class _AxisMap:
    """One axis of the low-res -> full-res upsampling, grouped into classes of output pixels
    that depend on the same low-res support interval."""

    start: np.ndarray  # (A,) support start in low-res pixels
    length: np.ndarray  # (A,) support length
    first: np.ndarray  # (A,) first output pixel of the class
    count: np.ndarray  # (A,) output pixels in the class
    weights: np.ndarray  # (A, MY, ML) float32 per output pixel of the class, per support offset
    n_out: int

    @classmethod
    def build(cls, n_low: int, img_size: int, n_input: int, n_out: int) -> _AxisMap:
        m1 = _interp_matrix(n_low, img_size)[:n_input]
        m2 = np.eye(n_out) if n_input == n_out else _interp_matrix(n_input, n_out)
        comp = m2 @ m1  # (n_out, n_low)
        nz = comp > 0
        s = nz.argmax(1)
        e = n_low - 1 - nz[:, ::-1].argmax(1)
        ln = e - s + 1
        change = np.ones(n_out, bool)
        change[1:] = (s[1:] != s[:-1]) | (ln[1:] != ln[:-1])
        first = np.flatnonzero(change)
        count = np.diff(np.append(first, n_out))
        start, length = s[first], ln[first]
        my, ml = int(count.max()), int(length.max())
        w = np.zeros((len(first), my, ml), np.float32)
        for a, (f, c, st) in enumerate(zip(first, count, start)):  # setup only, O(n_out)
            blk = comp[f : f + c, st : st + ml]
            w[a, :c, : blk.shape[1]] = blk
        return cls(start, length, first, count, w, n_out)


class UpsamplingGeometry:
    """Upsampling geometry of one crop: low-res (L, L) logits -> (H, W) masks, as in
    ``Sam.postprocess_masks`` (bilinear to the model input, crop the padding, bilinear to the
    crop size)."""

    def __init__(self, n_low: int, img_size: int, input_size, out_size, device):
        self.n_low = n_low
        self.img_size = img_size
        self.input_size = tuple(int(v) for v in input_size)
        self.out_size = tuple(int(v) for v in out_size)
        self.y = _AxisMap.build(n_low, img_size, self.input_size[0], self.out_size[0])
        self.x = _AxisMap.build(n_low, img_size, self.input_size[1], self.out_size[1])
        self.device = device
        t = lambda a, dt=torch.int64: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
        ml_y, ml_x = self.y.weights.shape[2], self.x.weights.shape[2]
        self.idx_y = t(np.minimum(self.y.start[:, None] + np.arange(ml_y), n_low - 1))
        self.idx_x = t(np.minimum(self.x.start[:, None] + np.arange(ml_x), n_low - 1))
        self.start_y, self.start_x = t(self.y.start), t(self.x.start)
        self.first_y, self.first_x = t(self.y.first), t(self.x.first)
        self.last_y = t(self.y.first + self.y.count - 1)
        self.last_x = t(self.x.first + self.x.count - 1)
        self.count_y = t(self.y.count)
        self.count_x = t(self.x.count, torch.float32)
        self.w_y, self.w_x = t(self.y.weights, torch.float32), t(self.x.weights, torch.float32)
        self.valid_y = t(
            np.arange(self.y.weights.shape[1])[None] < self.y.count[:, None], torch.bool
        )
        self.valid_x = t(
            np.arange(self.x.weights.shape[1])[None] < self.x.count[:, None], torch.bool
        )

    def upsample(self, logits: torch.Tensor) -> torch.Tensor:
        """(K, L, L) logits -> (K, H, W) float logits, exactly Meta's op sequence."""
        x = logits[:, None].float()
        x = F.interpolate(x, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        x = x[..., : self.input_size[0], : self.input_size[1]]
        x = F.interpolate(x, self.out_size, mode="bilinear", align_corners=False)
        return x[:, 0]


def mask_statistics(
    logits: torch.Tensor, geom: UpsamplingGeometry, thresholds: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel counts above each threshold and the box above ``thresholds[1]``, of the
    full-resolution upsampled logits, computed from the low-resolution logits.

    Parameters
    ----------
    logits : (K, L, L) float tensor
    geom : upsampling geometry of the crop
    thresholds : three increasing floats (low, mask threshold, high)

    Returns
    -------
    counts : (K, 3) int64
        Output pixels ``> t`` for each threshold.
    boxes : (K, 4) int64
        (row0, col0, row1, col1) inclusive of the pixels above the middle threshold;
        (0, 0, 0, 0) for an empty mask.

    How: each output pixel is a convex combination of the low-res logits in its support
    rectangle; output pixels are grouped into classes per axis (same support), so the block
    minimum / maximum over the support decides whole blocks, and only blocks that straddle a
    threshold are evaluated exactly with the composite interpolation weights.
    """
    k = logits.shape[0]
    dev = logits.device
    ts = [float(t) for t in thresholds]
    if k == 0:
        return (
            torch.zeros(0, 3, dtype=torch.int64, device=dev),
            torch.zeros(0, 4, dtype=torch.int64, device=dev),
        )
    g = geom
    # block minima / maxima: rows first (K, A, L), then columns (K, A, B)
    rmin = logits[:, g.idx_y[:, 0], :]
    rmax = rmin
    for p in range(1, g.idx_y.shape[1]):
        r = logits[:, g.idx_y[:, p], :]
        rmin, rmax = torch.minimum(rmin, r), torch.maximum(rmax, r)
    cmin = rmin[:, :, g.idx_x[:, 0]]
    cmax = rmax[:, :, g.idx_x[:, 0]]
    for p in range(1, g.idx_x.shape[1]):
        cmin = torch.minimum(cmin, rmin[:, :, g.idx_x[:, p]])
        cmax = torch.maximum(cmax, rmax[:, :, g.idx_x[:, p]])
    del rmin, rmax

    counts = []
    unsure = torch.zeros_like(cmin, dtype=torch.bool)
    for t in ts:
        sure = cmin > t
        per_row = (sure.float() @ g.count_x).round().long()  # exact: a row has <= W pixels
        counts.append((per_row * g.count_y).sum(1))
        unsure |= (cmin <= t) & (cmax > t)
    counts = torch.stack(counts, 1)  # (K, 3)
    n_unsure = int(unsure.sum())
    if n_unsure * g.w_y.shape[1] * g.w_x.shape[1] * 2 > k * g.y.n_out * g.x.n_out:
        # ragged masks: most blocks straddle a threshold, direct evaluation is cheaper
        del cmin, cmax, unsure
        return _direct_statistics(logits, geom, ts)

    # box from the sure blocks of the middle threshold
    sure0 = cmin > ts[1]
    big = max(g.y.n_out, g.x.n_out) + 1
    rows_any, cols_any = sure0.any(2), sure0.any(1)
    r0 = torch.where(rows_any, g.first_y, big).amin(1)
    r1 = torch.where(rows_any, g.last_y, -1).amax(1)
    c0 = torch.where(cols_any, g.first_x, big).amin(1)
    c1 = torch.where(cols_any, g.last_x, -1).amax(1)
    del sure0

    idx = unsure.nonzero()
    if idx.shape[0]:
        kk, aa, bb = idx[:, 0], idx[:, 1], idx[:, 2]
        bmin = cmin[kk, aa, bb]  # blocks already counted as sure for a threshold are skipped
        rows = g.idx_y[aa]  # (U, MLy)
        cols = g.idx_x[bb]  # (U, MLx)
        patch = logits[kk[:, None, None], rows[:, :, None], cols[:, None, :]]
        vals = torch.bmm(torch.bmm(g.w_y[aa], patch), g.w_x[bb].transpose(1, 2))  # (U, MY, MX)
        valid = g.valid_y[aa][:, :, None] & g.valid_x[bb][:, None, :]
        extra = torch.stack([((vals > t) & valid).sum((1, 2)) * (bmin <= t) for t in ts], 1)
        counts.index_add_(0, kk, extra)
        pos = (vals > ts[1]) & valid
        my, mx = pos.shape[1:]
        prow, pcol = pos.any(2), pos.any(1)
        ry = g.first_y[aa][:, None] + torch.arange(my, device=dev)
        rx = g.first_x[bb][:, None] + torch.arange(mx, device=dev)
        r0 = r0.scatter_reduce(0, kk, torch.where(prow, ry, big).amin(1), "amin")
        r1 = r1.scatter_reduce(0, kk, torch.where(prow, ry, -1).amax(1), "amax")
        c0 = c0.scatter_reduce(0, kk, torch.where(pcol, rx, big).amin(1), "amin")
        c1 = c1.scatter_reduce(0, kk, torch.where(pcol, rx, -1).amax(1), "amax")
    boxes = torch.stack([r0, c0, r1, c1], 1)
    boxes = torch.where((counts[:, 1] > 0)[:, None], boxes, torch.zeros_like(boxes))
    return counts, boxes


def _direct_statistics(
    logits, geom: UpsamplingGeometry, ts
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mask_statistics`` by upsampling to full resolution (in chunks)."""
    chunk = max(1, int(2**24 // max(1, geom.y.n_out * geom.x.n_out)))
    counts, boxes = [], []
    for i in range(0, logits.shape[0], chunk):
        up = geom.upsample(logits[i : i + chunk])
        if up.device.type == "cpu":  # numpy's count_nonzero is ~10x faster than a bool sum
            a = up.numpy()
            cnt = [[np.count_nonzero(m) for m in a > t] for t in ts]
            counts.append(torch.as_tensor(cnt, dtype=torch.int64).T)
        else:
            counts.append(torch.stack([(up > t).sum((1, 2)) for t in ts], 1))
        boxes.append(masks_to_boxes(up > ts[1]))
    return torch.cat(counts), torch.cat(boxes)


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks ``logits > t + offset`` and ``logits > t - offset`` (any shape (..., H, W)).

    The reference definition, on full-resolution logits; :func:`segment_everything` gets the
    same numbers from low-resolution logits with :func:`mask_statistics`.
    """
    inter = (logits > mask_threshold + offset).sum((-1, -2), dtype=torch.int64)
    union = (logits > mask_threshold - offset).sum((-1, -2), dtype=torch.int64)
    return inter.float() / union.float()

