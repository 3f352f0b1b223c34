"""Object placement (N-D): lumpy, bent, tailed ellipses/ellipsoids that barely overlap.

:func:`place_objects` draws candidate shapes (:class:`ObjectShape`) from a domain's
``propose`` function and paints the ones that fit into a label image, with each pixel's
normalised distance to its own object's centre and its coordinate along the object's major
axis (:class:`PlacedObjects`). :func:`relabel` cleans up label images made otherwise (e.g.
the Voronoi tissue of the membrane domain). Loops run over objects, never over pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["ObjectShape", "PlacedObjects", "clustered_centres", "finish_placement",
           "place_objects", "random_rotation", "relabel"]


@dataclass
class ObjectShape:
    """One proposed object: geometric-mean radius, aspect and outline parameters."""

    radius: float  # physical px, geometric mean of the semi-axes
    aspect: float = 1.0  # major / minor semi-axis
    lump: float = 0.05  # relative amplitude of outline bumps
    bend: float = 0.0  # banana bend of the major axis
    kind: int = 0  # domain-specific type code
    angle: float | None = (
        None  # 2D: orientation of the major axis (radians from +Y); random if None
    )
    tail: bool = False  # fish tail at the -major end
    third: float = 1.0  # 3D: third semi-axis relative to the minor one
    capsule: float = 0.0  # 0: ellipse; 1: stadium/capsule with round ends of the minor radius


@dataclass
class PlacedObjects:
    """The placed objects of a scene: labels and per-pixel / per-object geometry."""

    labels: np.ndarray  # int32, 1..N
    dist: np.ndarray  # float32 normalised distance to own centre (<1 inside), 1 outside
    axial: np.ndarray  # float32 coordinate along own major axis (physical px), 0 outside
    n: int
    radius: np.ndarray  # (N+1,) radius per label (index 0 unused)
    minor: np.ndarray  # (N+1,) minor semi-axis
    kind: np.ndarray  # (N+1,) int kind per label
    centre: np.ndarray  # (N+1, ndim) centre in pixel coordinates


@dataclass
class _Canvas:
    """What :func:`place_objects` has painted so far (index 0 of the lists: background)."""

    labels: np.ndarray
    dist: np.ndarray
    axial: np.ndarray
    areas: list = field(default_factory=lambda: [0])
    radius: list = field(default_factory=lambda: [0.0])
    minor: list = field(default_factory=lambda: [0.0])
    kinds: list = field(default_factory=lambda: [0])
    cents: list = field(default_factory=list)


def random_rotation(rng: np.random.Generator, ndim: int, angle: float | None = None) -> np.ndarray:
    """A random ``(ndim, ndim)`` rotation matrix (2D: by ``angle`` radians when given)."""
    if ndim == 2:
        t = rng.uniform(0, 2 * np.pi) if angle is None else angle
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s], [s, c]])
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _probes_hit_objects(labels, c, rot, radii, sp) -> bool:
    """Cheap early rejection: probe points at 60 % of the semi-axes land on >= 2 objects."""
    probe = c + 0.6 * np.concatenate([rot * radii, -rot * radii], axis=1).T
    pi = np.floor(probe / sp).astype(int)
    ok = np.all((pi >= 0) & (pi < np.asarray(labels.shape)), axis=1)
    return np.count_nonzero(labels[tuple(pi[ok].T)]) >= 2


def _local_frame(c, rot, lo, hi, sp) -> list[np.ndarray]:
    """Coordinates of the box ``[lo, hi)`` in the object's own frame (physical px, float32),
    one broadcastable array per axis, the major axis first."""
    ndim = len(c)
    grids = [
        (
            (
                np.arange(lo[i], hi[i], dtype=np.float32) * np.float32(sp[i]) - np.float32(c[i])
            ).reshape([-1 if j == i else 1 for j in range(ndim)])
        )
        for i in range(ndim)
    ]
    return [sum(np.float32(rot[i, j]) * grids[i] for i in range(ndim)) for j in range(ndim)]


def _scaled_coordinates(s: ObjectShape, local, radii) -> list[np.ndarray]:
    """Local coordinates divided by the semi-axes; a capsule's straight middle section of
    half-length L maps to 0 along the major axis, so its ends are rounder."""
    ndim = len(local)
    if s.capsule > 0:
        L = s.capsule * (radii[0] - radii[1:].max())
        x0 = local[0]
        q = [
            np.sign(x0)
            * np.maximum(np.abs(x0) - np.float32(L), 0)
            * np.float32(1 / (radii[0] - L))
        ]
        return q + [local[j] * np.float32(1 / radii[j]) for j in range(1, ndim)]
    return [local[j] * np.float32(1 / radii[j]) for j in range(ndim)]


def _lumpy(d, q, local, radii, lump: float, rng: np.random.Generator) -> np.ndarray:
    """Normalised distance ``d`` with outline bumps of a fixed physical height
    (``lump`` x minor radius) all around, so elongated shapes grow no spikes at their tips."""
    ndim = len(q)
    nh = 4
    v = rng.standard_normal((nh, ndim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    f = rng.integers(1, 4, nh) * np.pi
    amp = lump * rng.uniform(0.3, 1.0, nh)
    ph = rng.uniform(0, 2 * np.pi, nh)
    inv = 1 / d
    p = np.float32(0.0)
    for h in range(nh):
        dot = sum(np.float32(v[h, j]) * q[j] for j in range(ndim)) * inv
        p = p + np.float32(amp[h]) * np.cos(np.float32(f[h]) * dot + np.float32(ph[h]))
    rmin = np.float32(radii[1:].min())
    rl = np.sqrt(sum(lj * lj for lj in local))
    return d * np.maximum(1 - p * rmin / np.maximum(rl, rmin), np.float32(0.3))


def _with_tail(dn, local, radii, rng: np.random.Generator) -> np.ndarray:
    """Add a fish tail at the -major end: a fin widening from its root to its edge."""
    a, b = radii[0], radii[1]
    tl = a * rng.uniform(0.35, 0.6)
    t = (-local[0] - np.float32(0.75 * a)) * np.float32(1 / tl)  # 0 root, 1 fin edge
    w = np.float32(b) * (np.float32(0.3) + np.float32(0.9) * np.clip(t, 0, 1))
    dtail = np.maximum(np.abs(2 * t - 1), np.abs(local[1]) / w)
    return np.minimum(dn, dtail)


def _shape_distance(s: ObjectShape, local, radii, rng: np.random.Generator) -> np.ndarray:
    """Normalised distance of every box pixel to the object's centre (< 1 inside).
    Bends ``local[1]`` in place for a banana-shaped object."""
    if s.bend:
        local[1] = local[1] + np.float32(s.bend / radii[0]) * local[0] ** 2
    q = _scaled_coordinates(s, local, radii)
    d = np.sqrt(sum(qj * qj for qj in q)) + np.float32(1e-6)
    dn = _lumpy(d, q, local, radii, s.lump, rng) if s.lump > 0 else d
    if s.tail:
        dn = _with_tail(dn, local, radii, rng)
    return dn


def _overlaps_too_much(lab_box, mask, area: int, areas, k: int, max_overlap: float) -> bool:
    """More than ``max_overlap`` of the candidate's area, or of any painted object's, shared."""
    under = lab_box[mask]
    if not under.any():
        return False
    counts = np.bincount(under, minlength=k + 1)
    counts[0] = 0
    if counts.sum() > max_overlap * area:
        return True
    ids = np.nonzero(counts)[0]
    return bool(np.any(counts[ids] > max_overlap * np.asarray(areas)[ids]))


def _paint(canvas: _Canvas, k: int, box, mask, dn, local, area, s: ObjectShape, radii, c, sp):
    """Give object ``k`` the pixels of ``mask`` that are closer to its centre than to any
    painted object's (natural touching interfaces), and record its geometry."""
    lab_box = canvas.labels[box]
    win = mask & (dn < canvas.dist[box])
    lab_box[win] = k
    canvas.dist[box][win] = dn[win]
    canvas.axial[box][win] = np.broadcast_to(local[0], dn.shape)[win]
    canvas.areas.append(area)
    canvas.radius.append(s.radius)
    canvas.minor.append(float(radii[1:].min()))
    canvas.kinds.append(s.kind)
    canvas.cents.append(c / sp)


def place_objects(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n: int,
    propose: Callable[[np.random.Generator], ObjectShape],
    centres: Callable[[np.random.Generator], np.ndarray] | None = None,
    spacing: Sequence[float] | None = None,
    max_overlap: float = 0.1,
    min_size: int = 30,
    min_slices: int = 1,
    tries: int | None = None,
) -> PlacedObjects:
    """Place up to ``n`` lumpy, possibly bent ellipses/ellipsoids without much overlap.

    Candidates are rejected when more than ``max_overlap`` of their own area or
    of any existing object's area would be shared. Shared pixels go to the object
    whose normalised centre distance is smaller, which gives natural touching
    interfaces. Loops run over objects, never over pixels.
    """
    shape = tuple(shape)
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=float)
    extent = np.asarray(shape) * sp
    canvas = _Canvas(np.zeros(shape, np.int32), np.ones(shape, np.float32),
                     np.zeros(shape, np.float32), cents=[np.zeros(ndim)])
    tries = 8 * n + 20 if tries is None else tries
    k = 0
    for _ in range(tries):
        if k >= n:
            break
        s = propose(rng)
        c = centres(rng) if centres is not None else rng.uniform(0, 1, ndim) * extent
        ci = tuple(np.minimum((c / sp).astype(int), np.asarray(shape) - 1))
        if canvas.labels[ci] and canvas.dist[ci] < 1 - max_overlap:
            continue  # centre deep inside another object: would overlap too much
        sa = math.sqrt(s.aspect)
        radii = np.array([s.radius * sa, s.radius / sa, s.radius / sa * s.third][:ndim])
        rot = random_rotation(rng, ndim, s.angle)
        if k and _probes_hit_objects(canvas.labels, c, rot, radii, sp):
            continue
        half = radii.max() * (1 + 2.5 * s.lump) * (1 + abs(s.bend)) * (1.9 if s.tail else 1.0)
        lo = np.maximum(0, np.floor((c - half) / sp).astype(int))
        hi = np.minimum(shape, np.ceil((c + half) / sp).astype(int) + 1)
        if np.any(hi - lo < 1):
            continue
        local = _local_frame(c, rot, lo, hi, sp)
        dn = _shape_distance(s, local, radii, rng)
        dn = np.broadcast_to(dn, tuple(hi - lo)).astype(np.float32)
        mask = dn < 1
        area = int(mask.sum())
        if area < min_size:
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        if _overlaps_too_much(canvas.labels[box], mask, area, canvas.areas, k, max_overlap):
            continue
        k += 1
        _paint(canvas, k, box, mask, dn, local, area, s, radii, c, sp)
    return finish_placement(canvas.labels, canvas.dist, canvas.axial, canvas.radius,
                            canvas.minor, canvas.kinds, canvas.cents, min_size, min_slices)


def _stray_fragments(crop: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``(mask of label in crop, its pixels outside the largest component or None)``."""
    m = crop == label
    comp, nc = ndi.label(m)
    if nc <= 1:
        return m, None
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    return m, m & (comp != int(sizes.argmax()))


def _drop_stray_fragments(labels: np.ndarray):
    """For every label of ``labels`` (1..max), set the pixels outside its largest component
    to 0 in place and yield ``(label, its bounding slices, its mask in them, the dropped
    pixels or None)``."""
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = labels[sl]
        m, drop = _stray_fragments(crop, i)
        if drop is not None:
            crop[drop] = 0
        yield i, sl, m, drop


def _keep_table(keep: np.ndarray) -> np.ndarray:
    """Lookup table ``old id -> new id``: kept ids become 1..N in order, the others 0."""
    lut = np.zeros(len(keep), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut


def finish_placement(labels, dist, axial, radius, minor, kinds, cents, min_size,
                     min_slices) -> PlacedObjects:
    """Keep the largest component of each label, drop small/thin ones, relabel 1..N."""
    n = int(labels.max())
    keep = np.zeros(n + 1, bool)
    for i, sl, m, drop in _drop_stray_fragments(labels):
        if drop is not None:
            dist[sl][drop] = 1
            axial[sl][drop] = 0
            m &= ~drop
        size = int(m.sum())
        if labels.ndim == 3:
            span = int(np.count_nonzero(m.any(axis=(1, 2))))
        else:
            span = min_slices
        keep[i] = size >= min_size and span >= min_slices
    labels = _keep_table(keep)[labels]
    bg = labels == 0
    dist[bg] = 1
    axial[bg] = 0
    sel = np.nonzero(keep)[0]
    pad = lambda v, dt: np.concatenate([[0], np.asarray(v, dt)[sel]]).astype(dt)  # noqa: E731
    return PlacedObjects(
        labels=labels,
        dist=dist,
        axial=axial,
        n=int(keep.sum()),
        radius=pad(radius, float),
        minor=pad(minor, float),
        kind=pad(kinds, int),
        centre=np.concatenate([np.zeros((1, labels.ndim)), np.asarray(cents)[sel]]),
    )


def clustered_centres(rng, extent, scale, p_cluster=0.5):
    """Centre sampler: uniform, or around a few cluster centres (touching clumps)."""
    extent = np.asarray(extent, float)
    if rng.random() >= p_cluster:
        return None
    nc = int(rng.integers(1, 5))
    cc = rng.uniform(0.1, 0.9, (nc, len(extent))) * extent
    spread = rng.uniform(1.2, 3.0) * scale

    def sample(r):
        if r.random() < 0.25:
            return r.uniform(0, 1, len(extent)) * extent
        c = cc[r.integers(nc)] + r.normal(0, spread, len(extent))
        return np.clip(c, 0, extent - 1e-3)

    return sample


def relabel(labels: np.ndarray, min_size: int, min_slices: int = 1) -> np.ndarray:
    """Keep each label's largest component, drop labels smaller than ``min_size`` (or
    thinner than ``min_slices``), relabel 1..N. Loops over labels, not pixels."""
    for _ in _drop_stray_fragments(labels):
        pass
    n = int(labels.max())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    if labels.ndim == 3 and min_slices > 1:
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is not None and keep[i] and sl[0].stop - sl[0].start < min_slices:
                keep[i] = False
    return _keep_table(keep)[labels]
