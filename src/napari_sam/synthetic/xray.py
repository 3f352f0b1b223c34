"""X-ray images: dense lumpy grains in CT slices / volumes (cupping, ramps, rings, streaks)
or in radiographs (Beer-Lambert transmission).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .detectors import quantize
from .fields import blur, loguniform, lowfreq, ramp, smooth_noise
from .placement import ObjectShape, clustered_centres, place_objects
from .sample import SyntheticSample, make_sample

__all__ = ["xray_2d", "xray_3d"]


def _xray_objects(shape, rng, sp, min_size, min_slices):
    ndim = len(shape)
    extent = np.asarray(shape) * sp
    rmean = loguniform(rng, 7.0, min(25.0, max(8.0, float(extent.min()) / 5)))
    lump = rng.uniform(0.03, 0.18)
    amax = rng.uniform(1.1, 2.5)
    zmin = 1.7 * sp[0] if ndim == 3 else 0.0

    def propose(r):
        return ObjectShape(
            radius=max(loguniform(r, max(6.0, rmean / 1.6), rmean * 1.6), zmin),
            aspect=r.uniform(1.0, amax),
            lump=lump * r.uniform(0.4, 1.0),
            third=r.uniform(0.7, 1.2),
        )

    vol = float(np.prod(extent))
    typical = (4 / 3 * np.pi * rmean**3) if ndim == 3 else np.pi * rmean**2
    n = int(np.clip(round(rng.uniform(0.1, 0.45) * vol / typical), 1, 300))
    return place_objects(
        shape,
        rng,
        n=n,
        propose=propose,
        spacing=sp,
        centres=clustered_centres(rng, extent, rmean, 0.3),
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
    img = img * (1 + rng.uniform(0.0, 0.12) * smooth_noise(rng, shape, rng.uniform(0.8, 3.0) / sp))
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
    img = img + rng.uniform(0, 0.15) * ramp(rng, shape)
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
    img = blur(img.astype(np.float32), sxy / sp)
    nsig = rng.uniform(0.01, 0.08)
    img = img + nsig * rng.standard_normal(shape, dtype=np.float32)
    img = img + rng.uniform(0, 0.04) * smooth_noise(rng, shape, 1.0 / sp)
    out, q = quantize(np.clip(img, 0, 1.3) / 1.3, rng, dtype)
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
    path = path + rng.uniform(0.0, 0.5) * (1 + 0.5 * lowfreq(rng, shape, 2))  # base material
    flux = 1 + rng.uniform(0.0, 0.4) * ramp(rng, shape)  # heel effect
    trans = flux * np.exp(-path)
    sxy = rng.uniform(0.5, 2.0)
    trans = blur(trans.astype(np.float32), sxy)
    peak = loguniform(rng, 100, 5000)
    trans = rng.poisson(np.clip(trans, 0, None) * peak).astype(np.float32) / peak
    if rng.random() < 0.5:  # displayed as attenuation (dense = bright)
        trans = -np.log(np.clip(trans, 1e-3, None))
        trans = trans / max(float(trans.max()), 1e-6)
    else:
        trans = trans / max(float(np.quantile(trans, 0.999)), 1e-6)
    out, q = quantize(np.clip(trans, 0, 1), rng, dtype)
    return out, lab, {"mode": "radiograph", "photons": peak, **q}


def _xray_2d(shape, rng, *, spacing, dtype, min_size, min_slices, mode):
    """A CT slice or a radiograph (``mode`` None: CT with probability 0.65)."""
    if mode is None:
        mode = "ct" if rng.random() < 0.65 else "radiograph"
    if mode == "ct":
        return _xray_ct(shape, rng, spacing=spacing, dtype=dtype, min_size=min_size,
                        min_slices=min_slices)
    if mode == "radiograph":
        return _xray_radiograph(shape, rng, dtype=dtype, min_size=min_size)
    raise ValueError(f"mode must be 'ct' or 'radiograph', got {mode!r}")


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
    return make_sample(_xray_2d, "xray", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, mode=mode)


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
    return make_sample(_xray_ct, "xray", shape, 3, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, min_slices=min_slices,
                       anisotropy=anisotropy, anisotropy_range=(1.0, 3.0))
