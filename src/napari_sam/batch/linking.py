"""Streaming slice linking of ``auto``: per-slice objects linked into 3D objects with a few
slices in memory (:func:`link_slices`, the one linker of
:mod:`napari_sam.automatic.linking` under the CLI's option names), and the linked slices
written out one at a time (:func:`final_slices`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from napari_sam.automatic import LinkPlan, link_streamed

__all__ = ["LINK_DEFAULTS", "LinkPlan", "final_slices", "link_slices"]

#: Linking of per-slice objects into 3D objects, with segment_everything's defaults (the
#: CLI's ``--link-iou``, ``--max-gap``, ``--min-z-extent``).
LINK_DEFAULTS = {"link_iou": 0.25, "max_gap": 1, "min_z_extent": 1}


def link_slices(
    load: Callable[[int], tuple[np.ndarray, np.ndarray]], n_slices: int, *,
    link_iou: float = 0.25, max_gap: int = 1, min_z_extent: int = 1, fill_gaps: bool = True,
) -> LinkPlan:
    """Link per-slice objects into 3D objects with at most ``max_gap + 2`` slices in memory:
    ``load(z)`` returns slice z's labels (ids 1..n) and predicted IoUs (n + 1,). The rule is
    :func:`napari_sam.automatic.link_slices` (what ``segment_everything`` does on a stack)."""
    return link_streamed(load, n_slices, iou_threshold=link_iou, max_gap=max_gap,
                         min_z_extent=min_z_extent, fill_gaps=fill_gaps)


def final_slices(plan: LinkPlan, load: Callable[[int], np.ndarray], n: int) -> Iterator[np.ndarray]:
    """Yield the 3D-labelled slices of ``plan``, loading at most a few 2D slices at a time."""
    cache: dict[int, np.ndarray] = {}

    def get(z: int) -> np.ndarray:
        if z not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[z] = load(z)
        return cache[z]

    for z in range(n):
        yield plan.slice_labels(z, get)
