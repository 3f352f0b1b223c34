"""Small-region clean-up of masks (``min_mask_region_area``): holes filled and islands removed
as Meta's ``remove_small_regions``, on bbox crops, then NMS preferring untouched masks."""

from __future__ import annotations

import numpy as np
import torch

from napari_sam.automatic.boxes import batched_nms


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill holes (``mode="holes"``) or remove islands (``mode="islands"``) smaller than
    ``area_thresh`` in a 2D boolean mask; returns the mask and whether it changed.

    Same rule as Meta's ``remove_small_regions`` (8-connected components; when every island
    is small, the largest is kept), with scipy instead of OpenCV.
    """
    from scipy import ndimage

    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    work = ~mask if holes else mask
    regions, n = ndimage.label(work, structure=np.ones((3, 3), bool))
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < area_thresh) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        return mask | np.isin(regions, small), True
    keep = np.setdiff1d(np.arange(1, n + 1), small)
    if len(keep) == 0:
        keep = [int(np.argmax(sizes)) + 1]
    return np.isin(regions, keep), True


def _clean_mask(mask: np.ndarray, area: int) -> tuple[np.ndarray, bool]:
    a, c1 = remove_small_regions(mask, area, "holes")
    b, c2 = remove_small_regions(a, area, "islands")
    return b, (c1 or c2)



def postprocess_small_regions(boxes, segs, areas, image_size, min_area, nms_thresh, device):
    """Meta's ``postprocess_small_regions``: fill small holes, drop small islands, re-run NMS
    preferring masks that did not change. Works on bbox crops (exactly like on full masks)."""
    h, w = image_size
    new_boxes, new_segs, new_areas, unchanged = [], [], [], []
    for (r0, c0, r1, c1), seg in zip(boxes, segs):  # per mask by nature (connected components)
        pr0, pc0, pr1, pc1 = max(r0 - 1, 0), max(c0 - 1, 0), min(r1 + 2, h), min(c1 + 2, w)
        if (pr0 == 0 and pr1 == h) or (pc0 == 0 and pc1 == w):
            full = np.zeros((h, w), bool)  # the outside of the box may not be connected
            full[r0 : r1 + 1, c0 : c1 + 1] = seg
            cleaned, changed = _clean_mask(full, min_area)
            off = (0, 0)
        else:
            crop = np.zeros((pr1 - pr0, pc1 - pc0), bool)
            crop[r0 - pr0 : r1 + 1 - pr0, c0 - pc0 : c1 + 1 - pc0] = seg
            sides = (pr0 < r0, pr1 > r1 + 1, pc0 < c0, pc1 > c1 + 1)
            cleaned, changed = _clean_crop(crop, min_area, h * w - crop.size, sides)
            off = (pr0, pc0)
        if changed:
            rr = np.flatnonzero(cleaned.any(1))
            cc = np.flatnonzero(cleaned.any(0))
            b = np.array([rr[0] + off[0], cc[0] + off[1], rr[-1] + off[0], cc[-1] + off[1]])
            seg = cleaned[rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1]
            new_boxes.append(b)
            new_areas.append(int(seg.sum()))
        else:
            new_boxes.append(np.array([r0, c0, r1, c1]))
            new_areas.append(int(areas[len(new_areas)]))
        new_segs.append(seg)
        unchanged.append(0.0 if changed else 1.0)
    bx = torch.as_tensor(np.stack(new_boxes), device=device)
    keep = batched_nms(bx, torch.as_tensor(unchanged, device=device), nms_thresh).cpu().numpy()
    return (
        np.stack(new_boxes)[keep],
        [new_segs[i] for i in keep],
        np.asarray(new_areas, np.int64)[keep],
        keep,
    )


def _clean_crop(crop: np.ndarray, min_area: int, outside: int, sides) -> tuple[np.ndarray, bool]:
    """``_clean_mask`` on a bbox crop padded by one pixel on the ``sides`` (top, bottom, left,
    right) where the image allows. The padding ring is background and continues outside the
    crop (``outside`` more pixels, connected when the box spans neither the full width nor the
    full height), so every region touching it is one region of the full image."""
    from scipy import ndimage

    st = np.ones((3, 3), bool)
    regions, n = ndimage.label(~crop, structure=st)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:].astype(np.int64)
    edges = (regions[0], regions[-1], regions[:, 0], regions[:, -1])
    ring = np.concatenate([e for e, padded in zip(edges, sides) if padded] or [np.zeros(0, int)])
    ring = np.unique(ring[ring > 0])
    if len(ring):
        sizes[ring - 1] = sizes[ring - 1].sum() + outside
    small = np.flatnonzero(sizes < min_area) + 1
    changed = len(small) > 0
    mask = crop | np.isin(regions, small) if changed else crop
    out, c2 = remove_small_regions(mask, min_area, "islands")
    return out, changed or c2

