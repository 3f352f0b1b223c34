"""Detectors: a float signal in about [0, 1] becomes an integer image of the drawn dtype.

:func:`camera` models a photon-counting camera (fluorescence), :func:`quantize` a plain
mapping to the used grey range (EM, X-ray, RGB).
"""

from __future__ import annotations

import numpy as np

from .fields import loguniform

__all__ = ["camera", "dynamic_range", "quantize"]


def dynamic_range(rng: np.random.Generator, dtype: str) -> tuple[float, float, float]:
    """(offset, span, max value) of the used grey range for ``dtype``."""
    if dtype == "uint8":
        offset = rng.uniform(0, 30)
        span = loguniform(rng, 50, 250 - offset)
        return offset, span, 255.0
    offset = loguniform(rng, 100, 2000)
    span = loguniform(rng, 400, 40000)
    return offset, span, 65535.0


def camera(
    signal: np.ndarray,
    rng: np.random.Generator,
    dtype: str,
    *,
    photons: tuple[float, float] = (40, 3000),
) -> tuple[np.ndarray, dict]:
    """Photon-counting camera: Poisson shot noise, Gaussian read noise, offset, gain.

    ``signal`` is float >= 0 with the brightest structures near 1.
    """
    peak = loguniform(rng, *photons)
    counts = rng.poisson(np.clip(signal, 0, None) * peak).astype(np.float32)
    offset, span, vmax = dynamic_range(rng, dtype)
    gain = span / peak
    read = rng.uniform(0.5, 3.0)  # electrons
    img = offset + gain * (counts + read * rng.standard_normal(signal.shape, dtype=np.float32))
    img = np.clip(np.rint(img), 0, vmax).astype(dtype)
    return img, {"photons": peak, "offset": offset, "span": span}


def quantize(x: np.ndarray, rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, dict]:
    """Map a float image with content in about [0, 1] to the used grey range of ``dtype``."""
    offset, span, vmax = dynamic_range(rng, dtype)
    img = np.clip(np.rint(offset + span * x), 0, vmax).astype(dtype)
    return img, {"offset": offset, "span": span}

