"""Electron-microscopy organelles in 2D and 3D: mitochondria with cristae, vesicles and
lysosomes outlined by dark membranes on granular grey cytoplasm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .detectors import quantize
from .fields import blur, loguniform, lowfreq, outline_depth, ramp, smooth_noise, sparse_spots
from .placement import ObjectShape, PlacedObjects, place_objects
from .sample import SyntheticSample, make_sample

__all__ = ["em_3d", "em_organelles_2d"]


def _organelles(shape, rng, sp, min_size, min_slices) -> PlacedObjects:
    """Place mitochondria (kind 0: long, bent capsules) and round vesicles / lysosomes
    (kinds 1, 2) covering 8-35 % of the field."""
    ndim = len(shape)
    extent = np.asarray(shape) * sp
    p_vesicle = rng.uniform(0.0, 0.5)
    mito_minor = loguniform(rng, 5.0, 14.0)
    zmin = 1.7 * sp[0] if ndim == 3 else 0.0

    def propose(r):
        if r.random() < p_vesicle:  # vesicles, lysosomes: round
            rad = max(loguniform(r, 4.0, 12.0), zmin)
            return ObjectShape(
                radius=rad,
                aspect=r.uniform(1.0, 1.3),
                lump=r.uniform(0, 0.05),
                kind=int(r.integers(1, 3)),
            )
        asp = r.uniform(1.5, 4.5)
        mn = max(mito_minor * r.uniform(0.7, 1.3), zmin)
        return ObjectShape(
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
    obj = place_objects(
        shape,
        rng,
        n=n,
        propose=propose,
        spacing=sp,
        max_overlap=rng.uniform(0.0, 0.08),
        min_size=min_size,
        min_slices=min_slices,
    )
    return obj


def _cytoplasm(shape, rng, sp, level: float) -> np.ndarray:
    """Granular + mottled grey around ``level``, slow shading, unlabelled ER and granules."""
    # cytoplasm: granular + mottled texture, slow shading
    img = level * (
        1 + rng.uniform(0.02, 0.1) * smooth_noise(rng, shape, rng.uniform(0.6, 1.2) / sp)
    )
    img += level * rng.uniform(0.0, 0.07) * smooth_noise(rng, shape, rng.uniform(3, 7) / sp)
    img += rng.uniform(0.0, 0.1) * lowfreq(rng, shape, 2)
    if rng.random() < 0.5:  # unlabelled ER / membrane fragments: thin dark curves
        er = smooth_noise(rng, shape, rng.uniform(6, 14) / sp)
        img -= (
            rng.uniform(0.08, 0.25)
            * np.exp(-((er / 0.07) ** 2))
            * (smooth_noise(rng, shape, 10 / sp) > 0.3)
        )
    if rng.random() < 0.6:  # ribosomes / glycogen granules
        img -= rng.uniform(0.1, 0.35) * sparse_spots(rng, shape, rng.uniform(1e-3, 6e-3), 0.8)
    return img


def _draw_organelles(img, obj: PlacedObjects, rng, sp) -> np.ndarray:
    """Organelle interiors (per-kind density), cristae along mitochondria, dark membranes."""
    shape = img.shape
    lab, kind = obj.labels, obj.kind
    inside = lab > 0

    # organelle interiors
    mat = np.array(
        [rng.uniform(0.6, 0.95), rng.uniform(1.05, 1.25), rng.uniform(0.4, 0.7)], np.float32
    )[kind] * rng.uniform(0.9, 1.1, obj.n + 1).astype(np.float32)
    mat[0] = 1
    img = np.where(inside, img * mat[lab], img)
    # cristae: transverse dark stripes along each mitochondrion's long axis
    period = rng.uniform(3.5, 8.0)
    wob = smooth_noise(rng, shape, 4 / sp)
    stripes = np.cos(2 * np.pi * obj.axial / period + 1.5 * wob)
    thr = rng.uniform(0.4, 0.8)
    cristae = np.clip((stripes - thr) / (1 - thr), 0, 1) * (obj.dist < 0.85) * (kind[lab] == 0)
    img -= rng.uniform(0.1, 0.3) * cristae
    # membranes: dark band inside each outline
    mw = rng.uniform(1.0, 2.8)
    depth = outline_depth(lab, sp)
    band = inside & (depth < mw)
    img = np.where(band, img * rng.uniform(0.25, 0.55), img)
    return img


def _em_imaging(img, rng, dtype: str, level: float) -> tuple[np.ndarray, float, dict]:
    """Blur, brightness drift, signal-dependent noise, scan-line jitter, quantisation;
    returns (image, noise sigma, quantisation meta)."""
    shape = img.shape
    ndim = len(shape)
    sxy = rng.uniform(0.4, 1.4)
    img = blur(img.astype(np.float32), (0.3, sxy, sxy) if ndim == 3 else sxy)
    if rng.random() < 0.5:
        img += 0.04 * rng.uniform(0, 1) * ramp(rng, shape)
    nsig = rng.uniform(0.015, 0.09)
    img = img + nsig * rng.standard_normal(shape, dtype=np.float32) * np.sqrt(
        np.clip(img, 0.05, None) / level
    )
    if rng.random() < 0.3:  # scan-line jitter
        img += rng.uniform(0, 0.03) * rng.standard_normal(shape[:-1] + (1,), dtype=np.float32)
    out, q = quantize(np.clip(img, 0, 1.2) / 1.2, rng, dtype)
    return out, nsig, q


def _em(shape, rng, *, spacing, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    level = rng.uniform(0.5, 0.75)
    obj = _organelles(shape, rng, sp, min_size, min_slices)
    img = _cytoplasm(shape, rng, sp, level)
    img = _draw_organelles(img, obj, rng, sp)
    out, nsig, q = _em_imaging(img, rng, dtype, level)
    return out, obj.labels, {"noise": nsig, **q}


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
    return make_sample(_em, "em_organelles", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint8", min_size=min_size)


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
    return make_sample(_em, "em_organelles", shape, 3, seed=seed, dtype=dtype,
                       default_dtype="uint8", min_size=min_size, min_slices=min_slices,
                       anisotropy=anisotropy, anisotropy_range=(1.0, 4.0))
