"""The 2D pipeline of segment everything: crops of the image, their candidates (grid and gap
pass), NMS between crops, full-resolution masks of the survivors, the small-region clean-up,
the label image and the rescued masks (:func:`add_rescued`) (:func:`segment_image` for one
image, :func:`segment_2d` for a slice of a stack with an engine shared by the slices)."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam.automatic.boxes import batched_nms
from napari_sam.automatic.crops import Candidates, CropEngine
from napari_sam.automatic.foreground import select_points
from napari_sam.automatic.gaps import gap_pass
from napari_sam.automatic.painting import paint_labels
from napari_sam.automatic.params import AutomaticParams, generate_crop_boxes
from napari_sam.automatic.regions import postprocess_small_regions
from napari_sam.automatic.results import AutomaticResult, new_stats

#: A rescued mask may lie with at most this share of its pixels on other objects (chosen
#: with ``rescue_margin`` on validation nuclei: docs/benchmarks.md, "Rescued masks").
RESCUE_MAX_OVERLAP = 0.2


def segment_image(pred, emb, rgb_fn, size, params: AutomaticParams, fg,
                  keep_masks) -> AutomaticResult:
    """Segment everything on one 2D image embedding ``emb`` of (Y, X) ``size``.

    ``rgb_fn()`` gives the (Y, X, 3) uint8 image the embedding was made from (None: the crops
    and the gap pass's blobs are not available); ``fg`` an optional (Y, X) bool mask of the
    pixels prompted.
    """
    engine = CropEngine(pred, params)
    stats = new_stats()
    stats["fast_decoder"] = engine.fast
    with torch.inference_mode():
        labels, records = segment_2d(engine, emb, rgb_fn, size, fg, stats, keep_masks)
    visible = [r for r in records if r.id > 0]
    stats["objects"] = len(visible)
    return AutomaticResult(labels, visible, stats, hidden=records[len(visible) :])


def segment_2d(engine: CropEngine, emb, rgb_fn, image_size, fg, stats, keep_masks=True):
    """One 2D image: crops -> candidates -> crop NMS -> full-res masks -> labels + records.

    The masks of the user's thresholds make the labels; then masks within ``rescue_margin``
    of those thresholds are painted, with new ids, where they lie on pixels no mask covers
    (:func:`add_rescued`). Returns the (Y, X) int32 labels and the
    :class:`~napari_sam.automatic.MaskRecord` list of
    :func:`~napari_sam.automatic.painting.paint_labels` (visible masks first, then hidden
    ones with id 0); ``stats`` is updated in place.
    """
    p = engine.p
    crop_boxes, layer_idxs = generate_crop_boxes(image_size, p.crop_n_layers, p.crop_overlap_ratio)
    embs = _encode_crops(engine.pred, emb, rgb_fn, crop_boxes)
    found = _crop_candidates(engine, embs, crop_boxes, layer_idxs, image_size, fg, stats, rgb_fn)
    if found is None:
        return np.zeros(image_size, np.int32), []
    cand, crop_idx = found
    labels, records = _paint(engine, embs, crop_boxes, cand.take(cand.strict),
                             crop_idx[cand.strict], image_size, keep_masks, stats)
    rescue = cand.lenient & ~cand.strict
    if p.rescue_margin > 0 and bool(rescue.any()):
        more = _paint(engine, embs, crop_boxes, cand.take(cand.lenient), crop_idx[cand.lenient],
                      image_size, keep_masks, None)
        labels, records, n = add_rescued(labels, records, *more)
        stats["rescued"] = stats.get("rescued", 0) + n
    return labels, records


def add_rescued(labels: np.ndarray, records: list, more_labels: np.ndarray, more: list,
                max_overlap: float = RESCUE_MAX_OVERLAP):
    """Add the objects of ``more_labels`` (the lenient masks' own label image) that lie at
    most ``max_overlap`` of their pixels on objects of ``labels``, on the pixels no object
    covers, with new ids after the others.

    Returns the new labels (a copy), records (visible ones first: the old, then the rescued,
    then the hidden) and the number of rescued objects."""
    labels = labels.copy()
    visible = [r for r in records if r.id > 0]
    hidden = [r for r in records if r.id == 0]
    next_id = int(labels.max()) + 1
    added = []
    for r in (r for r in more if r.id > 0):
        r0, c0, r1, c1 = r.bbox
        mine = more_labels[r0:r1, c0:c1] == r.id
        under = labels[r0:r1, c0:c1]
        if not mine.any() or (under[mine] > 0).mean() > max_overlap:
            continue
        free = mine & (under == 0)
        under[free] = next_id
        r.id, r.visible_area = next_id, int(free.sum())
        added.append(r)
        next_id += 1
    return labels, visible + added + hidden, len(added)


def _paint(engine: CropEngine, embs, crop_boxes, cand: Candidates, crop_idx, image_size,
           keep_masks, stats):
    """Crop NMS, full-resolution masks, small-region clean-up and the label image of one set
    of candidates (``stats`` updated unless None)."""
    p = engine.p
    if len(crop_boxes) > 1:
        areas = torch.as_tensor(
            [(b[2] - b[0]) * (b[3] - b[1]) for b in crop_boxes], device=engine.pred.device
        )
        keep = batched_nms(cand.boxes, 1.0 / areas[crop_idx], p.crop_nms_thresh)
        cand, crop_idx = cand.take(keep), crop_idx[keep]
    if stats is not None:
        stats["after_crop_nms"] += len(cand)

    boxes = cand.boxes.cpu().numpy()
    owners = crop_idx.cpu().numpy()
    segs = _bbox_masks(engine, embs, crop_boxes, cand, boxes, owners)
    areas = cand.area.cpu().numpy().astype(np.int64)
    ious = cand.iou.float().cpu().numpy()
    stabs = cand.stability.float().cpu().numpy()
    points = cand.points.cpu().numpy()

    if p.min_mask_region_area > 0 and len(segs):
        boxes, segs, areas, order = postprocess_small_regions(
            boxes,
            segs,
            areas,
            image_size,
            p.min_mask_region_area,
            max(p.box_nms_thresh, p.crop_nms_thresh),
            engine.pred.device,
        )
        ious, stabs, points, owners = ious[order], stabs[order], points[order], owners[order]

    return paint_labels(
        image_size,
        boxes,
        segs,
        areas,
        ious,
        stabs,
        points,
        [tuple(int(v) for v in crop_boxes[o]) for o in owners],
        keep_masks,
        p.min_visible_fraction,
    )


def _encode_crops(pred, emb, rgb_fn, crop_boxes) -> dict:
    """Embeddings by crop index: ``emb`` for crop 0 (the whole image), the other crops
    encoded from ``rgb_fn()`` in batches of up to 4 crops of equal size."""
    embs = {0: emb}
    if len(crop_boxes) == 1:
        return embs
    rgb = rgb_fn()
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, (r0, c0, r1, c1) in enumerate(crop_boxes[1:], start=1):
        by_size.setdefault((r1 - r0, c1 - c0), []).append(i)
    for idxs in by_size.values():
        for j in range(0, len(idxs), 4):
            grp = idxs[j : j + 4]
            crops = [
                np.ascontiguousarray(rgb[b[0] : b[2], b[1] : b[3]])
                for b in (crop_boxes[i] for i in grp)
            ]
            for i, e in zip(grp, pred.encode_rgb(crops)):
                embs[i] = e
    return embs


def _crop_candidates(engine: CropEngine, embs, crop_boxes, layer_idxs, image_size, fg, stats,
                     rgb_fn):
    """The candidates of every crop (the gap pass on the whole image) and the index of the
    crop each came from, or None when no crop has a grid point on the foreground."""
    p = engine.p
    grids = p.grids(image_size)
    parts, owner = [], []
    for ci, (box, layer) in enumerate(zip(crop_boxes, layer_idxs)):
        ch, cw = box[2] - box[0], box[3] - box[1]
        pts = grids[layer] * np.array([ch, cw], np.float64)
        pts = select_points(pts, box, fg)
        if len(pts) == 0:
            continue
        cand = engine.process_crop(embs[ci], box, image_size, pts, stats)
        if ci == 0 and p.fill_gaps:
            cand = gap_pass(engine, embs[0], cand, image_size, fg, len(grids[0]), stats, rgb_fn)
        stats["after_nms"] += len(cand)
        parts.append(cand)
        owner.append(torch.full((len(cand),), ci, dtype=torch.int64, device=engine.pred.device))
    if not parts:
        return None
    return Candidates.cat(parts), torch.cat(owner)


def _bbox_masks(engine: CropEngine, embs, crop_boxes, cand: Candidates, boxes: np.ndarray,
                owners: np.ndarray) -> list[np.ndarray]:
    """Full-resolution boolean masks of the candidates, each cropped to its inclusive
    (row0, col0, row1, col1) image box in ``boxes``, upsampled 16 at a time per crop."""
    segs: list[np.ndarray | None] = [None] * len(cand)
    for ci in np.unique(owners):
        geom = engine.geometry(embs[int(ci)])
        rows = np.flatnonzero(owners == ci)
        r_off, c_off = crop_boxes[int(ci)][:2]
        for j in range(0, len(rows), 16):
            sel = rows[j : j + 16]
            up = geom.upsample(cand.logits[torch.as_tensor(sel, device=engine.pred.device)])
            m = (up > engine.threshold).cpu().numpy()
            for k, i in enumerate(sel):  # copy each mask's bbox (output formatting)
                r0, c0, r1, c1 = boxes[i] - np.array([r_off, c_off, r_off, c_off])
                segs[i] = m[k, r0 : r1 + 1, c0 : c1 + 1].copy()
    return segs
