"""Boxes of masks and non-maximum suppression on tensors: :func:`masks_to_boxes`,
:func:`box_iou` and :func:`batched_nms` (torchvision's rule, without torchvision)."""

from __future__ import annotations

import torch


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Boxes around boolean masks (..., H, W) -> (..., 4) (row0, col0, row1, col1), inclusive.

    An empty mask gets (0, 0, 0, 0), like Meta's ``batched_mask_to_box``.
    """
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*masks.shape[:-2], 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(-1)
    cols = masks.any(-2)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    r0 = torch.where(rows, ar_h, h).amin(-1)
    r1 = torch.where(rows, ar_h, -1).amax(-1)
    c0 = torch.where(cols, ar_w, w).amin(-1)
    c1 = torch.where(cols, ar_w, -1).amax(-1)
    out = torch.stack([r0, c0, r1, c1], -1)
    empty = ~rows.any(-1)
    return torch.where(empty[..., None], torch.zeros_like(out), out)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix (Na, Nb) of boxes (row0, col0, row1, col1) with torchvision's area rule.

    Areas are ``(row1 - row0) * (col1 - col0)`` (no +1), exactly what Meta's generator feeds
    torchvision's NMS; a zero union gives NaN, which suppresses nothing.
    """
    a = a.float()
    b = b.float()
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def batched_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    categories: torch.Tensor | None = None,
    block: int = 2048,
) -> torch.Tensor:
    """Greedy non-maximum suppression on tensors; indices kept, by decreasing score.

    Same result as ``torchvision.ops.batched_nms``: boxes are visited by decreasing score
    (ties in index order) and a box is dropped when its IoU with an already kept box of the
    same category is greater than ``iou_threshold``.

    The greedy recursion is solved as a fixed point without a Python loop over boxes: with
    ``S[j, i]`` = "higher-ranked box j would suppress box i", ``keep = ~any_j(keep[j] & S[j, i])``
    has exactly one solution (the greedy one), reached by iterating from ``keep = all``; the
    number of iterations is the length of the longest suppression chain (a few in practice).
    Boxes are processed in blocks of ``block`` by rank to bound memory.
    """
    n = boxes.shape[0]
    dev = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    order = torch.sort(scores, descending=True, stable=True).indices
    b = boxes[order].float()
    cat = None if categories is None else categories.to(dev)[order]
    keep = torch.ones(n, dtype=torch.bool, device=dev)
    for s in range(0, n, block):
        e = min(s + block, n)
        blk = b[s:e]
        if s > 0:  # suppression by already decided higher-ranked boxes
            sup = box_iou(b[:s][keep[:s]], blk) > iou_threshold
            if cat is not None:
                sup &= cat[:s][keep[:s]][:, None] == cat[s:e][None, :]
            keep[s:e] &= ~sup.any(0)
        m = box_iou(blk, blk) > iou_threshold
        if cat is not None:
            m &= cat[s:e][:, None] == cat[s:e][None, :]
        m = torch.triu(m, diagonal=1)
        alive = keep[s:e].clone()
        cur = alive.clone()
        while True:
            new = alive & ~(m & cur[:, None]).any(0)
            if torch.equal(new, cur):
                break
            cur = new
        keep[s:e] = cur
    return order[keep]

