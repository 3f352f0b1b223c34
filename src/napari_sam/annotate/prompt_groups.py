"""Group the prompts drawn on a stack into objects (points and boxes -> objects by slice).

Rules (documented in docs/gui.md):

- every box is one object on its slice; points on that slice inside the box belong to it;
- the other points form one "point object" over all slices (annotating it on several slices
  helps propagation fill the gap between them);
- on a slice where the point object has only negative points, they go to the box they are
  closest to (a negative click just outside a box is a common correction); with no box on
  that slice they are ignored, since negatives alone do not define an object;
- except on a slice where a selected label is refined (``refine_slices``): the label's mask
  is the object there, so negative points alone carve it (they stay the point object's).

Coordinates are (z, row, col) in the image stack; boxes (z, row0, col0, row1, col1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "POINT_OBJECT",
    "anchor_refinements",
    "DrawnPrompts",
    "ObjectPrompts",
    "all_labelled",
    "boxes_from_shapes",
    "group_prompts",
    "ignored_negative_slices",
    "inside_image",
    "nothing_to_segment",
    "outside_note",
    "positives",
    "refined_slices",
]

#: Key of the object made of the points outside every box.
POINT_OBJECT = "points"


@dataclass
class DrawnPrompts:
    """What was drawn for one object on one slice: its points and an optional box.

    The same concept as :class:`napari_sam.volume.SlicePrompt` without the slice index, mask
    and stop marker, plus :attr:`usable`, which :func:`napari_sam.annotation.decode_slice`
    reads; :meth:`to_slice_prompt` converts for propagation.
    """

    points: np.ndarray  # (P, 2) float (row, col)
    labels: np.ndarray  # (P,) int 1 positive / 0 negative
    box: np.ndarray | None = None  # (4,) row0, col0, row1, col1
    #: (row, col) of a positive point placed by :func:`anchor_refinements` (the last of
    #: ``points``), or None: every point was drawn
    anchor: tuple[float, float] | None = None

    @property
    def n_positive(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def defines_object(self) -> bool:
        """A box or a positive point: the prompts say which object they are about."""
        return self.box is not None or self.n_positive > 0

    @property
    def usable(self) -> bool:
        """Something to decode: a box or points. Negative points alone are decoded only
        with a mask prompt (a refined label's mask), which says which object they carve;
        :func:`group_prompts` keeps them only where a label is refined."""
        return self.box is not None or len(self.points) > 0

    def to_slice_prompt(self, z: int):
        """The :class:`napari_sam.volume.SlicePrompt` of slice ``z`` (no points: None)."""
        from napari_sam.volume import SlicePrompt

        has = len(self.points) > 0
        return SlicePrompt(slice=z, points=self.points if has else None,
                           labels=self.labels if has else None, box=self.box)


@dataclass
class ObjectPrompts:
    """One object: its key ("points" or ("box", i)) and prompts by slice."""

    key: object
    slices: dict[int, DrawnPrompts] = field(default_factory=dict)


def boxes_from_shapes(shapes_zyx: list[np.ndarray]) -> np.ndarray:
    """Rectangles as (N, 3+) vertex arrays in (z, row, col) -> (N, 5) (z, r0, c0, r1, c1)."""
    out = np.zeros((len(shapes_zyx), 5))
    for i, verts in enumerate(shapes_zyx):
        v = np.asarray(verts, dtype=float)
        out[i, 0] = np.round(v[0, 0])
        out[i, 1:3] = v[:, 1:3].min(0)
        out[i, 3:5] = v[:, 1:3].max(0)
    return out


def _inside(points_rc: np.ndarray, box: np.ndarray) -> np.ndarray:
    return (
        (points_rc[:, 0] >= box[0])
        & (points_rc[:, 0] <= box[2])
        & (points_rc[:, 1] >= box[1])
        & (points_rc[:, 1] <= box[3])
    )


def _box_distance(points_rc: np.ndarray, box: np.ndarray) -> np.ndarray:
    dr = np.maximum(np.maximum(box[0] - points_rc[:, 0], points_rc[:, 0] - box[2]), 0)
    dc = np.maximum(np.maximum(box[1] - points_rc[:, 1], points_rc[:, 1] - box[3]), 0)
    return np.hypot(dr, dc)


def group_prompts(points_zyx, point_labels, boxes_zrcrc,
                  refine_slices=()) -> list[ObjectPrompts]:
    """Objects from points (P, 3) with labels (P,) and boxes (N, 5); see the module rules.

    ``refine_slices``: slices where the point object refines a selected label (its mask is
    the decoder's mask prompt there), so negative points alone are the point object's.
    Returns the point object first (when it has a usable slice), then one object per box.
    """
    refine_slices = {int(z) for z in refine_slices}
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    lab = np.asarray(point_labels, dtype=int).reshape(-1)
    boxes = np.asarray(boxes_zrcrc, dtype=float).reshape(-1, 5)
    z_of_point = np.round(pts[:, 0]).astype(int)
    owner = np.full(len(pts), -1)  # -1: point object, i: box i
    for i, b in enumerate(boxes):
        on = (z_of_point == int(b[0])) & (owner == -1)
        owner[on & _inside(pts[:, 1:], b[1:])] = i
    # negatives of slices where the point object has no positive point go to the nearest box
    for z in np.unique(z_of_point[owner == -1]):
        free = (owner == -1) & (z_of_point == z)
        if (lab[free] == 1).any() or int(z) in refine_slices:
            continue
        on_z = np.flatnonzero(boxes[:, 0] == z)
        if len(on_z) == 0:
            continue
        idx = np.flatnonzero(free)
        dist = np.stack([_box_distance(pts[idx, 1:], boxes[i, 1:]) for i in on_z], axis=1)
        owner[idx] = on_z[dist.argmin(1)]

    objects = []
    point_obj = ObjectPrompts(POINT_OBJECT)
    for z in np.unique(z_of_point[owner == -1]):
        sel = (owner == -1) & (z_of_point == z)
        sp = DrawnPrompts(pts[sel, 1:], lab[sel])
        if sp.defines_object or int(z) in refine_slices:
            point_obj.slices[int(z)] = sp
    if point_obj.slices:
        objects.append(point_obj)
    for i, b in enumerate(boxes):
        sel = owner == i
        objects.append(
            ObjectPrompts(("box", i), {int(b[0]): DrawnPrompts(pts[sel, 1:], lab[sel], b[1:])})
        )
    return objects


def ignored_negative_slices(points_zyx, point_labels, objects: list[ObjectPrompts]) -> list[int]:
    """Slices holding negative points that no object of ``objects`` uses.

    :func:`group_prompts` drops the negatives of a slice where the point object has no
    positive point and no box is drawn; propagation cannot use them, and the user is told.
    """
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    lab = np.asarray(point_labels, dtype=int).reshape(-1)
    negative_z = {int(z) for z in np.round(pts[lab == 0, 0])}
    used = {z for obj in objects for z in obj.slices}
    return sorted(negative_z - used)


def refined_slices(points_zyx, labels_zyx, label: int) -> list[int]:
    """The slices of points (P, 3) on which ``label`` is present in (Z, Y, X) ``labels_zyx``
    (where refining it gives negative points alone an object: :func:`group_prompts`)."""
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    if not label or labels_zyx is None or not len(pts):
        return []
    zs = np.unique(np.round(pts[:, 0]).astype(int))
    return [int(z) for z in zs if 0 <= z < len(labels_zyx) and (labels_zyx[z] == label).any()]


def positives(obj: ObjectPrompts | None, z: int) -> np.ndarray | None:
    """Positive clicks (P, 2) (row, col) of prompts ``obj`` on slice ``z`` (None: unknown)."""
    sp = None if obj is None else obj.slices.get(z)
    if sp is None:
        return None
    return sp.points[sp.labels == 1]


def all_labelled(labels_2d: np.ndarray, points_rc: np.ndarray) -> bool:
    """Whether every point lies on a labelled pixel (no points: True)."""
    rc = np.round(np.asarray(points_rc, dtype=float)).astype(int).reshape(-1, 2)
    rc = np.clip(rc, 0, np.array(labels_2d.shape) - 1)
    return bool((labels_2d[rc[:, 0], rc[:, 1]] != 0).all())


def nothing_to_segment(points_zyx, z: int, refine: bool, label: int | None) -> str:
    """The status line for slice ``z`` when no object is prompted there: what to add, and
    why negative points (P, 3) alone on it segment nothing (``refine``: 'Refine selected
    label' is on, ``label`` the selected label, None: no labels yet)."""
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    if not (np.round(pts[:, 0]) == z).any():
        return "Add a point (click) or a box (boxes layer) to segment an object."
    why = ("'Refine selected label' is off" if not refine else
           f"label {label} is not on slice {z}" if label else "no label is selected to refine")
    return ("Nothing to segment on this slice: negative points alone do not say which object "
            f"to cut from ({why}). Add a positive point or a box for a new object, or select "
            "the label to cut in the labels layer and tick 'Refine selected label'.")


def inside_image(points_zyx, point_labels, boxes_zrcrc, shape):
    """The prompts that lie on a (Z, Y, X) image of ``shape``: points (P, 3) inside its
    pixels (napari's extent: -0.5 to size - 0.5 along each axis), their labels, and boxes
    (N, 5) on one of its slices that overlap it; and how many were left out. A click beside
    the image (napari's points layer takes it) segments nothing and would make a saved
    session unloadable."""
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    lab = np.asarray(point_labels, dtype=int).reshape(-1)
    boxes = np.asarray(boxes_zrcrc, dtype=float).reshape(-1, 5)
    hi = np.asarray(shape, dtype=float)[:3] - 0.5
    keep_p = ((pts >= -0.5) & (pts < hi)).all(1) if len(pts) else np.zeros(0, bool)
    z_ok = (boxes[:, 0] >= -0.5) & (boxes[:, 0] < hi[0])
    overlap = ((boxes[:, 1] < hi[1]) & (boxes[:, 3] >= -0.5)
               & (boxes[:, 2] < hi[2]) & (boxes[:, 4] >= -0.5))
    keep_b = z_ok & overlap
    dropped = int((~keep_p).sum() + (~keep_b).sum())
    return pts[keep_p], lab[keep_p], boxes[keep_b], dropped


def outside_note(points_zyx, point_labels, boxes_zrcrc, shape) -> str:
    """" N prompts beside the image are ignored: ..." for the status line, or ""."""
    n = inside_image(points_zyx, point_labels, boxes_zrcrc, shape)[3]
    if not n:
        return ""
    what = "prompt lies" if n == 1 else "prompts lie"
    return (f" {n} {what} beside the image and {'is' if n == 1 else 'are'} ignored: delete "
            f"{'it' if n == 1 else 'them'} (select in 'SAM points' / 'SAM boxes', Delete).")


def anchor_refinements(objects: list[ObjectPrompts], labels, label: int) -> None:
    """Give the point object a positive point where it refines ``label`` with negative points
    alone: the label's pixel farthest from those negatives and from the label's edge
    (``min(distance to the nearest negative, 3 x distance to the edge)``), in place.

    A mask prompt with negative points alone left nothing with the demo model (the whole
    label on the slice erased: 40 of 40 merged nucleus pairs, real and synthetic; with the
    anchor, IoU 0.74 / 0.71 with the nucleus kept, docs/benchmarks.md): the anchor says which
    part the negatives leave. ``labels``: (Z, Y, X) target labels.
    """
    from scipy import ndimage as ndi

    for obj in objects:
        if obj.key != POINT_OBJECT:
            continue
        for z, sp in obj.slices.items():
            if sp.box is not None or sp.n_positive or not len(sp.points):
                continue
            found = ndi.find_objects((np.asarray(labels[z]) == label).astype(np.uint8))
            if not found or found[0] is None:
                continue
            # within the label's bounding box and a pixel of margin (a large image's slice is
            # never transformed whole); distances to the negatives exact, wherever they lie
            rs, cs = (slice(max(0, s.start - 1), s.stop + 1) for s in found[0])
            region = np.asarray(labels[z])[rs, cs] == label
            rr, cc = np.mgrid[rs.start:rs.start + region.shape[0],
                              cs.start:cs.start + region.shape[1]]
            near = np.min(np.hypot(rr[None] - sp.points[:, :1, None],
                                   cc[None] - sp.points[:, 1:, None]), axis=0)
            score = np.minimum(near, 3 * ndi.distance_transform_edt(region)) * region
            if not score.max() > 0:  # every pixel of the label under a negative point
                continue
            best = np.unravel_index(int(np.argmax(score)), score.shape)
            r, c = float(rr[best]), float(cc[best])
            obj.slices[z] = DrawnPrompts(np.vstack([sp.points, [[r, c]]]),
                                         np.append(sp.labels, 1), None, (r, c))
