"""The claimed stop rule: after propagation, a run yields where another object has the
nearer evidence.

Owns :func:`resolve_claims`: a propagated mask that lies mostly (``claimed_fraction``) on the
mask of another object that is fewer slices from its own annotated slice is dropped with the
rest of its chain (reason "claimed").
"""

from __future__ import annotations

import numpy as np

from napari_sam.volume.chains import Chain
from napari_sam.volume.records import Record

__all__ = ["resolve_claims"]


def resolve_claims(records: dict[tuple[int, int], Record], distance: dict[tuple[int, int], int],
                   chain_of: dict[tuple[int, int], Chain], fraction: float | None) -> None:
    """Cut each propagated chain at the first slice where more than ``fraction``
    of its mask lies on the mask of another object that is fewer slices from its own
    annotated slice (the one with the nearer evidence keeps the place).

    Records are visited in order of distance, so a mask only yields to masks that
    survive themselves; a cut chain loses that slice and all its later ones.

    Parameters
    ----------
    records : dict (object index, slice) -> Record
        Accepted masks; the cut ones are removed in place.
    distance : dict (object index, slice) -> int
        Slices from the annotated slice of the chain that made each record.
    chain_of : dict (object index, slice) -> Chain
        The chain that made each propagated record (annotated slices have none); cut chains
        get reason "claimed" and their ``last`` slice moved back.
    fraction : float or None
        ``claimed_fraction`` of :func:`napari_sam.segment_volume`; None: no rule.
    """
    frac = fraction
    if frac is None:
        return
    by_slice: dict[int, list[tuple[int, int]]] = {}
    for k, z in records:
        by_slice.setdefault(z, []).append((k, z))
    cut: set[int] = set()
    for key in sorted(chain_of, key=lambda kz: (distance[kz], kz[1], kz[0])):
        chain = chain_of[key]
        k, z = key
        if id(chain) in cut:
            del records[key]
            continue
        rec, d = records[key], distance[key]
        inside = rec.logits > -np.inf
        area = np.count_nonzero(inside)
        for other in by_slice[z]:
            if other[0] == k or other not in records or distance[other] >= d:
                continue
            if _overlap(rec, inside, records[other]) > frac * area:
                cut.add(id(chain))
                chain.reason = "claimed"
                chain.last = z - chain.direction
                del records[key]
                break


def _overlap(rec: Record, inside: np.ndarray, o: Record) -> int:
    """Pixels of ``rec``'s mask (``inside``, its window) that ``o``'s mask covers too."""
    hh, ww = rec.logits.shape
    oh, ow = o.logits.shape
    r0, c0 = max(rec.r0, o.r0), max(rec.c0, o.c0)
    r1, c1 = min(rec.r0 + hh, o.r0 + oh), min(rec.c0 + ww, o.c0 + ow)
    if r1 <= r0 or c1 <= c0:
        return 0
    a = inside[r0 - rec.r0 : r1 - rec.r0, c0 - rec.c0 : c1 - rec.c0]
    b = o.logits[r0 - o.r0 : r1 - o.r0, c0 - o.c0 : c1 - o.c0] > -np.inf
    return np.count_nonzero(a & b)
