"""3D linking of per-slice 2D labels: one-to-one matching by IoU between two slices
(:func:`match_by_iou`), the streaming linker fed one slice at a time (:class:`SliceLinker`,
whose :class:`LinkPlan` says how to relabel every slice) and the in-memory wrapper over it
(:func:`link_slices`); :func:`link_streamed` runs the linker over slices loaded one at a
time; :func:`split_at_necks` cuts linked objects where their area along z narrows to a neck
(objects stacked along z, chained by the linking; done before propagation).

The rule. Objects on consecutive slices are matched one-to-one, greedily by decreasing IoU,
when their IoU is at least ``iou_threshold``. Gap closing: an object whose track ends on slice
z0 is matched the same way to one whose track starts on slice z1 = z0 + g + 1, for g = 1 ..
``max_gap`` (in that order), and the slices in between get the intersection of the two masks
on their background pixels. Objects spanning fewer than ``min_z_extent`` slices are dropped;
the others get ids ``1..N`` in order of first appearance (first slice, then 2D id).

Streaming computes it in one pass: on each new slice z1, first the matches with slice z1 - 1,
then the gap closing from slices z1 - g - 1 for g = 1 .. ``max_gap``. Every link attaches a
track start of slice z1 to a track of an earlier slice, so the links, and hence the objects,
are those of matching all consecutive pairs first and then each gap length in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_sam.automatic.params import check_int


def match_by_iou(
    a: np.ndarray, b: np.ndarray, nb: int, area_a: np.ndarray, area_b: np.ndarray,
    iou_threshold: float, cand_a: np.ndarray | None = None, cand_b: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """One-to-one matches between the objects of two label slices, greedy by decreasing IoU.

    Parameters
    ----------
    a, b : (Y, X) integer arrays
        Label slices (0 is background); ``a`` holds ids ``1..na``, ``b`` ids ``1..nb``.
    nb : int
        Largest id in ``b``.
    area_a, area_b : (na + 1,), (nb + 1,) int arrays
        Pixel count of each id (``np.bincount``).
    iou_threshold : float
        Pairs with a lower IoU are never matched.
    cand_a, cand_b : (na + 1,), (nb + 1,) bool arrays, optional
        Only ids marked True take part (e.g. track ends and starts when closing gaps).

    Returns
    -------
    list of (int, int)
        ``(id in a, id in b)`` pairs, best IoU first; each id appears at most once.
    """
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    both = (a > 0) & (b > 0)
    if cand_a is not None:
        both &= cand_a[a] & cand_b[b]
    if not both.any():
        return []
    key = a[both].astype(np.int64) * (nb + 1) + b[both]
    uk, inter = np.unique(key, return_counts=True)
    ia, ib = uk // (nb + 1), uk % (nb + 1)
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    order = np.argsort(-iou, kind="stable")
    used_a: set[int] = set()
    used_b: set[int] = set()
    out = []
    for k in order:
        if iou[k] < iou_threshold:
            break
        if ia[k] in used_a or ib[k] in used_b:
            continue
        used_a.add(ia[k])
        used_b.add(ib[k])
        out.append((int(ia[k]), int(ib[k])))
    return out


@dataclass
class LinkPlan:
    """How to turn the 2D label slices fed to a :class:`SliceLinker` into 3D labels.

    Attributes
    ----------
    luts : list of (n_z + 1,) int64 arrays
        ``luts[z]`` maps slice z's 2D ids ``0..n_z`` to 3D ids (0: background or dropped).
    gap_links : list of (z0, i, z1, j, id)
        Closed gaps of kept objects, in painting order (by gap length, then z0): the slices
        strictly between z0 and z1 get 3D id ``id`` on the background pixels of the
        intersection of mask i of slice z0 and mask j of slice z1 (empty without
        ``fill_gaps``).
    scores : dict
        3D id -> mean of the finite predicted IoUs of its 2D masks (ids without any absent).
    n_objects : int
        Number of 3D ids (they are ``1..n_objects``).
    """

    luts: list[np.ndarray]
    gap_links: list[tuple[int, int, int, int, int]]
    scores: dict[int, float]
    n_objects: int

    def slice_labels(self, z: int, load) -> np.ndarray:
        """The 3D-labelled slice z (Y, X) int64; ``load(z)`` returns the 2D label slice z
        that was fed to the linker (slices z0 and z1 of the gaps around z are loaded too)."""
        out = self.luts[z][load(z)]
        for z0, i, z1, j, oid in self.gap_links:
            if z0 < z < z1:
                inter = (load(z0) == i) & (load(z1) == j)
                out[inter & (out == 0)] = oid
        return out


class SliceLinker:
    """Link 2D label slices into 3D objects in one streaming pass (the rule of the module
    docstring), holding at most ``max_gap + 1`` label slices.

    >>> linker = SliceLinker(iou_threshold=0.25, max_gap=1)
    >>> for z in range(n):
    ...     linker.add(labels_2d(z), predicted_ious(z))   # (Y, X) ints, (n_z + 1,) floats
    >>> plan = linker.plan(min_z_extent=2)                 # LinkPlan
    >>> out = [plan.slice_labels(z, labels_2d) for z in range(n)]

    Apart from the window of label slices it keeps a few numbers per 2D object (area,
    whether its track continues, its score, its track).
    """

    def __init__(self, *, iou_threshold: float = 0.25, max_gap: int = 1):
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
        self.iou_threshold = iou_threshold
        self.max_gap = check_int("max_gap", max_gap, 0)
        # nodes are 2D objects numbered across slices: node offsets[z] + i is id i of slice z
        self._offsets = [0]
        self._areas: list[np.ndarray] = []  # per slice, (n_z + 1,) pixels per 2D id
        self._has_next: list[np.ndarray] = []
        self._has_prev: list[np.ndarray] = []
        self._score: list[float] = [float("nan")]
        self._parent: list[int] = [0]  # union-find forest over nodes; a root is a track start
        self._window: dict[int, np.ndarray] = {}
        self._gaps: list[tuple[int, int, int, int]] = []

    @property
    def n_slices(self) -> int:
        """Slices added so far."""
        return len(self._areas)

    def _find(self, x: int) -> int:
        parent = self._parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def add(self, labels: np.ndarray, scores=None) -> None:
        """Feed the next slice: (Y, X) integer labels (ids ``1..n``, 0 background) and,
        optionally, each id's predicted IoU (``scores[i]`` for id i; missing ones are nan)."""
        lab = np.asarray(labels)
        z1 = self.n_slices
        n1 = int(lab.max()) if lab.size else 0
        self._areas.append(np.bincount(lab.ravel(), minlength=n1 + 1))
        self._has_next.append(np.zeros(n1 + 1, bool))
        self._has_prev.append(np.zeros(n1 + 1, bool))
        start = self._offsets[-1]
        self._offsets.append(start + n1)
        self._parent.extend(range(start + 1, start + n1 + 1))
        scores = () if scores is None else scores
        self._score.extend(float(scores[i]) if i < len(scores) else float("nan")
                           for i in range(1, n1 + 1))
        self._window[z1] = lab
        if z1 >= 1:
            self._link(z1 - 1, z1, self._match(z1 - 1, z1))
        for g in range(1, self.max_gap + 1):
            z0 = z1 - g - 1
            if z0 < 0:
                break
            ends = ~self._has_next[z0]
            starts = ~self._has_prev[z1]
            ends[0] = starts[0] = False
            pairs = self._match(z0, z1, ends, starts)
            self._link(z0, z1, pairs)
            self._gaps.extend((z0, i, z1, j) for i, j in pairs)
        self._window.pop(z1 - self.max_gap - 1, None)

    def _match(self, z0, z1, ends=None, starts=None) -> list[tuple[int, int]]:
        return match_by_iou(self._window[z0], self._window[z1], len(self._areas[z1]) - 1,
                            self._areas[z0], self._areas[z1], self.iou_threshold, ends, starts)

    def _link(self, z0, z1, pairs) -> None:
        for i, j in pairs:
            self._parent[self._find(self._offsets[z1] + j)] = self._find(self._offsets[z0] + i)
            self._has_next[z0][i] = True
            self._has_prev[z1][j] = True

    def plan(self, *, min_z_extent: int = 1, fill_gaps: bool = True) -> LinkPlan:
        """The 3D ids of the slices added so far: objects spanning fewer than
        ``min_z_extent`` slices dropped, ids ``1..N`` by first appearance."""
        min_z_extent = check_int("min_z_extent", min_z_extent, 1)
        new_id, n_objects = self._object_ids(min_z_extent)
        offsets = self._offsets
        luts = [np.concatenate([[0], new_id[offsets[z] + 1 : offsets[z + 1] + 1]])
                for z in range(self.n_slices)]
        sums: dict[int, list[float]] = {}
        for a in range(1, offsets[-1] + 1):
            if new_id[a] and math.isfinite(self._score[a]):
                sums.setdefault(int(new_id[a]), []).append(self._score[a])
        scores = {k: float(np.mean(v)) for k, v in sums.items()}
        gap_links = []
        if fill_gaps:
            for z0, i, z1, j in sorted(self._gaps, key=lambda t: (t[2] - t[0], t[0])):
                oid = int(luts[z0][i])
                if oid:
                    gap_links.append((z0, i, z1, j, oid))
        return LinkPlan(luts, gap_links, scores, n_objects)

    def _object_ids(self, min_z_extent: int) -> tuple[np.ndarray, int]:
        """(nodes + 1,) int64 3D id of every node (0: dropped) and the number of ids."""
        nz = self.n_slices
        total = self._offsets[-1]
        roots = np.array([self._find(a) for a in range(total + 1)], np.int64)
        zmin = np.full(total + 1, nz)
        zmax = np.full(total + 1, -1)
        for z in range(nz):
            ids = np.arange(self._offsets[z] + 1, self._offsets[z + 1] + 1)
            r = roots[ids[self._areas[z][1:] > 0]]
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
        return new_id, len(root_id)


def link_streamed(
    load, n_slices: int, *, iou_threshold: float = 0.25, max_gap: int = 1,
    min_z_extent: int = 1, fill_gaps: bool = True,
) -> LinkPlan:
    """Link slices ``0..n_slices - 1`` one at a time: ``load(z)`` returns slice z's (Y, X)
    labels and its ids' predicted IoUs (``(n_z + 1,)`` floats, or None), each called once, in
    order. At most ``max_gap + 2`` label slices are in memory. See :class:`SliceLinker`."""
    linker = SliceLinker(iou_threshold=iou_threshold, max_gap=max_gap)
    min_z_extent = check_int("min_z_extent", min_z_extent, 1)
    for z in range(n_slices):
        linker.add(*load(z))
    return linker.plan(min_z_extent=min_z_extent, fill_gaps=fill_gaps)


def link_slices(
    slice_labels: np.ndarray,
    *,
    iou_threshold: float = 0.25,
    max_gap: int = 1,
    min_z_extent: int = 1,
    fill_gaps: bool = True,
) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Link per-slice 2D labels (Z, Y, X) into 3D objects by overlap.

    Objects on consecutive slices are matched one-to-one (greedily by decreasing IoU) when
    their IoU is at least ``iou_threshold``. Gap closing: an object whose track ends on slice
    z is matched to one whose track starts on slice z + g + 1 (g <= ``max_gap`` slices
    without a match in between), and with ``fill_gaps`` the missing slices get the
    intersection of the two masks (on background pixels only). Objects spanning fewer than
    ``min_z_extent`` slices are dropped. The in-memory form of :class:`SliceLinker`.

    Returns
    -------
    labels : (Z, Y, X) int32
        3D objects ``1..N`` (ordered by first slice, then 2D id).
    mapping : dict
        (z, 2D id) -> 3D id (0 when dropped).
    """
    lab = np.asarray(slice_labels)
    if lab.ndim != 3:
        raise ValueError(f"slice_labels must be (Z, Y, X), got shape {lab.shape}")
    plan = link_streamed(lambda z: (lab[z], None), lab.shape[0], iou_threshold=iou_threshold,
                         max_gap=max_gap, min_z_extent=min_z_extent, fill_gaps=fill_gaps)
    out = np.zeros(lab.shape, np.int32)
    mapping = {}
    for z, lut in enumerate(plan.luts):
        out[z] = plan.slice_labels(z, lambda k: lab[k])
        mapping.update(((z, i), int(lut[i])) for i in range(1, len(lut)))
    return out, mapping


#: A linked object is split at a slice whose area is at most this share of the largest area
#: on each side of it (:func:`split_at_necks`).
NECK_RATIO = 0.5
#: ... and at least this share: a smaller one is a slice where the 2D step missed the object
#: (a gap the linking closed), not the narrowing between two objects.
NECK_FLOOR = 0.2


def _neck_cuts(area: np.ndarray, offset: int, ratio: float, floor: float) -> list[int]:
    """Slices (``offset`` + index) after which ``area`` (an object's area per slice, its
    z-range) is cut: the deepest neck, then the necks of each side, recursively."""
    best, cut = None, None
    for k in range(1, len(area) - 1):
        low = min(area[:k].max(), area[k + 1:].max())
        if (floor * low <= area[k] <= ratio * low and area[k] <= area[k - 1]
                and area[k] <= area[k + 1]) and (best is None or area[k] / low < best):
            best, cut = area[k] / low, k
    if cut is None:
        return []
    return (_neck_cuts(area[:cut + 1], offset, ratio, floor) + [offset + cut]
            + _neck_cuts(area[cut + 1:], offset + cut + 1, ratio, floor))


def split_at_necks(labels: np.ndarray, *, ratio: float = NECK_RATIO,
                   floor: float = NECK_FLOOR) -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    """Split linked 3D objects where their area along z narrows to a neck: two objects
    stacked along z (nuclei above one another in an anisotropic stack) that the linking
    chained into one.

    A neck is a slice whose area is a local minimum, at most ``ratio`` and at least
    ``floor`` times the largest area on each side of it; the object is cut after the
    deepest neck, and each side again. Convex objects (nuclei, cells) grow and shrink once
    along z, so their chains are cut only where another object begins; a slice the 2D step
    missed (area below ``floor`` of the sides) is no neck.

    Parameters
    ----------
    labels : (Z, Y, X) int array
        Linked objects (0 background; ids need not be contiguous).
    ratio, floor : float
        See above.

    Returns
    -------
    labels : (Z, Y, X) array
        ``labels`` itself when nothing is split; else an int32 copy (int64 for ids beyond
        int32) with the slices after each neck under new ids ``max + 1, max + 2, ...``.
    moved : dict
        (z, old id) -> new id, for every slice of an object that moved to a new id.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.shape[0] < 3 or not labels.any():
        return labels, {}
    planes = [np.unique(plane, return_counts=True) for plane in labels]  # one pass
    ids = np.unique(np.concatenate([present for present, _ in planes]))
    ids = ids[ids > 0]
    area = np.zeros((labels.shape[0], len(ids)))
    for z, (present, counts) in enumerate(planes):
        keep = present > 0
        area[z, np.searchsorted(ids, present[keep])] = counts[keep]
    moved: dict[tuple[int, int], int] = {}
    new = int(ids[-1])
    for k, oid in enumerate(ids.tolist()):
        zs = np.flatnonzero(area[:, k])
        if len(zs) < 3:
            continue
        cuts = _neck_cuts(area[zs[0]:zs[-1] + 1, k], int(zs[0]), ratio, floor)
        for lo, hi in zip(cuts, [*cuts[1:], int(zs[-1])]):
            new += 1
            moved.update(((z, oid), new) for z in range(lo + 1, hi + 1) if area[z, k])
    if not moved:
        return labels, {}
    out = labels.astype(np.int32 if new <= np.iinfo(np.int32).max else np.int64)
    for (z, oid), nid in moved.items():
        out[z][labels[z] == oid] = nid
    return out, moved
