"""Group the prompts drawn in napari into objects (pure numpy, tested without Qt).

Rules (documented in docs/gui.md):

- every box is one object on its slice; points on that slice inside the box belong to it;
- the other points form one "point object" over all slices (annotating it on several slices
  helps propagation fill the gap between them);
- on a slice where the point object has only negative points, they go to the box they are
  closest to (a negative click just outside a box is a common correction); with no box on
  that slice they are ignored, since negatives alone do not define an object.

Coordinates are (z, row, col) in the image stack; boxes (z, row0, col0, row1, col1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "POINT_OBJECT",
    "Sam2Prompts",
    "SlicePrompts",
    "boxes_from_shapes",
    "group_prompts",
    "ignored_negative_slices",
]

#: Key of the object made of the points outside every box.
POINT_OBJECT = "points"


@dataclass
class SlicePrompts:
    """One object's prompts on one slice."""

    points: np.ndarray  # (P, 2) float (row, col)
    labels: np.ndarray  # (P,) int 1 positive / 0 negative
    box: np.ndarray | None = None  # (4,) row0, col0, row1, col1

    @property
    def n_positive(self) -> int:
        return int((self.labels == 1).sum())

    @property
    def usable(self) -> bool:
        return self.box is not None or self.n_positive > 0


@dataclass
class Sam2Prompts:
    """One object: its key ("points" or ("box", i)) and prompts by slice."""

    key: object
    slices: dict[int, SlicePrompts] = field(default_factory=dict)


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


def group_prompts(points_zyx, point_labels, boxes_zrcrc) -> list[Sam2Prompts]:
    """Objects from points (P, 3) with labels (P,) and boxes (N, 5); see the module rules.

    Returns the point object first (when it has a usable slice), then one object per box.
    """
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
        if (lab[free] == 1).any():
            continue
        on_z = np.flatnonzero(boxes[:, 0] == z)
        if len(on_z) == 0:
            continue
        idx = np.flatnonzero(free)
        dist = np.stack([_box_distance(pts[idx, 1:], boxes[i, 1:]) for i in on_z], axis=1)
        owner[idx] = on_z[dist.argmin(1)]

    objects = []
    point_obj = Sam2Prompts(POINT_OBJECT)
    for z in np.unique(z_of_point[owner == -1]):
        sel = (owner == -1) & (z_of_point == z)
        sp = SlicePrompts(pts[sel, 1:], lab[sel])
        if sp.usable:
            point_obj.slices[int(z)] = sp
    if point_obj.slices:
        objects.append(point_obj)
    for i, b in enumerate(boxes):
        sel = owner == i
        objects.append(
            Sam2Prompts(("box", i), {int(b[0]): SlicePrompts(pts[sel, 1:], lab[sel], b[1:])})
        )
    return objects


def ignored_negative_slices(points_zyx, point_labels, objects: list[Sam2Prompts]) -> list[int]:
    """Slices holding negative points that no object of ``objects`` uses.

    :func:`group_prompts` drops the negatives of a slice where the point object has no
    positive point and no box is drawn; propagation cannot use them, and the user is told.
    """
    pts = np.asarray(points_zyx, dtype=float).reshape(-1, 3)
    lab = np.asarray(point_labels, dtype=int).reshape(-1)
    negative_z = {int(z) for z in np.round(pts[lab == 0, 0])}
    used = {z for obj in objects for z in obj.slices}
    return sorted(negative_z - used)
