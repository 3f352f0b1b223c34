"""The label image of a 2D segmentation without overlaps: masks painted by decreasing area so
smaller ones stay on top, mostly covered masks dropped, ids ``1..N`` and their records."""

from __future__ import annotations

import numpy as np

from napari_sam.automatic.results import MaskRecord


def paint_labels(image_size, boxes, segs, areas, ious, stabs, points, crop_boxes, keep_masks,
                 min_visible_fraction):
    """Label image without overlaps: decreasing area, so smaller masks stay on top; masks
    left with less than ``min_visible_fraction`` of their area visible are dropped and the
    rest painted again (their pixels go to the masks underneath)."""
    n = len(segs)
    labels = np.zeros(image_size, np.int32)
    if n == 0:
        return labels, []
    order = np.lexsort((ious, -areas))  # larger first; among equal areas better IoU on top

    def paint(skip):
        labels[:] = 0
        for k, i in enumerate(order, start=1):
            if skip is None or not skip[k - 1]:
                r0, c0, r1, c1 = boxes[i]
                view = labels[r0 : r1 + 1, c0 : c1 + 1]
                view[segs[i]] = k
        return np.bincount(labels.ravel(), minlength=n + 1)

    visible = paint(None)
    if min_visible_fraction > 0:
        covered = visible[1:] < min_visible_fraction * np.asarray(areas, np.float64)[order]
        if covered.any():
            visible = paint(covered)
    alive = [k for k in range(1, n + 1) if visible[k] > 0]
    hidden = [k for k in range(1, n + 1) if visible[k] == 0]
    remap = np.zeros(n + 1, np.int32)
    remap[alive] = np.arange(1, len(alive) + 1, dtype=np.int32)
    labels = remap[labels]
    records = []
    for new_id, k in enumerate(alive + hidden, start=1):
        i = order[k - 1]
        r0, c0, r1, c1 = (int(v) for v in boxes[i])
        records.append(
            MaskRecord(
                id=new_id,
                bbox=(r0, c0, r1 + 1, c1 + 1),
                area=int(areas[i]),
                predicted_iou=float(ious[i]),
                stability_score=float(stabs[i]),
                point_coords=(float(points[i][0]), float(points[i][1])),
                crop_box=crop_boxes[i],
                segmentation=segs[i] if keep_masks else None,
                visible_area=int(visible[k]),
            )
        )
    for r in records[len(alive) :]:
        r.id = 0
    return labels, records

