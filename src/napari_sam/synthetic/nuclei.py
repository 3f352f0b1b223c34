"""Fluorescent nuclei in 2D and 3D: touching lumpy ellipses (ellipsoids) of varied size,
brightness and texture on an uneven background, PSF blur (longer along z) and camera noise.

:func:`nuclei_real_2d` and :func:`nuclei_real_3d` (training only, not in ``DOMAINS``) draw
what real widefield / confocal stacks have and the default scenes lack: small crowded
nuclei in small images (so they are upscaled to the model's input, noise and all), a
bright centre that fades towards the outline the labels follow, strong out-of-focus haze
and background gradients, few photons (40-800 at the brightest nucleus, Poisson + read
noise), coarse chromatin texture, dim small nuclei next to bright ones and intensity that
wobbles from slice to slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .detectors import camera
from .fields import blur, loguniform, lowfreq, ramp, smooth_noise, sparse_spots
from .placement import ObjectShape, clustered_centres, place_objects
from .sample import SyntheticSample, make_sample

__all__ = ["nuclei_2d", "nuclei_3d", "nuclei_real_2d", "nuclei_real_3d"]


def _nuclei(shape, rng, *, spacing, n_objects, dtype, min_size, min_slices, radius=None,
            real=False):
    # ``real``: the realism of nuclei_real_*, only in branches the default scene never
    # takes, so the default scenes of every seed draw exactly what they drew before
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape) * sp
    rmean = loguniform(rng, 7.0, min(22.0, max(8.0, float(extent.min()) / 5)))
    rlo = max(6.0, rmean / rng.uniform(1.1, 1.6), 1.6 * sp[0] if ndim == 3 else 0.0)
    rhi = max(rlo * 1.05, min(30.0, rmean * rng.uniform(1.1, 1.6)))
    if real and radius is None:  # small nuclei: 9-22 px across before the model's resize
        rmean = loguniform(rng, 4.5, 11.0)
        rlo = max(3.5, rmean / rng.uniform(1.15, 1.5), 1.3 * sp[0] if ndim == 3 else 0.0)
        rhi = max(rlo * 1.1, rmean * rng.uniform(1.15, 1.5))
    if radius is not None:  # the caller's size range (the draws above keep the stream)
        rlo, rhi = (float(v) for v in radius)
        rmean = math.sqrt(rlo * rhi)
    amax = rng.uniform(1.05, 1.8)
    lump = rng.uniform(0.0, 0.12)
    coverage = rng.uniform(0.15, 0.5)
    if real:  # crowded: most nuclei touch a neighbour
        amax = rng.uniform(1.05, 1.5)
        coverage = rng.uniform(0.45, 0.8)
    if n_objects is None:
        vol = float(np.prod(extent))
        obj = (4 / 3 * np.pi * rmean**3) if ndim == 3 else np.pi * rmean**2
        n_objects = int(np.clip(round(coverage * vol / obj), 1, 400))

    def propose(r):
        return ObjectShape(
            radius=loguniform(r, rlo, rhi),
            aspect=r.uniform(1.0, amax),
            lump=lump * r.uniform(0.3, 1.0),
            third=r.uniform(0.75, 1.1),
        )

    obj = place_objects(
        shape,
        rng,
        n=n_objects,
        propose=propose,
        centres=clustered_centres(rng, extent, rmean),
        spacing=sp,
        max_overlap=rng.uniform(0.02, 0.15) if not real else rng.uniform(0.1, 0.3),
        min_size=min_size,
        min_slices=min_slices,
    )
    return _nuclei_image(rng, obj, shape, sp, dtype, real)


def _nuclei_image(rng, obj, shape, sp, dtype, real):
    """The image of placed nuclei ``obj``: photometry, background, PSF and camera (the
    second half of :func:`_nuclei`, same random stream). Returns (image, labels, meta)."""
    ndim = len(shape)
    lab, n = obj.labels, obj.n
    inside = lab > 0

    # per-object photometry
    if real:
        bright, rim, tex_amp, tex = _real_photometry(rng, obj, n, shape, sp)
    else:
        bright = np.array([loguniform(rng, 0.3, 1.0) for _ in range(n + 1)], np.float32)
        if rng.random() < 0.5:  # some dim nuclei among bright ones
            dim = rng.random(n + 1) < rng.uniform(0.1, 0.5)
            bright[dim] *= rng.uniform(0.15, 0.4, int(dim.sum())).astype(np.float32)
        bright[0] = 0
        rim = rng.uniform(-0.35, 0.5, n + 1).astype(np.float32)
        tex_amp = (rng.uniform(0.0, 0.45) * rng.uniform(0.3, 1.0, n + 1)).astype(np.float32)
        tex = smooth_noise(rng, shape, rng.uniform(0.7, 2.5) / sp)
    d2 = np.minimum(obj.dist, 1.0) ** 2
    sig = bright[lab] * (1 + rim[lab] * (d2 - 0.4)) * (1 + tex_amp[lab] * tex)
    if real:  # a bright centre fading towards the outline (dome), not a flat disc
        dome = rng.uniform(0.1, 0.5)
        sig *= 1 - dome * np.minimum(obj.dist, 1.0) ** rng.uniform(1.5, 3.0)
    if rng.random() < (0.5 if not real else 0.75):  # nucleoli / chromocentres
        spots = np.clip(smooth_noise(rng, shape, rng.uniform(1.0, 2.2) / sp) - 1.8, 0, None)
        sig *= 1 + rng.choice([-0.6, 0.6]) * np.minimum(spots, 1.0)
    sig = np.where(inside, np.clip(sig, 0, None), 0).astype(np.float32)

    # background: offset level, uneven illumination, out-of-focus haze, debris
    bg = rng.uniform(0.0, 0.2) * (1 + rng.uniform(0, 0.6) * lowfreq(rng, shape, 3))
    bg = bg + rng.uniform(0, 0.15) * ramp(rng, shape)
    if rng.random() < 0.5:
        bg = bg + rng.uniform(0.05, 0.2) * blur(sig, rng.uniform(4, 8) / sp)
    if rng.random() < 0.3:
        bg = bg + rng.uniform(0.2, 0.8) * sparse_spots(rng, shape, 2e-4, 1.0)
    if real:
        bg = bg + _real_background(rng, sig, shape, sp)
    signal = np.clip(bg, 0, None) + sig
    if rng.random() < 0.6:  # vignetting / illumination falloff
        signal *= 1 - rng.uniform(0, 0.4) * np.clip(lowfreq(rng, shape, 1.5), 0, None) / 3

    # anisotropic PSF: axial extent 2.5-4x lateral, in physical units
    sxy = rng.uniform(0.5, 2.5) if rng.random() < 0.85 else rng.uniform(2.5, 4.0)
    if real:  # small nuclei: a PSF of about a pixel laterally, 2-5 times that along z
        sxy = rng.uniform(0.5, 1.6)
    if ndim == 3:
        sz = sxy * (rng.uniform(2.5, 4.0) if not real else rng.uniform(2.0, 5.0)) / sp[0]
        signal = blur(signal, (max(sz, 0.5), sxy, sxy))
        atten = rng.uniform(0, 0.5)  # deeper slices are dimmer
        signal *= np.exp(-atten * np.linspace(0, 1, shape[0], dtype=np.float32))[:, None, None]
        if real:  # intensity wobbles from slice to slice (lamp, scanning, refocusing)
            signal *= _z_wobble(rng, shape[0])[:, None, None]
    else:
        sz = 0.0
        signal = blur(signal, sxy)
    # realistic scenes: few photons, Poisson-Gaussian noise dominates
    img, cam = camera(signal, rng, dtype, **({"photons": (40, 800)} if real else {}))
    real_meta = {"real": True} if real else {}
    return img, obj.labels, {"psf_sigma": (sz, sxy) if ndim == 3 else sxy, **real_meta, **cam}


def _real_photometry(rng, obj, n, shape, sp):
    """Per-nucleus brightness, rim, texture of the realistic scenes (``n`` nuclei): smaller
    nuclei dimmer (dim small nuclei beside bright large ones), flat or dimmer rims, coarse
    strong chromatin texture. Returns (bright, rim, tex_amp, tex) as the default scene uses
    them."""
    radius = np.asarray(obj.radius, np.float32)  # (n + 1,), index 0 unused
    bright = np.array([loguniform(rng, 0.5, 1.0) for _ in range(n + 1)], np.float32)
    if len(radius) == n + 1 and n > 0:
        rel = radius[1:] / max(float(radius[1:].max()), 1e-6)
        bright[1:] *= np.clip(rel, 0.05, 1.0) ** rng.uniform(0.0, 1.0)
    if rng.random() < 0.5:
        dim = rng.random(n + 1) < rng.uniform(0.05, 0.3)
        bright[dim] *= rng.uniform(0.25, 0.6, int(dim.sum())).astype(np.float32)
    bright[0] = 0
    rim = rng.uniform(-0.5, 0.15, n + 1).astype(np.float32)
    tex_amp = (rng.uniform(0.15, 0.55) * rng.uniform(0.5, 1.0, n + 1)).astype(np.float32)
    tex = smooth_noise(rng, shape, rng.uniform(0.6, 1.6) / sp)
    return bright, rim, tex_amp, tex


def _real_background(rng, sig, shape, sp):
    """Extra background of the realistic scenes: out-of-focus haze from the nuclei (up to
    about half the brightest nucleus, wider along z), a raised floor, a gradient."""
    ndim = len(shape)
    wide = rng.uniform(3.0, 8.0)
    sigma = (wide * rng.uniform(1.5, 3.0) / sp[0], wide, wide) if ndim == 3 else wide
    haze = blur(sig, np.asarray(sigma, float))
    haze = haze / max(float(haze.max()), 1e-6)
    extra = rng.uniform(0.05, 0.45) * haze
    extra = extra + rng.uniform(0.03, 0.3) * (1 + 0.5 * lowfreq(rng, shape, 2))
    extra = extra + rng.uniform(0.0, 0.3) * (ramp(rng, shape) + 0.5)
    return np.clip(extra, 0, None).astype(np.float32)


def _z_wobble(rng, nz):
    """Per-slice gain: a slow drift plus slice-to-slice flicker, about 1."""
    slow = np.cumsum(rng.standard_normal(nz)).astype(np.float32)
    slow = (slow - slow.mean()) / max(float(slow.std()), 1e-6)
    gain = 1 + rng.uniform(0.0, 0.2) * slow + rng.uniform(0.0, 0.08) * rng.standard_normal(nz)
    return np.clip(gain, 0.5, 1.6).astype(np.float32)


def nuclei_real_2d(
    shape: Sequence[int] = (96, 96),
    *,
    seed: int = 0,
    dtype: str = "uint16",
    min_size: int = 15,
    n_objects: int | None = None,
) -> SyntheticSample:
    """Realistic fluorescent nuclei in 2D for training (see the module docstring): small
    crowded nuclei (radius 3.5-16 px), dome-shaped intensity, strong haze, few photons.

    Same arguments and return value as :func:`nuclei_2d`; ``meta["real"]`` is True.
    """
    return make_sample(_nuclei, "nuclei_real", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, n_objects=n_objects,
                       real=True)


def nuclei_real_3d(
    shape: Sequence[int] = (32, 64, 64),
    *,
    seed: int = 0,
    anisotropy: float | None = None,
    dtype: str = "uint16",
    min_size: int = 40,
    min_slices: int = 3,
    n_objects: int | None = None,
) -> SyntheticSample:
    """Realistic fluorescent nuclei in 3D for training (see the module docstring): small
    crowded nuclei, a PSF 2-5 times longer along z, haze, slice-to-slice intensity wobble.

    Same arguments and return value as :func:`nuclei_3d` (anisotropy drawn in [1.2, 3]);
    ``meta["real"]`` is True.
    """
    if anisotropy is not None and float(anisotropy) <= 0:
        raise ValueError("anisotropy must be > 0")
    return make_sample(_nuclei, "nuclei_real", shape, 3, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, min_slices=min_slices,
                       anisotropy=anisotropy, anisotropy_range=(1.2, 3.0),
                       n_objects=n_objects, real=True)


def nuclei_2d(
    shape: Sequence[int] = (256, 256),
    *,
    seed: int = 0,
    n_objects: int | None = None,
    dtype: str = "uint16",
    min_size: int = 30,
    radius: tuple[float, float] | None = None,
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
    radius : (float, float), optional
        Range of the nuclei's radii in pixels (e.g. ``(4, 10)`` for nuclei 8-20 px across in
        a large image); default: drawn per image as above.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Y, X)`` of ``dtype``, ``labels`` ``(Y, X)`` int32.
    """
    return make_sample(_nuclei, "nuclei", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, n_objects=n_objects,
                       radius=radius)


def nuclei_3d(
    shape: Sequence[int] = (32, 128, 128),
    *,
    seed: int = 0,
    anisotropy: float | None = None,
    n_objects: int | None = None,
    dtype: str = "uint16",
    min_size: int = 100,
    min_slices: int = 3,
    radius: tuple[float, float] | None = None,
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
    radius : (float, float), optional
        Range of the nuclei's radii in pixels (e.g. ``(4, 10)`` for small nuclei in large
        slices); default: drawn per volume as for :func:`nuclei_2d`.

    Returns
    -------
    SyntheticSample
        ``image`` ``(Z, Y, X)`` of ``dtype``, ``labels`` ``(Z, Y, X)`` int32.
    """
    if anisotropy is not None and float(anisotropy) <= 0:
        raise ValueError("anisotropy must be > 0")
    return make_sample(_nuclei, "nuclei", shape, 3, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, min_slices=min_slices,
                       anisotropy=anisotropy, anisotropy_range=(1.0, 4.0), n_objects=n_objects,
                       radius=radius)
