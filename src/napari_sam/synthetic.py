"""Seeded synthetic images and volumes with instance ground truth.

The generators in this module draw scenes from several imaging domains
(fluorescence nuclei, membrane-stained cells, electron microscopy organelles,
X-ray CT / radiographs and underwater RGB photographs), together with their
instance labels. They feed three consumers:

* the trainer of the bundled ``demo`` model (many different looks per domain,
  so that the model generalises to real images it has never seen),
* the napari sample-data contributions,
* the quality tests (fixed seeds, known ground truth).

Every generator is a pure function of its arguments: the same ``seed`` always
gives bit-identical arrays, and all randomness comes from one
``np.random.default_rng(seed)``. Nothing global is touched.

Seed convention
---------------
Seeds ``< 10_000`` (:data:`HELDOUT_SEED_START`) are for training; seeds
``>= 10_000`` are held out and used by the quality tests. :func:`make_dataset`
refuses a seed range that straddles the boundary.

Domains
-------
=================  ======================  ===============================================
name               2D / 3D generator       look
=================  ======================  ===============================================
``nuclei``         nuclei_2d / nuclei_3d   fluorescent nuclei: touching lumpy ellipses
                                           (ellipsoids), varied size/brightness/texture,
                                           uneven background, PSF blur (longer along z),
                                           Poisson + read noise
``cells_membrane`` cells_membrane_2d / _3d bright membranes of a warped Voronoi tissue,
                                           dim cytoplasm, darker nuclei
``em_organelles``  em_organelles_2d /      dark-membrane mitochondria with cristae,
                   em_3d                   vesicles, lysosomes on granular grey
``xray``           xray_2d / xray_3d       dense grains in CT slices/volumes (cupping,
                                           ramps, rings, streaks) or radiographs
``underwater``     underwater_rgb (2D)     coloured fish/coral/rocks in blue-green haze,
                                           caustics, marine snow; (Y, X, 3) RGB
=================  ======================  ===============================================

Conventions
-----------
* Axis order is napari's: 2D images are ``(Y, X)``, volumes ``(Z, Y, X)`` and RGB
  images ``(Y, X, 3)``.
* ``labels`` has the spatial shape of the image, dtype ``int32``, ids
  ``1..N`` consecutive (in placement order) and ``0`` for background. Every
  instance is one connected component with at least ``min_size`` pixels
  (voxels), and in 3D spans at least ``min_slices`` slices.
* ``image`` is ``uint8`` or ``uint16`` (``dtype`` argument). 16-bit images use a
  random camera offset (about 100-2000) and a random dynamic range that does
  not fill the 16 bits, like real detectors.

Examples
--------
>>> from napari_sam.synthetic import nuclei_2d, make_dataset
>>> s = nuclei_2d((256, 256), seed=10_001)
>>> s.image.shape, s.image.dtype, int(s.labels.max()) == s.n_objects
((256, 256), dtype('uint16'), True)
>>> train = make_dataset(["nuclei", "em_organelles"], 8, seed=0)
>>> [t.seed for t in train][:3]
[0, 1, 2]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = [
    "DOMAINS",
    "DOMAINS_3D",
    "HELDOUT_SEED_START",
    "SyntheticSample",
    "cells_membrane_2d",
    "cells_membrane_3d",
    "em_3d",
    "em_organelles_2d",
    "make_dataset",
    "nuclei_2d",
    "nuclei_3d",
    "underwater_rgb",
    "xray_2d",
    "xray_3d",
]

#: First seed of the held-out range used by tests; training uses seeds below it.
HELDOUT_SEED_START = 10_000

_DTYPES = ("uint8", "uint16")


@dataclass(eq=False)
class SyntheticSample:
    """One synthetic image with its instance labels.

    Attributes
    ----------
    image : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` grey values, or ``(Y, X, 3)`` RGB, dtype
        ``uint8`` or ``uint16``.
    labels : numpy.ndarray
        Spatial shape of ``image`` (``(Y, X)`` or ``(Z, Y, X)``), dtype ``int32``;
        instance ids ``1..N`` consecutive, ``0`` is background.
    domain : str
        Key of the generator in :data:`DOMAINS` (2D) or :data:`DOMAINS_3D` (3D).
    seed : int
        Seed that reproduces this sample with the same generator and arguments.
    meta : dict
        Drawn acquisition parameters (e.g. ``anisotropy``, ``mode``), for
        inspection only.
    """

    image: np.ndarray
    labels: np.ndarray
    domain: str
    seed: int
    meta: dict = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        """Number of instances ``N`` (the largest label id)."""
        return int(self.labels.max()) if self.labels.size else 0

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3); RGB channels do not count."""
        return self.labels.ndim

    def layer_data(self) -> list[tuple[np.ndarray, dict, str]]:
        """napari ``LayerDataTuple`` list: the image and its labels (no napari import).

        Volumes get ``scale=(anisotropy, 1, 1)`` when the anisotropy is known, and
        RGB images ``rgb=True``; used by the sample-data contributions.
        """
        name = f"{self.domain} {self.seed}"
        scale = (float(self.meta.get("anisotropy", 1.0)), 1.0, 1.0) if self.ndim == 3 else None
        img_kw: dict = {"name": name, "rgb": self.image.ndim == self.ndim + 1}
        lab_kw: dict = {"name": f"{name} labels"}
        if scale is not None:
            img_kw["scale"] = lab_kw["scale"] = scale
        return [(self.image, img_kw, "image"), (self.labels, lab_kw, "labels")]


# --------------------------------------------------------------------------------------
# small random helpers
# --------------------------------------------------------------------------------------


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _check_dtype(dtype: str | None, default: str) -> str:
    dtype = default if dtype is None else str(np.dtype(dtype))
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    return dtype


def _check_shape(shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} dimensions, got {shape}")
    if min(shape[-2:]) < 32 or (ndim == 3 and shape[0] < 4):
        raise ValueError(f"shape {shape} is too small (need Y, X >= 32 and Z >= 4)")
    return shape


def _smooth_noise(
    rng: np.random.Generator, shape: Sequence[int], sigma: float | Sequence[float]
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian random field with correlation length ``sigma`` px.

    Large ``sigma`` are generated on a coarse grid and linearly upsampled, so the
    cost stays about one pass over the output whatever the correlation length.
    Returns float32 of ``shape``.
    """
    shape = tuple(shape)
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (len(shape),)).astype(float)
    factor = np.maximum(1.0, np.floor(sig / 3.0))
    if np.all(factor == 1.0):
        out = ndi.gaussian_filter(
            rng.standard_normal(shape, dtype=np.float32), sig, mode="wrap", truncate=3.0
        )
    else:
        small_shape = tuple(int(max(2, math.ceil(s / f))) for s, f in zip(shape, factor))
        small = ndi.gaussian_filter(
            rng.standard_normal(small_shape, dtype=np.float32),
            sig / factor,
            mode="wrap",
            truncate=3.0,
        )
        zoom = [s / ss for s, ss in zip(shape, small_shape)]
        out = ndi.zoom(small, zoom, order=1, mode="grid-wrap", grid_mode=True)
        out = out[tuple(slice(0, s) for s in shape)]
    out -= out.mean()
    std = float(out.std())
    if std > 0:
        out /= std
    return out.astype(np.float32, copy=False)


def _blur(x: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (x.ndim,))
    if np.all(sig < 0.2):
        return x
    return ndi.gaussian_filter(x, np.where(sig < 0.2, 0.0, sig), mode="nearest", truncate=3.0)


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Bool mask of pixels whose 2*ndim neighbourhood contains another label value."""
    b = np.zeros(labels.shape, bool)
    for ax in range(labels.ndim):
        a = np.moveaxis(labels, ax, 0)
        bb = np.moveaxis(b, ax, 0)
        diff = a[1:] != a[:-1]
        bb[1:] |= diff
        bb[:-1] |= diff
    return b


def _depth(labels: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distance (physical px) of every labelled pixel to its own object's outline.

    0 on the outermost pixel ring, growing inwards; 0 on background. Touching
    objects are separated, unlike a plain distance transform of ``labels > 0``.
    """
    edge = _boundaries(labels)
    # pixels on the image border are not an outline: objects continue outside
    d = ndi.distance_transform_edt(~edge, sampling=spacing).astype(np.float32)
    d[labels == 0] = 0
    return d


def _lowfreq(rng: np.random.Generator, shape: Sequence[int], cells: float = 3.0) -> np.ndarray:
    """Very smooth unit-std field with about ``cells`` bumps across the largest axis."""
    shape = tuple(shape)
    sigma = [max(1.0, s / cells / 2.0) for s in shape]
    return _smooth_noise(rng, shape, sigma)


def _ramp(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Linear ramp from -0.5 to 0.5 in a random in-plane direction, float32 ``shape``."""
    t = rng.uniform(0, 2 * np.pi)
    yy = np.linspace(-0.5, 0.5, shape[-2], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[-1], dtype=np.float32)[None, :]
    r = (math.sin(t) * yy + math.cos(t) * xx).astype(np.float32)
    return np.broadcast_to(r, tuple(shape)).astype(np.float32)


def _sparse_spots(
    rng: np.random.Generator, shape: Sequence[int], density: float, sigma: float
) -> np.ndarray:
    """Blurred random point sources normalised to peak ~1 (debris, granules, snow)."""
    shape = tuple(shape)
    n = int(rng.poisson(density * np.prod(shape)))
    out = np.zeros(shape, np.float32)
    if n == 0:
        return out
    idx = tuple(rng.integers(0, s, n) for s in shape)
    out[idx] = rng.uniform(0.5, 1.0, n).astype(np.float32)
    out = ndi.gaussian_filter(out, sigma, truncate=3.0)
    return out * np.float32((2 * np.pi * sigma**2) ** (len(shape) / 2))


# --------------------------------------------------------------------------------------
# detectors: float signal -> integer image
# --------------------------------------------------------------------------------------


def _dynamic_range(rng: np.random.Generator, dtype: str) -> tuple[float, float, float]:
    """(offset, span, max value) of the used grey range for ``dtype``."""
    if dtype == "uint8":
        offset = rng.uniform(0, 30)
        span = _loguniform(rng, 50, 250 - offset)
        return offset, span, 255.0
    offset = _loguniform(rng, 100, 2000)
    span = _loguniform(rng, 400, 40000)
    return offset, span, 65535.0


def _camera(
    signal: np.ndarray,
    rng: np.random.Generator,
    dtype: str,
    *,
    photons: tuple[float, float] = (40, 3000),
) -> tuple[np.ndarray, dict]:
    """Photon-counting camera: Poisson shot noise, Gaussian read noise, offset, gain.

    ``signal`` is float >= 0 with the brightest structures near 1.
    """
    peak = _loguniform(rng, *photons)
    counts = rng.poisson(np.clip(signal, 0, None) * peak).astype(np.float32)
    offset, span, vmax = _dynamic_range(rng, dtype)
    gain = span / peak
    read = rng.uniform(0.5, 3.0)  # electrons
    img = offset + gain * (counts + read * rng.standard_normal(signal.shape, dtype=np.float32))
    img = np.clip(np.rint(img), 0, vmax).astype(dtype)
    return img, {"photons": peak, "offset": offset, "span": span}


def _quantize(x: np.ndarray, rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, dict]:
    """Map a float image with content in about [0, 1] to the used grey range of ``dtype``."""
    offset, span, vmax = _dynamic_range(rng, dtype)
    img = np.clip(np.rint(offset + span * x), 0, vmax).astype(dtype)
    return img, {"offset": offset, "span": span}


# --------------------------------------------------------------------------------------
# object placement (N-D)
# --------------------------------------------------------------------------------------


@dataclass
class _Shape:
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
class _Objects:
    labels: np.ndarray  # int32, 1..N
    dist: np.ndarray  # float32 normalised distance to own centre (<1 inside), 1 outside
    axial: np.ndarray  # float32 coordinate along own major axis (physical px), 0 outside
    n: int
    radius: np.ndarray  # (N+1,) radius per label (index 0 unused)
    minor: np.ndarray  # (N+1,) minor semi-axis
    kind: np.ndarray  # (N+1,) int kind per label
    centre: np.ndarray  # (N+1, ndim) centre in pixel coordinates


def _rotation(rng: np.random.Generator, ndim: int, angle: float | None = None) -> np.ndarray:
    if ndim == 2:
        t = rng.uniform(0, 2 * np.pi) if angle is None else angle
        c, s = math.cos(t), math.sin(t)
        return np.array([[c, -s], [s, c]])
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def _place(
    shape: Sequence[int],
    rng: np.random.Generator,
    *,
    n: int,
    propose: Callable[[np.random.Generator], _Shape],
    centres: Callable[[np.random.Generator], np.ndarray] | None = None,
    spacing: Sequence[float] | None = None,
    max_overlap: float = 0.1,
    min_size: int = 30,
    min_slices: int = 1,
    tries: int | None = None,
) -> _Objects:
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
    labels = np.zeros(shape, np.int32)
    dist = np.ones(shape, np.float32)
    axial = np.zeros(shape, np.float32)
    areas = [0]
    radius, minor, kinds, cents = [0.0], [0.0], [0], [np.zeros(ndim)]
    tries = 8 * n + 20 if tries is None else tries
    k = 0
    for _ in range(tries):
        if k >= n:
            break
        s = propose(rng)
        c = centres(rng) if centres is not None else rng.uniform(0, 1, ndim) * extent
        ci = np.minimum((c / sp).astype(int), np.asarray(shape) - 1)
        if labels[tuple(ci)] and dist[tuple(ci)] < 1 - max_overlap:
            continue  # centre deep inside another object: would overlap too much
        sa = math.sqrt(s.aspect)
        radii = np.array([s.radius * sa, s.radius / sa, s.radius / sa * s.third][:ndim])
        rot = _rotation(rng, ndim, s.angle)
        if k:  # cheap early rejection: probe points at 60 % of the semi-axes
            probe = c + 0.6 * np.concatenate([rot * radii, -rot * radii], axis=1).T
            pi = np.floor(probe / sp).astype(int)
            ok = np.all((pi >= 0) & (pi < np.asarray(shape)), axis=1)
            if np.count_nonzero(labels[tuple(pi[ok].T)]) >= 2:
                continue
        half = radii.max() * (1 + 2.5 * s.lump) * (1 + abs(s.bend)) * (1.9 if s.tail else 1.0)
        lo = np.maximum(0, np.floor((c - half) / sp).astype(int))
        hi = np.minimum(shape, np.ceil((c + half) / sp).astype(int) + 1)
        if np.any(hi - lo < 1):
            continue
        grids = [
            (
                (
                    np.arange(lo[i], hi[i], dtype=np.float32) * np.float32(sp[i]) - np.float32(c[i])
                ).reshape([-1 if j == i else 1 for j in range(ndim)])
            )
            for i in range(ndim)
        ]
        local = [sum(np.float32(rot[i, j]) * grids[i] for i in range(ndim)) for j in range(ndim)]
        if s.bend:
            local[1] = local[1] + np.float32(s.bend / radii[0]) * local[0] ** 2
        if s.capsule > 0:  # straight middle section of half-length L, rounder ends
            L = s.capsule * (radii[0] - radii[1:].max())
            x0 = local[0]
            q = [
                np.sign(x0)
                * np.maximum(np.abs(x0) - np.float32(L), 0)
                * np.float32(1 / (radii[0] - L))
            ]
            q += [local[j] * np.float32(1 / radii[j]) for j in range(1, ndim)]
        else:
            q = [local[j] * np.float32(1 / radii[j]) for j in range(ndim)]
        d = np.sqrt(sum(qj * qj for qj in q)) + np.float32(1e-6)
        if s.lump > 0:
            nh = 4
            v = rng.standard_normal((nh, ndim))
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            f = rng.integers(1, 4, nh) * np.pi
            amp = s.lump * rng.uniform(0.3, 1.0, nh)
            ph = rng.uniform(0, 2 * np.pi, nh)
            inv = 1 / d
            p = np.float32(0.0)
            for h in range(nh):
                dot = sum(np.float32(v[h, j]) * q[j] for j in range(ndim)) * inv
                p = p + np.float32(amp[h]) * np.cos(np.float32(f[h]) * dot + np.float32(ph[h]))
            # bumps of a fixed physical height (lump * minor radius) all around the outline,
            # so elongated shapes do not grow spikes at their tips
            rmin = np.float32(radii[1:].min())
            rl = np.sqrt(sum(lj * lj for lj in local))
            dn = d * np.maximum(1 - p * rmin / np.maximum(rl, rmin), np.float32(0.3))
        else:
            dn = d
        if s.tail:
            a, b = radii[0], radii[1]
            tl = a * rng.uniform(0.35, 0.6)
            t = (-local[0] - np.float32(0.75 * a)) * np.float32(1 / tl)  # 0 root, 1 fin edge
            w = np.float32(b) * (np.float32(0.3) + np.float32(0.9) * np.clip(t, 0, 1))
            dtail = np.maximum(np.abs(2 * t - 1), np.abs(local[1]) / w)
            dn = np.minimum(dn, dtail)
        dn = np.broadcast_to(dn, tuple(hi - lo)).astype(np.float32)
        mask = dn < 1
        area = int(mask.sum())
        if area < min_size:
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        lab_box = labels[box]
        under = lab_box[mask]
        if under.any():
            counts = np.bincount(under, minlength=k + 1)
            counts[0] = 0
            if counts.sum() > max_overlap * area:
                continue
            ids = np.nonzero(counts)[0]
            if np.any(counts[ids] > max_overlap * np.asarray(areas)[ids]):
                continue
        k += 1
        win = mask & (dn < dist[box])
        lab_box[win] = k
        dist[box][win] = dn[win]
        axial[box][win] = np.broadcast_to(local[0], dn.shape)[win]
        areas.append(area)
        radius.append(s.radius)
        minor.append(float(radii[1:].min()))
        kinds.append(s.kind)
        cents.append(c / sp)
    return _cleanup(labels, dist, axial, radius, minor, kinds, cents, min_size, min_slices)


def _cleanup(labels, dist, axial, radius, minor, kinds, cents, min_size, min_slices) -> _Objects:
    """Keep the largest component of each label, drop small/thin ones, relabel 1..N."""
    n = int(labels.max())
    keep = np.zeros(n + 1, bool)
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = labels[sl]
        m = crop == i
        comp, nc = ndi.label(m)
        if nc > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            drop = m & (comp != int(sizes.argmax()))
            crop[drop] = 0
            dist[sl][drop] = 1
            axial[sl][drop] = 0
            m &= ~drop
        size = int(m.sum())
        if labels.ndim == 3:
            span = int(np.count_nonzero(m.any(axis=(1, 2))))
        else:
            span = min_slices
        keep[i] = size >= min_size and span >= min_slices
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    labels = lut[labels]
    bg = labels == 0
    dist[bg] = 1
    axial[bg] = 0
    sel = np.nonzero(keep)[0]
    pad = lambda v, dt: np.concatenate([[0], np.asarray(v, dt)[sel]]).astype(dt)  # noqa: E731
    return _Objects(
        labels=labels,
        dist=dist,
        axial=axial,
        n=int(keep.sum()),
        radius=pad(radius, float),
        minor=pad(minor, float),
        kind=pad(kinds, int),
        centre=np.concatenate([np.zeros((1, labels.ndim)), np.asarray(cents)[sel]]),
    )


def _clustered_centres(rng, extent, scale, p_cluster=0.5):
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


def _relabel(labels: np.ndarray, min_size: int, min_slices: int = 1) -> np.ndarray:
    """Keep each label's largest component, drop labels smaller than ``min_size`` (or
    thinner than ``min_slices``), relabel 1..N. Loops over labels, not pixels."""
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        crop = labels[sl]
        m = crop == i
        comp, nc = ndi.label(m)
        if nc > 1:
            sizes = np.bincount(comp.ravel())
            sizes[0] = 0
            crop[m & (comp != int(sizes.argmax()))] = 0
    n = int(labels.max())
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    if labels.ndim == 3 and min_slices > 1:
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is not None and keep[i] and sl[0].stop - sl[0].start < min_slices:
                keep[i] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels]


# --------------------------------------------------------------------------------------
# fluorescent nuclei
# --------------------------------------------------------------------------------------


def _nuclei(shape, rng, *, spacing, n_objects, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape) * sp
    rmean = _loguniform(rng, 7.0, min(22.0, max(8.0, float(extent.min()) / 5)))
    rlo = max(6.0, rmean / rng.uniform(1.1, 1.6), 1.6 * sp[0] if ndim == 3 else 0.0)
    rhi = max(rlo * 1.05, min(30.0, rmean * rng.uniform(1.1, 1.6)))
    amax = rng.uniform(1.05, 1.8)
    lump = rng.uniform(0.0, 0.12)
    coverage = rng.uniform(0.15, 0.5)
    if n_objects is None:
        vol = float(np.prod(extent))
        obj = (4 / 3 * np.pi * rmean**3) if ndim == 3 else np.pi * rmean**2
        n_objects = int(np.clip(round(coverage * vol / obj), 1, 400))

    def propose(r):
        return _Shape(
            radius=_loguniform(r, rlo, rhi),
            aspect=r.uniform(1.0, amax),
            lump=lump * r.uniform(0.3, 1.0),
            third=r.uniform(0.75, 1.1),
        )

    obj = _place(
        shape,
        rng,
        n=n_objects,
        propose=propose,
        centres=_clustered_centres(rng, extent, rmean),
        spacing=sp,
        max_overlap=rng.uniform(0.02, 0.15),
        min_size=min_size,
        min_slices=min_slices,
    )
    lab, n = obj.labels, obj.n
    inside = lab > 0

    # per-object photometry
    bright = np.array([_loguniform(rng, 0.3, 1.0) for _ in range(n + 1)], np.float32)
    if rng.random() < 0.5:  # some dim nuclei among bright ones
        dim = rng.random(n + 1) < rng.uniform(0.1, 0.5)
        bright[dim] *= rng.uniform(0.15, 0.4, int(dim.sum())).astype(np.float32)
    bright[0] = 0
    rim = rng.uniform(-0.35, 0.5, n + 1).astype(np.float32)
    tex_amp = (rng.uniform(0.0, 0.45) * rng.uniform(0.3, 1.0, n + 1)).astype(np.float32)
    tex = _smooth_noise(rng, shape, rng.uniform(0.7, 2.5) / sp)
    d2 = np.minimum(obj.dist, 1.0) ** 2
    sig = bright[lab] * (1 + rim[lab] * (d2 - 0.4)) * (1 + tex_amp[lab] * tex)
    if rng.random() < 0.5:  # nucleoli / chromocentres: dark or bright spots
        spots = np.clip(_smooth_noise(rng, shape, rng.uniform(1.0, 2.2) / sp) - 1.8, 0, None)
        sig *= 1 + rng.choice([-0.6, 0.6]) * np.minimum(spots, 1.0)
    sig = np.where(inside, np.clip(sig, 0, None), 0).astype(np.float32)

    # background: offset level, uneven illumination, out-of-focus haze, debris
    bg = rng.uniform(0.0, 0.2) * (1 + rng.uniform(0, 0.6) * _lowfreq(rng, shape, 3))
    bg = bg + rng.uniform(0, 0.15) * _ramp(rng, shape)
    if rng.random() < 0.5:
        bg = bg + rng.uniform(0.05, 0.2) * _blur(sig, rng.uniform(4, 8) / sp)
    if rng.random() < 0.3:
        bg = bg + rng.uniform(0.2, 0.8) * _sparse_spots(rng, shape, 2e-4, 1.0)
    signal = np.clip(bg, 0, None) + sig
    if rng.random() < 0.6:  # vignetting / illumination falloff
        signal *= 1 - rng.uniform(0, 0.4) * np.clip(_lowfreq(rng, shape, 1.5), 0, None) / 3

    # anisotropic PSF: axial extent 2.5-4x lateral, in physical units
    sxy = rng.uniform(0.5, 2.5) if rng.random() < 0.85 else rng.uniform(2.5, 4.0)
    if ndim == 3:
        sz = sxy * rng.uniform(2.5, 4.0) / sp[0]
        signal = _blur(signal, (max(sz, 0.5), sxy, sxy))
        atten = rng.uniform(0, 0.5)  # deeper slices are dimmer
        signal *= np.exp(-atten * np.linspace(0, 1, shape[0], dtype=np.float32))[:, None, None]
    else:
        sz = 0.0
        signal = _blur(signal, sxy)
    img, cam = _camera(signal, rng, dtype)
    return img, obj.labels, {"psf_sigma": (sz, sxy) if ndim == 3 else sxy, **cam}


def nuclei_2d(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    n_objects: int | None = None,
    dtype: str = "uint16",
    min_size: int = 30,
) -> SyntheticSample:
    """Fluorescent nuclei in 2D: touching, lumpy ellipses of varied size and brightness.

    Radii 6-30 px (one size regime per image), aspect up to 1.8, clumped or
    scattered layouts, per-nucleus brightness (sometimes dim ones next to bright
    ones), chromatin texture, rims or nucleoli, uneven background, out-of-focus
    haze, unlabelled debris, Gaussian PSF blur and Poisson + read noise.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``; same seed, same arrays.
    n_objects : int, optional
        Number of nuclei to try to place; default draws a density. Fewer may fit.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in pixels (smaller fragments become background).

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X)`` of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    img, lab, meta = _nuclei(
        shape, rng, spacing=None, n_objects=n_objects, dtype=dtype, min_size=min_size, min_slices=1
    )
    return SyntheticSample(img, lab, "nuclei", int(seed), meta)


def nuclei_3d(
    shape: Sequence[int] = (32, 128, 128),
    *,
    seed: int = 0,
    anisotropy: float | None = None,
    n_objects: int | None = None,
    dtype: str = "uint16",
    min_size: int = 100,
    min_slices: int = 3,
) -> SyntheticSample:
    """Fluorescent nuclei in 3D: lumpy ellipsoids, PSF elongated along z.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(Z, Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    anisotropy : float, optional
        Z step divided by the lateral pixel size (>= 1). Default draws one
        log-uniformly in [1, 4]; it is recorded in ``meta["anisotropy"]``.
    n_objects : int, optional
        Number of nuclei to try to place; default draws a density.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in voxels.
    min_slices : int
        Every kept instance spans at least this many z slices.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Z, Y, X)`` of ``dtype``, ``labels`` ``(Z, Y, X)`` int32.
    """
    shape = _check_shape(shape, 3)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    anis = _loguniform(rng, 1.0, 4.0) if anisotropy is None else float(anisotropy)
    if anis <= 0:
        raise ValueError("anisotropy must be > 0")
    img, lab, meta = _nuclei(
        shape,
        rng,
        spacing=(anis, 1.0, 1.0),
        n_objects=n_objects,
        dtype=dtype,
        min_size=min_size,
        min_slices=min_slices,
    )
    return SyntheticSample(img, lab, "nuclei", int(seed), {"anisotropy": anis, **meta})


# --------------------------------------------------------------------------------------
# membrane-stained cells (tessellation)
# --------------------------------------------------------------------------------------


def _cells(shape, rng, *, spacing, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape) * sp
    cell = _loguniform(rng, 14.0, 50.0)  # cell diameter, physical px
    stretch = np.ones(ndim)
    stretch[rng.integers(ndim - 2, ndim)] = rng.uniform(1.0, 1.8)  # elongated cells
    # jittered grid of seeds in physical space
    step = cell / stretch
    counts = np.ceil(extent / step).astype(int) + 1
    grid = np.stack(np.meshgrid(*[np.arange(c) for c in counts], indexing="ij"), -1)
    grid = grid.reshape(-1, ndim).astype(float)
    jitter = rng.uniform(0.6, 1.0)  # 1: uniform in each grid cell, lower: more regular
    pts = (grid + rng.uniform(-0.5, 0.5, grid.shape) * jitter) * step
    pts = pts[rng.random(len(pts)) >= rng.uniform(0.0, 0.3)]  # some larger cells
    pts = pts[np.all((pts >= 0) & (pts < extent), axis=1)]
    idx = np.floor(pts / sp).astype(int)
    markers = np.zeros(shape, np.int32)
    markers[tuple(idx.T)] = np.arange(1, len(idx) + 1, dtype=np.int32)
    dseed, inds = ndi.distance_transform_edt(
        markers == 0, sampling=sp * stretch, return_indices=True
    )
    lab = markers[tuple(inds)]
    # warp for curved, irregular walls
    amp = rng.uniform(0.0, 0.25) * cell
    if amp > 0.5:
        coords = np.indices(shape, dtype=np.float32)
        for ax in range(ndim - 2, ndim):
            coords[ax] += amp * _smooth_noise(rng, shape, cell / 2 / sp)
        lab = ndi.map_coordinates(lab, coords, order=0, mode="nearest")
        dseed = ndi.map_coordinates(dseed.astype(np.float32), coords, order=1, mode="nearest")
    # tissue region: keep whole cells that lie mostly inside a smooth blob
    if rng.random() < 0.6:
        field_ = _lowfreq(rng, shape, rng.uniform(1.5, 3.0))
        region = field_ > np.quantile(field_, rng.uniform(0.15, 0.6))
        n = int(lab.max())
        frac = np.bincount(lab[region].ravel(), minlength=n + 1) / np.maximum(
            np.bincount(lab.ravel(), minlength=n + 1), 1
        )
        keep = frac > 0.5
        keep[0] = False
        lab = np.where(keep[lab], lab, 0)
    tissue = lab > 0
    lab = _relabel(lab, min_size, min_slices)
    holes = tissue & (lab == 0)
    if holes.any():  # give dropped slivers to the nearest cell instead of leaving holes
        inds = ndi.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
        lab[holes] = lab[tuple(inds)][holes]
        lab = _relabel(lab, min_size, min_slices)
    n = int(lab.max())

    # membranes on every wall (between cells and towards background)
    width = rng.uniform(0.6, 2.0)
    wall = _blur(_boundaries(lab).astype(np.float32), width / sp)
    wall *= 1.0 / max(float(wall.max()), 1e-6)
    mem_mod = 1 + rng.uniform(0, 0.4) * _lowfreq(rng, shape, 4)
    if rng.random() < 0.4:  # punctate / discontinuous staining
        mem_mod = mem_mod * np.clip(0.6 + 0.6 * _smooth_noise(rng, shape, 1.5 / sp), 0.1, 1.6)
    cyto = rng.uniform(0.03, 0.35) * rng.uniform(0.5, 1.5, n + 1).astype(np.float32)
    cyto[0] = rng.uniform(0.0, 0.1)
    tex = 1 + rng.uniform(0, 0.5) * _smooth_noise(rng, shape, rng.uniform(1, 3) / sp)
    sig = cyto[lab] * tex
    if rng.random() < 0.6:  # nucleus excludes the dye (darker round region in each cell)
        rn = rng.uniform(0.15, 0.3) * cell
        sig = np.where((dseed < rn) & (lab > 0), sig * rng.uniform(0.2, 0.7), sig)
    signal = sig + np.clip(mem_mod, 0, None) * wall * rng.uniform(0.6, 1.0)
    signal *= 1 + rng.uniform(0, 0.3) * _ramp(rng, shape)
    sxy = rng.uniform(0.5, 2.0)
    blur = (max(0.5, sxy * 3 / sp[0]), sxy, sxy) if ndim == 3 else sxy
    img, cam = _camera(_blur(signal.astype(np.float32), blur), rng, dtype)
    return img, lab, {"cell_diameter": cell, **cam}


def cells_membrane_2d(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    dtype: str = "uint16",
    min_size: int = 30,
) -> SyntheticSample:
    """Membrane-stained cells in 2D: a warped Voronoi tissue with bright walls.

    Cells 14-50 px across, possibly elongated, walls curved by a smooth warp,
    sometimes punctate membrane staining, dim textured cytoplasm with a darker
    nucleus, tissue that covers the whole field or a blob of it, Poisson noise.
    Each instance is a whole cell: interior plus its half of the membrane.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in pixels.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X)`` of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    img, lab, meta = _cells(shape, rng, spacing=None, dtype=dtype, min_size=min_size, min_slices=1)
    return SyntheticSample(img, lab, "cells_membrane", int(seed), meta)


def cells_membrane_3d(
    shape: Sequence[int] = (32, 128, 128),
    *,
    seed: int = 0,
    anisotropy: float | None = None,
    dtype: str = "uint16",
    min_size: int = 100,
    min_slices: int = 3,
) -> SyntheticSample:
    """Membrane-stained cells in 3D: a warped 3D Voronoi tissue (see :func:`cells_membrane_2d`).

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(Z, Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    anisotropy : float, optional
        Z step / lateral pixel size; default draws one in [1, 3].
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size, min_slices : int
        Smallest instance kept (voxels) and fewest z slices it spans.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Z, Y, X)`` of ``dtype``, ``labels`` ``(Z, Y, X)`` int32.
    """
    shape = _check_shape(shape, 3)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    anis = _loguniform(rng, 1.0, 3.0) if anisotropy is None else float(anisotropy)
    img, lab, meta = _cells(
        shape, rng, spacing=(anis, 1.0, 1.0), dtype=dtype, min_size=min_size, min_slices=min_slices
    )
    return SyntheticSample(img, lab, "cells_membrane", int(seed), {"anisotropy": anis, **meta})


# --------------------------------------------------------------------------------------
# electron microscopy: organelles
# --------------------------------------------------------------------------------------


def _em(shape, rng, *, spacing, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape) * sp
    level = rng.uniform(0.5, 0.75)
    p_vesicle = rng.uniform(0.0, 0.5)
    mito_minor = _loguniform(rng, 5.0, 14.0)
    zmin = 1.7 * sp[0] if ndim == 3 else 0.0

    def propose(r):
        if r.random() < p_vesicle:  # vesicles, lysosomes: round
            rad = max(_loguniform(r, 4.0, 12.0), zmin)
            return _Shape(
                radius=rad,
                aspect=r.uniform(1.0, 1.3),
                lump=r.uniform(0, 0.05),
                kind=int(r.integers(1, 3)),
            )
        asp = r.uniform(1.5, 4.5)
        mn = max(mito_minor * r.uniform(0.7, 1.3), zmin)
        return _Shape(
            radius=mn * math.sqrt(asp),
            aspect=asp,
            lump=r.uniform(0.01, 0.07),
            bend=r.uniform(-0.35, 0.35),
            kind=0,
            third=r.uniform(0.8, 1.2),
            capsule=r.uniform(0.0, 0.9),
        )

    coverage = rng.uniform(0.08, 0.35)
    vol = float(np.prod(extent))
    typical = (
        (4 / 3 * np.pi * (mito_minor * 1.6) ** 3) if ndim == 3 else np.pi * (mito_minor * 1.6) ** 2
    )
    n = int(np.clip(round(coverage * vol / typical), 2, 300))
    obj = _place(
        shape,
        rng,
        n=n,
        propose=propose,
        spacing=sp,
        max_overlap=rng.uniform(0.0, 0.08),
        min_size=min_size,
        min_slices=min_slices,
    )
    lab = obj.labels
    inside = lab > 0
    kind = obj.kind

    # cytoplasm: granular + mottled texture, slow shading
    img = level * (
        1 + rng.uniform(0.02, 0.1) * _smooth_noise(rng, shape, rng.uniform(0.6, 1.2) / sp)
    )
    img += level * rng.uniform(0.0, 0.07) * _smooth_noise(rng, shape, rng.uniform(3, 7) / sp)
    img += rng.uniform(0.0, 0.1) * _lowfreq(rng, shape, 2)
    if rng.random() < 0.5:  # unlabelled ER / membrane fragments: thin dark curves
        er = _smooth_noise(rng, shape, rng.uniform(6, 14) / sp)
        img -= (
            rng.uniform(0.08, 0.25)
            * np.exp(-((er / 0.07) ** 2))
            * (_smooth_noise(rng, shape, 10 / sp) > 0.3)
        )
    if rng.random() < 0.6:  # ribosomes / glycogen granules
        img -= rng.uniform(0.1, 0.35) * _sparse_spots(rng, shape, rng.uniform(1e-3, 6e-3), 0.8)

    # organelle interiors
    mat = np.array(
        [rng.uniform(0.6, 0.95), rng.uniform(1.05, 1.25), rng.uniform(0.4, 0.7)], np.float32
    )[kind] * rng.uniform(0.9, 1.1, obj.n + 1).astype(np.float32)
    mat[0] = 1
    img = np.where(inside, img * mat[lab], img)
    # cristae: transverse dark stripes along each mitochondrion's long axis
    period = rng.uniform(3.5, 8.0)
    wob = _smooth_noise(rng, shape, 4 / sp)
    stripes = np.cos(2 * np.pi * obj.axial / period + 1.5 * wob)
    thr = rng.uniform(0.4, 0.8)
    cristae = np.clip((stripes - thr) / (1 - thr), 0, 1) * (obj.dist < 0.85) * (kind[lab] == 0)
    img -= rng.uniform(0.1, 0.3) * cristae
    # membranes: dark band inside each outline
    mw = rng.uniform(1.0, 2.8)
    depth = _depth(lab, sp)
    band = inside & (depth < mw)
    img = np.where(band, img * rng.uniform(0.25, 0.55), img)

    # imaging: blur, detector noise, slow brightness drift
    sxy = rng.uniform(0.4, 1.4)
    img = _blur(img.astype(np.float32), (0.3, sxy, sxy) if ndim == 3 else sxy)
    if rng.random() < 0.5:
        img += 0.04 * rng.uniform(0, 1) * _ramp(rng, shape)
    nsig = rng.uniform(0.015, 0.09)
    img = img + nsig * rng.standard_normal(shape, dtype=np.float32) * np.sqrt(
        np.clip(img, 0.05, None) / level
    )
    if rng.random() < 0.3:  # scan-line jitter
        img += rng.uniform(0, 0.03) * rng.standard_normal(shape[:-1] + (1,), dtype=np.float32)
    out, q = _quantize(np.clip(img, 0, 1.2) / 1.2, rng, dtype)
    return out, lab, {"noise": nsig, **q}


def em_organelles_2d(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    dtype: str = "uint8",
    min_size: int = 30,
) -> SyntheticSample:
    """Electron-microscopy organelles in 2D: dark membranes on textured grey.

    Mitochondria-like elongated, bent ellipses with a darker matrix and
    transverse cristae, round vesicles (lighter lumen) and dense lysosomes (dark),
    all outlined by a dark membrane 1-3 px thick; granular cytoplasm with
    unlabelled ER fragments and ribosome dots; blur and signal-dependent noise.

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in pixels.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X)`` of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype, "uint8")
    rng = np.random.default_rng(seed)
    img, lab, meta = _em(shape, rng, spacing=None, dtype=dtype, min_size=min_size, min_slices=1)
    return SyntheticSample(img, lab, "em_organelles", int(seed), meta)


def em_3d(
    shape: Sequence[int] = (32, 128, 128),
    *,
    seed: int = 0,
    anisotropy: float | None = None,
    dtype: str = "uint8",
    min_size: int = 100,
    min_slices: int = 3,
) -> SyntheticSample:
    """Electron-microscopy volume: tubular mitochondria and vesicles in 3D.

    The 3D analogue of :func:`em_organelles_2d` (FIB-SEM when the anisotropy is
    near 1, serial-section TEM when larger): each slice shows slowly varying
    cross-sections of elongated ellipsoids with membranes and cristae.

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(Z, Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    anisotropy : float, optional
        Z step / lateral pixel size; default draws one in [1, 4].
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size, min_slices : int
        Smallest instance kept (voxels) and fewest z slices it spans.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Z, Y, X)`` of ``dtype``, ``labels`` ``(Z, Y, X)`` int32.
    """
    shape = _check_shape(shape, 3)
    dtype = _check_dtype(dtype, "uint8")
    rng = np.random.default_rng(seed)
    anis = _loguniform(rng, 1.0, 4.0) if anisotropy is None else float(anisotropy)
    img, lab, meta = _em(
        shape, rng, spacing=(anis, 1.0, 1.0), dtype=dtype, min_size=min_size, min_slices=min_slices
    )
    return SyntheticSample(img, lab, "em_organelles", int(seed), {"anisotropy": anis, **meta})


# --------------------------------------------------------------------------------------
# X-ray: CT slices / volumes and radiographs
# --------------------------------------------------------------------------------------


def _xray_objects(shape, rng, sp, min_size, min_slices):
    ndim = len(shape)
    extent = np.asarray(shape) * sp
    rmean = _loguniform(rng, 7.0, min(25.0, max(8.0, float(extent.min()) / 5)))
    lump = rng.uniform(0.03, 0.18)
    amax = rng.uniform(1.1, 2.5)
    zmin = 1.7 * sp[0] if ndim == 3 else 0.0

    def propose(r):
        return _Shape(
            radius=max(_loguniform(r, max(6.0, rmean / 1.6), rmean * 1.6), zmin),
            aspect=r.uniform(1.0, amax),
            lump=lump * r.uniform(0.4, 1.0),
            third=r.uniform(0.7, 1.2),
        )

    vol = float(np.prod(extent))
    typical = (4 / 3 * np.pi * rmean**3) if ndim == 3 else np.pi * rmean**2
    n = int(np.clip(round(rng.uniform(0.1, 0.45) * vol / typical), 1, 300))
    return _place(
        shape,
        rng,
        n=n,
        propose=propose,
        spacing=sp,
        centres=_clustered_centres(rng, extent, rmean, 0.3),
        max_overlap=rng.uniform(0.0, 0.1),
        min_size=min_size,
        min_slices=min_slices,
    )


def _xray_ct(shape, rng, *, spacing, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    obj = _xray_objects(shape, rng, sp, min_size, min_slices)
    lab, n = obj.labels, obj.n
    inside = lab > 0
    matrix = rng.uniform(0.15, 0.35)
    dens = rng.uniform(0.45, 1.0, n + 1).astype(np.float32)
    voids = rng.random(n + 1) < rng.uniform(0.0, 0.3)  # pores / low-density inclusions
    dens[voids] = rng.uniform(0.0, 0.4, int(voids.sum())) * matrix
    dens[0] = matrix
    cup = rng.uniform(0.0, 0.3)
    d2 = np.minimum(obj.dist, 1.0) ** 2
    img = dens[lab] * np.where(inside, 1 - cup * (1 - d2), 1.0)
    img = img * (1 + rng.uniform(0.0, 0.12) * _smooth_noise(rng, shape, rng.uniform(0.8, 3.0) / sp))
    # rotation axis along z, through the image centre (+ jitter)
    yc = shape[-2] / 2 + rng.normal(0, shape[-2] / 20)
    xc = shape[-1] / 2 + rng.normal(0, shape[-1] / 20)
    yy = np.arange(shape[-2], dtype=np.float32)[:, None] - yc
    xx = np.arange(shape[-1], dtype=np.float32)[None, :] - xc
    rr = np.sqrt(yy**2 + xx**2)
    rmax = float(np.hypot(*shape[-2:]))
    fov_r = min(shape[-2:]) / 2 * rng.uniform(0.9, 1.4)
    fov = rr < fov_r
    # beam hardening: cupping over the field of view and a linear ramp
    img = img * (1 - rng.uniform(0, 0.2) * (1 - np.clip(rr / fov_r, 0, 1) ** 2))
    img = img + rng.uniform(0, 0.15) * _ramp(rng, shape)
    # ring artefacts: a radial profile of sharp rings, slowly changing along z
    prof = rng.standard_normal(int(rmax) + 2) * (rng.random(int(rmax) + 2) < 0.12)
    prof = ndi.gaussian_filter1d(prof, rng.uniform(0.4, 1.0)).astype(np.float32)
    rings = rng.uniform(0.0, 0.06) * prof[np.minimum(rr.astype(int), len(prof) - 1)]
    img = img + rings
    # streaks radiating through dense objects
    for _ in range(int(rng.integers(0, 7)) if n else 0):
        i = int(rng.integers(1, n + 1))
        cy, cx = obj.centre[i][-2:]
        t = rng.uniform(0, np.pi)
        dl = np.abs(
            (np.arange(shape[-2])[:, None] - cy) * math.cos(t)
            - (np.arange(shape[-1])[None, :] - cx) * math.sin(t)
        )
        w = rng.uniform(0.6, 2.0)
        img = img + rng.choice([-1, 1]) * rng.uniform(0.02, 0.12) * np.exp(
            -(dl**2) / (2 * w * w)
        ).astype(np.float32)
    if fov_r < rmax / 2 and rng.random() < 0.8:  # outside the reconstructed circle
        img = np.where(fov, img, rng.uniform(0.0, 0.08))
    sxy = rng.uniform(0.4, 1.5)
    img = _blur(img.astype(np.float32), sxy / sp)
    nsig = rng.uniform(0.01, 0.08)
    img = img + nsig * rng.standard_normal(shape, dtype=np.float32)
    img = img + rng.uniform(0, 0.04) * _smooth_noise(rng, shape, 1.0 / sp)
    out, q = _quantize(np.clip(img, 0, 1.3) / 1.3, rng, dtype)
    return out, lab, {"mode": "ct", "noise": nsig, **q}


def _xray_radiograph(shape, rng, *, dtype, min_size):
    sp = np.ones(2)
    obj = _xray_objects(shape, rng, sp, min_size, 1)
    lab, n = obj.labels, obj.n
    inside = lab > 0
    # thickness of each object (ellipsoid chord) times its attenuation coefficient
    mu = rng.uniform(0.02, 0.09, n + 1).astype(np.float32)
    mu[0] = 0
    chord = (
        2
        * obj.radius[lab].astype(np.float32)
        * np.sqrt(np.clip(1 - np.minimum(obj.dist, 1) ** 2, 0, 1))
    )
    path = np.where(inside, mu[lab] * chord, 0)
    path = path + rng.uniform(0.0, 0.5) * (1 + 0.5 * _lowfreq(rng, shape, 2))  # base material
    flux = 1 + rng.uniform(0.0, 0.4) * _ramp(rng, shape)  # heel effect
    trans = flux * np.exp(-path)
    sxy = rng.uniform(0.5, 2.0)
    trans = _blur(trans.astype(np.float32), sxy)
    peak = _loguniform(rng, 100, 5000)
    trans = rng.poisson(np.clip(trans, 0, None) * peak).astype(np.float32) / peak
    if rng.random() < 0.5:  # displayed as attenuation (dense = bright)
        trans = -np.log(np.clip(trans, 1e-3, None))
        trans = trans / max(float(trans.max()), 1e-6)
    else:
        trans = trans / max(float(np.quantile(trans, 0.999)), 1e-6)
    out, q = _quantize(np.clip(trans, 0, 1), rng, dtype)
    return out, lab, {"mode": "radiograph", "photons": peak, **q}


def xray_2d(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    mode: str | None = None,
    dtype: str = "uint16",
    min_size: int = 30,
) -> SyntheticSample:
    """X-ray images in 2D: dense lumpy grains in a CT slice or a radiograph.

    ``"ct"``: objects of different density (and some low-density pores) in a
    textured matrix, cupping inside objects and across the field (beam
    hardening), a linear ramp, concentric ring artefacts, bright/dark streaks
    through objects, a circular reconstruction field, Gaussian + correlated noise.
    ``"radiograph"``: Beer-Lambert transmission through ellipsoidal objects
    (thickness gradients), heel-effect ramp and Poisson noise, displayed as
    transmission (dense = dark) or attenuation (dense = bright).

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(Y, X)``.
    seed : int
        Seed of ``np.random.default_rng``.
    mode : {"ct", "radiograph"}, optional
        Default draws CT with probability 0.65.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in pixels.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X)`` of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    if mode is None:
        mode = "ct" if rng.random() < 0.65 else "radiograph"
    if mode == "ct":
        img, lab, meta = _xray_ct(
            shape, rng, spacing=None, dtype=dtype, min_size=min_size, min_slices=1
        )
    elif mode == "radiograph":
        img, lab, meta = _xray_radiograph(shape, rng, dtype=dtype, min_size=min_size)
    else:
        raise ValueError(f"mode must be 'ct' or 'radiograph', got {mode!r}")
    return SyntheticSample(img, lab, "xray", int(seed), meta)


def xray_3d(
    shape: Sequence[int] = (32, 128, 128),
    *,
    seed: int = 0,
    anisotropy: float | None = 1.0,
    dtype: str = "uint16",
    min_size: int = 100,
    min_slices: int = 3,
) -> SyntheticSample:
    """X-ray CT volume: lumpy dense ellipsoids with CT artefacts (see :func:`xray_2d`).

    Parameters
    ----------
    shape : (int, int, int)
        Volume shape ``(Z, Y, X)``; the rotation axis is along z.
    seed : int
        Seed of ``np.random.default_rng``.
    anisotropy : float or None
        Z step / lateral pixel size; CT is usually isotropic (1.0). ``None``
        draws one in [1, 3].
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size, min_slices : int
        Smallest instance kept (voxels) and fewest z slices it spans.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Z, Y, X)`` of ``dtype``, ``labels`` ``(Z, Y, X)`` int32.
    """
    shape = _check_shape(shape, 3)
    dtype = _check_dtype(dtype, "uint16")
    rng = np.random.default_rng(seed)
    anis = _loguniform(rng, 1.0, 3.0) if anisotropy is None else float(anisotropy)
    img, lab, meta = _xray_ct(
        shape, rng, spacing=(anis, 1.0, 1.0), dtype=dtype, min_size=min_size, min_slices=min_slices
    )
    return SyntheticSample(img, lab, "xray", int(seed), {"anisotropy": anis, **meta})


# --------------------------------------------------------------------------------------
# underwater RGB
# --------------------------------------------------------------------------------------


def _hsv_to_rgb(h, s, v):
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack(
        [
            np.stack([v, t, p], -1),
            np.stack([q, v, p], -1),
            np.stack([p, v, t], -1),
            np.stack([p, q, v], -1),
            np.stack([t, p, v], -1),
            np.stack([v, p, q], -1),
        ]
    )
    return table[i, np.arange(len(h))]


def underwater_rgb(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    dtype: str = "uint8",
    min_size: int = 30,
) -> SyntheticSample:
    """Underwater photograph: coloured fish and coral blobs in blue-green haze.

    Fish (elongated, tailed, striped), coral/sponge (lobed, spotted) and rocks
    (lumpy, grey) in random colours, each seen through water of its own distance:
    red is absorbed first and everything fades towards the water colour
    (low contrast). The water darkens with depth, caustic light nets ripple over
    the upper scene, marine snow floats in front (unlabelled), and a sandy floor
    sometimes fills the bottom (unlabelled).

    Parameters
    ----------
    shape : (int, int)
        Spatial shape ``(Y, X)``; the image is ``(Y, X, 3)`` RGB.
    seed : int
        Seed of ``np.random.default_rng``.
    dtype : {"uint8", "uint16"}
        Image dtype.
    min_size : int
        Smallest instance kept, in pixels.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X, 3)`` RGB of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    shape = _check_shape(shape, 2)
    dtype = _check_dtype(dtype, "uint8")
    rng = np.random.default_rng(seed)
    H, W = shape
    p_fish = rng.uniform(0.2, 0.9)
    rmean = _loguniform(rng, 8.0, 30.0)

    def propose(r):
        u = r.random()
        if u < p_fish:
            return _Shape(
                radius=_loguniform(r, max(6.0, rmean / 1.6), rmean * 1.4),
                aspect=r.uniform(1.8, 4.0),
                lump=r.uniform(0.0, 0.05),
                bend=r.uniform(-0.15, 0.15),
                tail=True,
                angle=np.pi / 2 + r.uniform(-0.5, 0.5) + np.pi * r.integers(2),
                kind=0,
            )
        if u < p_fish + (1 - p_fish) * 0.7:
            return _Shape(
                radius=_loguniform(r, max(7.0, rmean / 1.4), rmean * 1.8),
                aspect=r.uniform(1.0, 2.0),
                lump=r.uniform(0.12, 0.3),
                kind=1,
            )
        return _Shape(
            radius=_loguniform(r, 8.0, rmean * 1.5),
            aspect=r.uniform(1.0, 1.8),
            lump=r.uniform(0.05, 0.15),
            kind=2,
        )

    n = int(np.clip(round(rng.uniform(0.08, 0.35) * H * W / (np.pi * rmean**2)), 1, 80))
    obj = _place(
        shape, rng, n=n, propose=propose, max_overlap=rng.uniform(0.0, 0.12), min_size=min_size
    )
    lab, kind = obj.labels, obj.kind
    m = obj.n
    inside = lab > 0
    yy = np.linspace(0, 1, H, dtype=np.float32)[:, None]

    # water colour: blue-green, brighter towards the surface
    water = np.array(
        [rng.uniform(0.02, 0.2), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.7)], np.float32
    )
    water = water * rng.uniform(0.6, 1.1)
    depth_grad = 1 - rng.uniform(0.2, 0.6) * yy
    bgw = water[None, None, :] * depth_grad[..., None]
    bgw = bgw * (1 + 0.08 * _lowfreq(rng, shape, 2))[..., None]

    # object albedo (HSV colours), per-kind texture
    hue = rng.uniform(0, 1, m + 1)
    sat = rng.uniform(0.3, 0.9, m + 1)
    val = rng.uniform(0.4, 1.0, m + 1)
    sat[kind == 2] *= 0.2  # rocks: greyish
    albedo = _hsv_to_rgb(hue, sat, val).astype(np.float32)  # (m+1, 3)
    col = albedo[lab]
    shade = 1 + rng.uniform(0.2, 0.5) * (_ramp(rng, shape) * 0 - (yy - 0.5) * 0.5)  # top lit
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * obj.axial / rng.uniform(4, 10))
    spots = np.clip(_smooth_noise(rng, shape, rng.uniform(1.0, 3.0)), -1, 2)
    tex = np.where(kind[lab] == 0, 1 - rng.uniform(0, 0.4) * stripes, 1 + 0.2 * spots).astype(
        np.float32
    )
    # rounded body shading: darker rim
    body = 1 - 0.35 * np.minimum(obj.dist, 1) ** 3
    col = col * (tex * body * shade)[..., None]

    # haze: each object at its own distance; red attenuates fastest
    beta = np.array(
        [rng.uniform(1.5, 3.0), rng.uniform(0.5, 1.1), rng.uniform(0.3, 0.9)], np.float32
    )
    dist = rng.uniform(0.3, 1.3, m + 1).astype(np.float32)
    t = np.exp(-beta[None, :] * dist[:, None])  # (m+1, 3)
    tpix = t[lab]
    img = np.where(inside[..., None], col * tpix + bgw * (1 - tpix), bgw)

    if rng.random() < 0.5:  # sandy floor at the bottom, behind the objects
        floor_y = rng.uniform(0.55, 0.9)
        edge = floor_y + 0.05 * _lowfreq(rng, (1, W), 2)[0]
        floor = (yy > edge[None, :]) & ~inside
        sand = (
            np.array([0.8, 0.7, 0.5], np.float32)
            * (1 + 0.15 * _smooth_noise(rng, shape, 2.0))[..., None]
        )
        ts = np.exp(-beta * rng.uniform(0.6, 1.2))
        img = np.where(floor[..., None], sand * ts + bgw * (1 - ts), img)

    # caustics: bright nets from zero crossings of a smooth field, fading with depth
    cz = _smooth_noise(rng, shape, rng.uniform(5, 14))
    caustic = np.exp(-((cz / rng.uniform(0.06, 0.15)) ** 2))
    caustic = _blur(caustic, 0.7) * np.exp(-yy * rng.uniform(1.5, 4.0))
    img = img * (1 + rng.uniform(0.1, 0.6) * caustic[..., None])
    # marine snow in front
    if rng.random() < 0.7:
        snow = _sparse_spots(rng, shape, rng.uniform(2e-4, 2e-3), rng.uniform(0.5, 1.2))
        img = img + rng.uniform(0.1, 0.4) * np.clip(snow, 0, 1)[..., None]
    img = _blur(img.astype(np.float32), (rng.uniform(0.4, 1.5),) * 2 + (0,))
    img = img + rng.uniform(0.005, 0.04) * rng.standard_normal(img.shape, dtype=np.float32)
    gain = 1.0 / max(float(np.quantile(img, 0.995)), 1e-3) * rng.uniform(0.7, 1.0)
    out, q = _quantize(np.clip(img * gain, 0, 1), rng, dtype)
    return SyntheticSample(out, lab, "underwater", int(seed), q)


# --------------------------------------------------------------------------------------
# registries and datasets
# --------------------------------------------------------------------------------------

#: 2D generators by domain name: ``f(shape=(Y, X), *, seed, dtype=...) -> SyntheticSample``.
DOMAINS: dict[str, Callable[..., SyntheticSample]] = {
    "nuclei": nuclei_2d,
    "cells_membrane": cells_membrane_2d,
    "em_organelles": em_organelles_2d,
    "xray": xray_2d,
    "underwater": underwater_rgb,
}

#: 3D generators by domain name: ``f(shape=(Z, Y, X), *, seed, dtype=...) -> SyntheticSample``.
DOMAINS_3D: dict[str, Callable[..., SyntheticSample]] = {
    "nuclei": nuclei_3d,
    "cells_membrane": cells_membrane_3d,
    "em_organelles": em_3d,
    "xray": xray_3d,
}


def make_dataset(
    domains: str | Iterable[str] = "all",
    n: int = 16,
    *,
    seed: int = 0,
    shape: Sequence[int] | None = None,
    ndim: int = 2,
    dtype: str | None = None,
) -> list[SyntheticSample]:
    """Generate ``n`` samples cycling over ``domains``, with deterministic seeds.

    Sample ``i`` uses domain ``domains[i % len(domains)]`` and seed ``seed + i``,
    so ``DOMAINS[s.domain](shape, seed=s.seed)`` regenerates any sample ``s``.
    Training uses seeds ``< HELDOUT_SEED_START`` (10 000); tests use held-out
    seeds ``>= 10 000``. A range that would straddle the boundary is refused.
    Datasets with seeds ``s0`` and ``s1`` share samples if their ranges
    ``[s, s + n)`` overlap, so give different datasets disjoint ranges.

    Parameters
    ----------
    domains : str or iterable of str
        Names in :data:`DOMAINS` (2D) or :data:`DOMAINS_3D` (3D), or ``"all"``.
        A ``_2d``/``_3d`` suffix is accepted and ignored.
    n : int
        Number of samples.
    seed : int
        First seed of the range ``[seed, seed + n)``.
    shape : sequence of int, optional
        ``(Y, X)`` or ``(Z, Y, X)``; its length sets the dimensionality. Default
        is each generator's default shape for ``ndim``.
    ndim : {2, 3}
        Used when ``shape`` is None.
    dtype : {"uint8", "uint16"}, optional
        Image dtype for all samples; default each domain's default.

    Returns
    -------
    list of SyntheticSample
    """
    if shape is not None:
        ndim = len(shape)
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    registry = DOMAINS if ndim == 2 else DOMAINS_3D
    if isinstance(domains, str):
        domains = list(registry) if domains == "all" else [domains]
    names = []
    for d in domains:
        key = d[:-3] if d.endswith(("_2d", "_3d")) else d
        if key not in registry:
            raise KeyError(f"unknown {ndim}D domain {d!r}; choose from {sorted(registry)}")
        names.append(key)
    if not names:
        raise ValueError("domains is empty")
    seed = int(seed)
    if seed < 0 or (seed < HELDOUT_SEED_START < seed + n):
        raise ValueError(
            f"seeds [{seed}, {seed + n}) straddle the held-out boundary {HELDOUT_SEED_START}: "
            "training seeds must stay below it, test seeds at or above it"
        )
    kwargs = {} if dtype is None else {"dtype": dtype}
    if shape is not None:
        kwargs["shape"] = tuple(shape)
    return [registry[names[i % len(names)]](seed=seed + i, **kwargs) for i in range(n)]


def _benchmark(repeats: int = 5) -> dict[str, float]:  # pragma: no cover - manual tool
    """Mean generation time per domain at the default shapes; prints wall and CPU ms.

    CPU time (``time.process_time``) is the better number on a shared machine.
    Targets: 2D (256, 256) well under 50 ms, 3D (32, 128, 128) under ~500 ms.
    """
    out = {}
    for reg, tag in ((DOMAINS, "2d"), (DOMAINS_3D, "3d")):
        for name, fn in reg.items():
            t0, c0 = time.perf_counter(), time.process_time()
            for s in range(repeats):
                fn(seed=HELDOUT_SEED_START + s)
            wall = (time.perf_counter() - t0) / repeats * 1e3
            cpu = (time.process_time() - c0) / repeats * 1e3
            out[f"{name}_{tag}"] = cpu
            print(f"{name + '_' + tag:22s} wall {wall:8.1f} ms   cpu {cpu:8.1f} ms")
    return out


def _montage(path: str, seeds: Sequence[int] = (10_000, 10_001, 10_002, 10_003)) -> np.ndarray:
    """Save a PNG overview: one row per domain (2D, then 3D mid-slices), image | outlines.

    A visual check, not part of the API; needs Pillow. Returns the (H, W, 3) uint8 montage.
    """  # pragma: no cover - manual tool
    from PIL import Image

    def tile(img, lab, size=256):
        img = img.astype(np.float32)
        lo, hi = np.percentile(img, (0.5, 99.8))
        g = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
        rgb = (np.repeat(g[..., None], 3, -1) if g.ndim == 2 else g) * 255
        f = max(1, size // max(lab.shape))
        rgb = np.kron(rgb, np.ones((f, f, 1))).astype(np.uint8)
        lab = np.kron(lab, np.ones((f, f), lab.dtype))
        over = rgb.copy()
        over[_boundaries(lab)] = (255, 60, 60)
        out = np.zeros((size, 2 * size + 2, 3), np.uint8)
        out[: rgb.shape[0], : rgb.shape[1]] = rgb
        out[: rgb.shape[0], size + 2 : size + 2 + rgb.shape[1]] = over
        return out

    rows = []
    for reg in (DOMAINS, DOMAINS_3D):
        for fn in reg.values():
            tiles = []
            for seed in seeds:
                smp = fn(seed=seed)
                z = smp.image.shape[0] // 2 if smp.ndim == 3 else slice(None)
                tiles += [tile(smp.image[z], smp.labels[z]), np.full((256, 6, 3), 90, np.uint8)]
            rows += [np.concatenate(tiles, 1), np.full((6, len(seeds) * 520, 3), 90, np.uint8)]
    im = np.concatenate(rows, 0)
    Image.fromarray(im).save(path)
    return im


if __name__ == "__main__":  # pragma: no cover
    import argparse

    parser = argparse.ArgumentParser(description="Benchmark the generators or save a montage.")
    parser.add_argument("--montage", metavar="PNG", help="save an overview of all domains")
    args = parser.parse_args()
    if args.montage:
        _montage(args.montage)
        print(f"saved {args.montage}")
    else:
        _benchmark()
