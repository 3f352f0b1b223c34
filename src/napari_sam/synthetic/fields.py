"""Drawing primitives shared by the scene generators: random fields, blur, outlines.

All randomness comes from the ``np.random.Generator`` passed in; arrays are float32 in the
axis order of the scene (``(Y, X)`` or ``(Z, Y, X)``) unless a docstring says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

__all__ = ["blur", "boundaries", "loguniform", "lowfreq", "outline_depth", "ramp",
           "smooth_noise", "sparse_spots"]


def loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One float drawn log-uniformly in ``[lo, hi]`` (one ``rng.uniform`` draw)."""
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def smooth_noise(
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


def blur(x: np.ndarray, sigma: float | Sequence[float]) -> np.ndarray:
    sig = np.broadcast_to(np.asarray(sigma, dtype=float), (x.ndim,))
    """Gaussian blur (``sigma`` px per axis; axes below 0.2 px are left alone), edges nearest."""
    if np.all(sig < 0.2):
        return x
    return ndi.gaussian_filter(x, np.where(sig < 0.2, 0.0, sig), mode="nearest", truncate=3.0)


def boundaries(labels: np.ndarray) -> np.ndarray:
    """Bool mask of pixels whose 2*ndim neighbourhood contains another label value."""
    b = np.zeros(labels.shape, bool)
    for ax in range(labels.ndim):
        a = np.moveaxis(labels, ax, 0)
        bb = np.moveaxis(b, ax, 0)
        diff = a[1:] != a[:-1]
        bb[1:] |= diff
        bb[:-1] |= diff
    return b


def outline_depth(labels: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distance (physical px) of every labelled pixel to its own object's outline.

    0 on the outermost pixel ring, growing inwards; 0 on background. Touching
    objects are separated, unlike a plain distance transform of ``labels > 0``.
    """
    edge = boundaries(labels)
    # pixels on the image border are not an outline: objects continue outside
    d = ndi.distance_transform_edt(~edge, sampling=spacing).astype(np.float32)
    d[labels == 0] = 0
    return d


def lowfreq(rng: np.random.Generator, shape: Sequence[int], cells: float = 3.0) -> np.ndarray:
    """Very smooth unit-std field with about ``cells`` bumps across the largest axis."""
    shape = tuple(shape)
    sigma = [max(1.0, s / cells / 2.0) for s in shape]
    return smooth_noise(rng, shape, sigma)


def ramp(rng: np.random.Generator, shape: Sequence[int]) -> np.ndarray:
    """Linear ramp from -0.5 to 0.5 in a random in-plane direction, float32 ``shape``."""
    t = rng.uniform(0, 2 * np.pi)
    yy = np.linspace(-0.5, 0.5, shape[-2], dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, shape[-1], dtype=np.float32)[None, :]
    r = (math.sin(t) * yy + math.cos(t) * xx).astype(np.float32)
    return np.broadcast_to(r, tuple(shape)).astype(np.float32)


def sparse_spots(
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

