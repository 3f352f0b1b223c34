"""The CLI's streaming slice linker as it was before the one linker of
``napari_sam.automatic.linking`` replaced it (kept verbatim as the reference the new core must
equal for max_gap <= 2).

``link_slices`` computes the rule of :func:`napari_sam.automatic.link_slices`; the two are to
become one streaming implementation in the automatic package.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class LinkPlan:
    """Result of :func:`link_slices`: how to turn each slice's 2D ids into 3D ids.

    ``luts[z]`` maps slice z's 2D ids to 3D ids (0: dropped); ``gap_links`` lists
    ``(z0, i, z1, j, id)``: the slices strictly between z0 and z1 get the intersection of
    mask i of z0 and mask j of z1 (background pixels only); ``scores[id]`` is the mean
    predicted IoU of the object's 2D masks; ``n_objects`` the number of 3D ids.
    """

    luts: list[np.ndarray]
    gap_links: list[tuple[int, int, int, int, int]]
    scores: dict[int, float]
    n_objects: int


def link_slices(
    load: Callable[[int], tuple[np.ndarray, np.ndarray]], n_slices: int, *,
    link_iou: float = 0.25, max_gap: int = 1, min_z_extent: int = 1, fill_gaps: bool = True,
) -> LinkPlan:
    """Link per-slice objects into 3D objects with at most ``max_gap + 2`` slices in memory.

    ``load(z)`` returns slice z's labels (ids 1..n) and predicted IoUs (n + 1,). The rule is
    :func:`napari_sam.automatic.link_slices` (what ``segment_everything`` does on a stack),
    computed in one streaming pass in an order that gives the same result: on each slice z1,
    first the one-to-one matches with slice z1 - 1 (IoU >= ``link_iou``, greedy by decreasing
    IoU), then gap closing from slices z1 - g - 1 for g = 1..``max_gap`` between objects whose
    tracks end and start there; objects spanning fewer than ``min_z_extent`` slices are
    dropped, ids are 1..N in order of first appearance.
    """
    from napari_sam.automatic import match_by_iou

    offsets = [0]
    n_per: list[int] = []
    areas: list[np.ndarray] = []
    has_next: list[np.ndarray] = []
    has_prev: list[np.ndarray] = []
    node_score: list[float] = [float("nan")]
    parent: list[int] = [0]
    window: dict[int, np.ndarray] = {}
    gap_raw: list[tuple[int, int, int, int]] = []

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for z1 in range(n_slices):
        lab, scores = load(z1)
        n1 = int(lab.max()) if lab.size else 0
        n_per.append(n1)
        areas.append(np.bincount(lab.ravel(), minlength=n1 + 1))
        has_next.append(np.zeros(n1 + 1, bool))
        has_prev.append(np.zeros(n1 + 1, bool))
        offsets.append(offsets[-1] + n1)
        parent.extend(range(offsets[z1] + 1, offsets[z1] + n1 + 1))
        node_score.extend(float(scores[i]) if i < len(scores) else float("nan")
                          for i in range(1, n1 + 1))
        window[z1] = lab
        if z1 >= 1:
            z0 = z1 - 1
            pairs = match_by_iou(window[z0], lab, n1, areas[z0], areas[z1], link_iou)
            for i, j in pairs:
                parent[find(offsets[z1] + j)] = find(offsets[z0] + i)
                has_next[z0][i] = True
                has_prev[z1][j] = True
        for g in range(1, max_gap + 1):
            z0 = z1 - g - 1
            if z0 < 0:
                break
            ends = ~has_next[z0]
            starts = ~has_prev[z1]
            ends[0] = starts[0] = False
            pairs = match_by_iou(window[z0], lab, n1, areas[z0], areas[z1], link_iou,
                                 ends, starts)
            for i, j in pairs:
                parent[find(offsets[z1] + j)] = find(offsets[z0] + i)
                has_next[z0][i] = True
                has_prev[z1][j] = True
                gap_raw.append((z0, i, z1, j))
        window.pop(z1 - max_gap - 1, None)

    total = offsets[-1]
    roots = np.array([find(a) for a in range(total + 1)], np.int64)
    zmin = np.full(total + 1, n_slices)
    zmax = np.full(total + 1, -1)
    for z in range(n_slices):
        ids = np.arange(offsets[z] + 1, offsets[z + 1] + 1)
        r = roots[ids[areas[z][1:] > 0]]
        np.minimum.at(zmin, r, z)
        np.maximum.at(zmax, r, z)
    extent = zmax - zmin + 1
    new_id = np.zeros(total + 1, np.int64)
    root_id: dict[int, int] = {}
    for a in range(1, total + 1):  # order of first appearance
        r = int(roots[a])
        if r not in root_id and extent[r] >= min_z_extent and zmax[r] >= 0:
            root_id[r] = len(root_id) + 1
        new_id[a] = root_id.get(r, 0)
    luts = [np.concatenate([[0], new_id[offsets[z] + 1 : offsets[z + 1] + 1]])
            for z in range(n_slices)]
    sums: dict[int, list[float]] = {}
    for a in range(1, total + 1):
        if new_id[a] and math.isfinite(node_score[a]):
            sums.setdefault(int(new_id[a]), []).append(node_score[a])
    scores = {k: float(np.mean(v)) for k, v in sums.items()}
    gap_links = []
    if fill_gaps:
        for z0, i, z1, j in gap_raw:
            oid = int(luts[z0][i])
            if oid:
                gap_links.append((z0, i, z1, j, oid))
    return LinkPlan(luts, gap_links, scores, len(root_id))


def final_slices(plan: LinkPlan, load: Callable[[int], np.ndarray], n: int):
    """Yield the 3D-labelled slices of ``plan``, loading at most a few 2D slices at a time."""
    cache: dict[int, np.ndarray] = {}

    def get(z: int) -> np.ndarray:
        if z not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[z] = load(z)
        return cache[z]

    for z in range(n):
        out = plan.luts[z][get(z)]
        for z0, i, z1, j, oid in plan.gap_links:
            if z0 < z < z1:
                inter = (get(z0) == i) & (get(z1) == j)
                out[inter & (out == 0)] = oid
        yield out
