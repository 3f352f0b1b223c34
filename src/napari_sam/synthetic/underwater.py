"""Underwater RGB photographs: coloured fish, coral and rocks in blue-green haze, with
caustics, marine snow and sometimes a sandy floor (both unlabelled).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .detectors import quantize
from .fields import blur, loguniform, lowfreq, ramp, smooth_noise, sparse_spots
from .placement import ObjectShape, PlacedObjects, place_objects
from .sample import SyntheticSample, make_sample

__all__ = ["underwater_rgb"]


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


def _sea_life(shape, rng, min_size) -> PlacedObjects:
    """Place fish (kind 0: tailed, elongated), coral / sponge (1: lobed) and rocks (2)."""
    H, W = shape
    p_fish = rng.uniform(0.2, 0.9)
    rmean = loguniform(rng, 8.0, 30.0)

    def propose(r):
        u = r.random()
        if u < p_fish:
            return ObjectShape(
                radius=loguniform(r, max(6.0, rmean / 1.6), rmean * 1.4),
                aspect=r.uniform(1.8, 4.0),
                lump=r.uniform(0.0, 0.05),
                bend=r.uniform(-0.15, 0.15),
                tail=True,
                angle=np.pi / 2 + r.uniform(-0.5, 0.5) + np.pi * r.integers(2),
                kind=0,
            )
        if u < p_fish + (1 - p_fish) * 0.7:
            return ObjectShape(
                radius=loguniform(r, max(7.0, rmean / 1.4), rmean * 1.8),
                aspect=r.uniform(1.0, 2.0),
                lump=r.uniform(0.12, 0.3),
                kind=1,
            )
        return ObjectShape(
            radius=loguniform(r, 8.0, rmean * 1.5),
            aspect=r.uniform(1.0, 1.8),
            lump=r.uniform(0.05, 0.15),
            kind=2,
        )

    n = int(np.clip(round(rng.uniform(0.08, 0.35) * H * W / (np.pi * rmean**2)), 1, 80))
    obj = place_objects(
        shape, rng, n=n, propose=propose, max_overlap=rng.uniform(0.0, 0.12), min_size=min_size
    )
    return obj


def _water(shape, rng, yy) -> np.ndarray:
    """(Y, X, 3) water colour: blue-green, brighter towards the surface, slowly mottled."""
    water = np.array(
        [rng.uniform(0.02, 0.2), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.7)], np.float32
    )
    water = water * rng.uniform(0.6, 1.1)
    depth_grad = 1 - rng.uniform(0.2, 0.6) * yy
    bgw = water[None, None, :] * depth_grad[..., None]
    bgw = bgw * (1 + 0.08 * lowfreq(rng, shape, 2))[..., None]
    return bgw


def _object_colours(obj: PlacedObjects, rng, yy) -> np.ndarray:
    """(Y, X, 3) albedo of the objects: HSV colours, stripes / spots, rounded top-lit bodies."""
    lab, kind = obj.labels, obj.kind
    shape = lab.shape
    m = obj.n
    # object albedo (HSV colours), per-kind texture
    hue = rng.uniform(0, 1, m + 1)
    sat = rng.uniform(0.3, 0.9, m + 1)
    val = rng.uniform(0.4, 1.0, m + 1)
    sat[kind == 2] *= 0.2  # rocks: greyish
    albedo = _hsv_to_rgb(hue, sat, val).astype(np.float32)  # (m+1, 3)
    col = albedo[lab]
    shade = 1 + rng.uniform(0.2, 0.5) * (ramp(rng, shape) * 0 - (yy - 0.5) * 0.5)  # top lit
    stripes = 0.5 + 0.5 * np.cos(2 * np.pi * obj.axial / rng.uniform(4, 10))
    spots = np.clip(smooth_noise(rng, shape, rng.uniform(1.0, 3.0)), -1, 2)
    tex = np.where(kind[lab] == 0, 1 - rng.uniform(0, 0.4) * stripes, 1 + 0.2 * spots).astype(
        np.float32
    )
    # rounded body shading: darker rim
    body = 1 - 0.35 * np.minimum(obj.dist, 1) ** 3
    return col * (tex * body * shade)[..., None]


def _through_haze(col, bgw, obj: PlacedObjects, rng) -> tuple[np.ndarray, np.ndarray]:
    """Each object seen through water of its own distance (red attenuates fastest);
    returns the (Y, X, 3) image and the (3,) attenuation per unit distance."""
    lab = obj.labels
    m = obj.n
    inside = lab > 0
    # haze: each object at its own distance; red attenuates fastest
    beta = np.array(
        [rng.uniform(1.5, 3.0), rng.uniform(0.5, 1.1), rng.uniform(0.3, 0.9)], np.float32
    )
    dist = rng.uniform(0.3, 1.3, m + 1).astype(np.float32)
    t = np.exp(-beta[None, :] * dist[:, None])  # (m+1, 3)
    tpix = t[lab]
    img = np.where(inside[..., None], col * tpix + bgw * (1 - tpix), bgw)
    return img, beta


def _sandy_floor(img, bgw, inside, beta, rng, yy) -> np.ndarray:
    """Half of the scenes: a sandy floor at the bottom, behind the objects (unlabelled)."""
    shape = inside.shape
    W = shape[1]
    if rng.random() < 0.5:  # sandy floor at the bottom, behind the objects
        floor_y = rng.uniform(0.55, 0.9)
        edge = floor_y + 0.05 * lowfreq(rng, (1, W), 2)[0]
        floor = (yy > edge[None, :]) & ~inside
        sand = (
            np.array([0.8, 0.7, 0.5], np.float32)
            * (1 + 0.15 * smooth_noise(rng, shape, 2.0))[..., None]
        )
        ts = np.exp(-beta * rng.uniform(0.6, 1.2))
        img = np.where(floor[..., None], sand * ts + bgw * (1 - ts), img)
    return img


def _light_and_camera(img, rng, dtype: str, yy) -> tuple[np.ndarray, dict]:
    """Caustics fading with depth, marine snow in front, lens blur, noise, exposure."""
    shape = img.shape[:2]
    # caustics: bright nets from zero crossings of a smooth field, fading with depth
    cz = smooth_noise(rng, shape, rng.uniform(5, 14))
    caustic = np.exp(-((cz / rng.uniform(0.06, 0.15)) ** 2))
    caustic = blur(caustic, 0.7) * np.exp(-yy * rng.uniform(1.5, 4.0))
    img = img * (1 + rng.uniform(0.1, 0.6) * caustic[..., None])
    # marine snow in front
    if rng.random() < 0.7:
        snow = sparse_spots(rng, shape, rng.uniform(2e-4, 2e-3), rng.uniform(0.5, 1.2))
        img = img + rng.uniform(0.1, 0.4) * np.clip(snow, 0, 1)[..., None]
    img = blur(img.astype(np.float32), (rng.uniform(0.4, 1.5),) * 2 + (0,))
    img = img + rng.uniform(0.005, 0.04) * rng.standard_normal(img.shape, dtype=np.float32)
    gain = 1.0 / max(float(np.quantile(img, 0.995)), 1e-3) * rng.uniform(0.7, 1.0)
    out, q = quantize(np.clip(img * gain, 0, 1), rng, dtype)
    return out, q


def _underwater(shape, rng, *, spacing, dtype, min_size, min_slices):
    obj = _sea_life(shape, rng, min_size)
    yy = np.linspace(0, 1, shape[0], dtype=np.float32)[:, None]
    bgw = _water(shape, rng, yy)
    col = _object_colours(obj, rng, yy)
    img, beta = _through_haze(col, bgw, obj, rng)
    img = _sandy_floor(img, bgw, obj.labels > 0, beta, rng, yy)
    out, q = _light_and_camera(img, rng, dtype, yy)
    return out, obj.labels, q


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
    return make_sample(_underwater, "underwater", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint8", min_size=min_size)
