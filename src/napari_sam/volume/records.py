"""Records of accepted masks and their composition into the label stack.

Owns :class:`Record` (an object's full-resolution logits on one slice, cropped to its mask's
box), :func:`compose_labels` (one label per pixel from overlapping records) and
:func:`label_dtype`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Record", "compose_labels", "label_dtype"]


@dataclass
class Record:
    """An object's full-resolution logits on one slice, cropped to the mask's box."""

    r0: int
    c0: int
    logits: np.ndarray  # (h, w) float32, -inf outside the mask
    score: float


def label_dtype(max_id: int) -> np.dtype:
    """The smallest unsigned integer dtype that holds ``max_id``."""
    for dt in (np.uint8, np.uint16, np.uint32, np.uint64):
        if max_id <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise ValueError(f"object id {max_id} does not fit in uint64")


def compose_labels(records: dict[tuple[int, int], Record], distance: dict[tuple[int, int], int],
                   ids: list[int], shape: tuple[int, int, int]) -> np.ndarray:
    """The label stack from the accepted masks.

    Where masks overlap, the pixel goes to the mask fewer slices from its annotated slice,
    then to the highest logit, then to the higher predicted IoU, then to the smaller id.

    Parameters
    ----------
    records : dict (object index, slice) -> Record
    distance : dict (object index, slice) -> int
        Slices from the annotated slice (0 where missing).
    ids : list of int
        Label value of each object index.
    shape : (int, int, int)
        (Z, Y, X) of the stack.

    Returns
    -------
    numpy.ndarray (Z, Y, X)
        The smallest unsigned dtype that holds ``max(ids)``.
    """
    n_slices, h, w = shape
    labels = np.zeros((n_slices, h, w), label_dtype(max(ids)))
    by_slice: dict[int, list[tuple[int, Record]]] = {}
    for (k, z), rec in records.items():
        by_slice.setdefault(z, []).append((k, rec))
    for z, recs in by_slice.items():
        best_d = np.full((h, w), np.iinfo(np.int32).max, np.int32)
        best = np.full((h, w), -np.inf, np.float32)
        best_score = np.full((h, w), -np.inf, np.float32)
        out = labels[z]
        for k, rec in sorted(recs, key=lambda t: t[0]):  # by object id, not arrival
            hh, ww = rec.logits.shape
            win = (slice(rec.r0, rec.r0 + hh), slice(rec.c0, rec.c0 + ww))
            cur_d, cur, cur_s = best_d[win], best[win], best_score[win]
            d = distance.get((k, z), 0)
            same = (d == cur_d) & ((rec.logits > cur)
                                   | ((rec.logits == cur) & (rec.score > cur_s)))
            better = ((d < cur_d) | same) & (rec.logits > -np.inf)
            cur_d[better] = d
            cur[better] = rec.logits[better]
            cur_s[better] = rec.score
            out[win][better] = ids[k]
    return labels
