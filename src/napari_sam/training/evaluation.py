"""Prompted-segmentation quality of a model on items through the Predictor (:func:`evaluate`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data import TrainItem
from .prompts import central_point, correction_clicks, masks_to_boxes

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(
    model,
    items: Sequence[TrainItem],
    *,
    device="cpu",
    max_objects: int | None = None,
    n_clicks: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Prompted-segmentation quality through the :class:`Predictor` on original images.

    Per object: one positive click at its most central pixel (3 candidates, the one with the
    highest predicted IoU is kept), its tight box, and optionally ``n_clicks`` correction
    clicks after the first click (farthest point of the larger error region, previous logits
    as mask prompt, one mask).

    Returns
    -------
    dict with "point_iou", "box_iou", "val_iou" (their mean) and, with ``n_clicks``,
    "click_iou" (list after each click) and arrays "point_ious", "box_ious", "object_ious"
    (per object, the mean of its point and box IoU: what "val_iou" averages), "click_ious"
    (objects x clicks) for detailed analysis. "n_objects" is the number of objects measured:
    when it is 0 (items without labelled objects) the IoUs are nan and the lists empty
    (:func:`napari_sam.training.run.run_training` then says so and records no IoU).
    """
    from napari_sam.predictor import Predictor

    was_training = model.training
    pred = Predictor(model, device=device, precision="fp32")
    rng = np.random.default_rng(seed)
    p_ious, b_ious, c_ious = [], [], []
    budget = max_objects
    try:
        for item in items:
            ids = item.meta.get("eval_ids")
            ids = np.unique(item.labels[item.labels > 0]) if ids is None else np.asarray(ids)
            if budget is not None:
                if budget <= 0:
                    break
                ids = ids[:budget]
                budget -= len(ids)
            if len(ids) == 0:
                continue
            emb = pred.set_image(item.image, contrast_limits=item.contrast_limits, tiling=None)
            gt = torch.from_numpy(item.labels[None] == ids[:, None, None])  # (K, H, W)
            pts = np.array([central_point(g) for g in gt.numpy()], np.float32)[:, None]  # (K,1,2)
            lab = np.ones((len(ids), 1), np.int64)
            out = pred.predict_batch(emb, points=pts, labels=lab, multimask=True)
            best = out.scores.argmax(1)
            rows = torch.arange(len(ids))
            masks = out.masks[rows, best]
            p_ious.append(_iou(masks, gt))
            boxes = masks_to_boxes(gt)[:, [1, 0, 3, 2]]  # (x0,y0,x1,y1) -> (r0,c0,r1,c1)
            outb = pred.predict_batch(emb, boxes=boxes, multimask=False)
            b_ious.append(_iou(outb.masks[:, 0], gt))
            if n_clicks:
                logits = out.logits[rows, best][:, None]
                cur = masks
                per_click = []
                for _ in range(n_clicks):
                    xy, lb = correction_clicks(cur, gt, rng, p_farthest=1.0)
                    # points in (row, col) for the predictor; padding points keep label -1
                    pts = np.concatenate([pts, xy[:, None, ::-1]], 1)
                    lab = np.concatenate([lab, lb[:, None]], 1)
                    o = pred.predict_batch(emb, points=pts, labels=lab, mask_inputs=logits,
                                           multimask=False)
                    logits, cur = o.logits, o.masks[:, 0]
                    per_click.append(_iou(cur, gt))
                c_ious.append(np.stack(per_click, 1))
    finally:
        model.train(was_training)
    p = np.concatenate(p_ious) if p_ious else np.zeros(0)
    b = np.concatenate(b_ious) if b_ious else np.zeros(0)
    res: dict[str, Any] = {
        "n_objects": int(len(p)),
        "point_iou": float(p.mean()) if len(p) else float("nan"),
        "box_iou": float(b.mean()) if len(b) else float("nan"),
        "point_ious": p,
        "box_ious": b,
        "object_ious": (p + b) / 2,
    }
    res["val_iou"] = (res["point_iou"] + res["box_iou"]) / 2
    if n_clicks:
        c = np.concatenate(c_ious) if c_ious else np.zeros((0, n_clicks))
        res["click_ious"] = c
        res["click_iou"] = [float(v) for v in c.mean(0)] if len(c) else []
    return res


def _iou(masks: Tensor, gt: Tensor) -> np.ndarray:
    m = masks.reshape(len(masks), -1).cpu()
    g = gt.reshape(len(gt), -1)
    inter = (m & g).sum(1).double()
    union = (m | g).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union)).numpy()

