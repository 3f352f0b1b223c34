"""Membrane-stained cells in 2D and 3D: a warped Voronoi tissue with bright walls, dim
textured cytoplasm and darker nuclei; every instance is a whole cell (interior + its half of
the membrane).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from .detectors import camera
from .fields import blur, boundaries, loguniform, lowfreq, ramp, smooth_noise
from .placement import relabel
from .sample import SyntheticSample, make_sample

__all__ = ["cells_membrane_2d", "cells_membrane_3d"]


def _cells(shape, rng, *, spacing, dtype, min_size, min_slices):
    ndim = len(shape)
    sp = np.ones(ndim) if spacing is None else np.asarray(spacing, float)
    extent = np.asarray(shape) * sp
    cell = loguniform(rng, 14.0, 50.0)  # cell diameter, physical px
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
            coords[ax] += amp * smooth_noise(rng, shape, cell / 2 / sp)
        lab = ndi.map_coordinates(lab, coords, order=0, mode="nearest")
        dseed = ndi.map_coordinates(dseed.astype(np.float32), coords, order=1, mode="nearest")
    # tissue region: keep whole cells that lie mostly inside a smooth blob
    if rng.random() < 0.6:
        field_ = lowfreq(rng, shape, rng.uniform(1.5, 3.0))
        region = field_ > np.quantile(field_, rng.uniform(0.15, 0.6))
        n = int(lab.max())
        frac = np.bincount(lab[region].ravel(), minlength=n + 1) / np.maximum(
            np.bincount(lab.ravel(), minlength=n + 1), 1
        )
        keep = frac > 0.5
        keep[0] = False
        lab = np.where(keep[lab], lab, 0)
    tissue = lab > 0
    lab = relabel(lab, min_size, min_slices)
    holes = tissue & (lab == 0)
    if holes.any():  # give dropped slivers to the nearest cell instead of leaving holes
        inds = ndi.distance_transform_edt(lab == 0, return_distances=False, return_indices=True)
        lab[holes] = lab[tuple(inds)][holes]
        lab = relabel(lab, min_size, min_slices)
    n = int(lab.max())

    # membranes on every wall (between cells and towards background)
    width = rng.uniform(0.6, 2.0)
    wall = blur(boundaries(lab).astype(np.float32), width / sp)
    wall *= 1.0 / max(float(wall.max()), 1e-6)
    mem_mod = 1 + rng.uniform(0, 0.4) * lowfreq(rng, shape, 4)
    if rng.random() < 0.4:  # punctate / discontinuous staining
        mem_mod = mem_mod * np.clip(0.6 + 0.6 * smooth_noise(rng, shape, 1.5 / sp), 0.1, 1.6)
    cyto = rng.uniform(0.03, 0.35) * rng.uniform(0.5, 1.5, n + 1).astype(np.float32)
    cyto[0] = rng.uniform(0.0, 0.1)
    tex = 1 + rng.uniform(0, 0.5) * smooth_noise(rng, shape, rng.uniform(1, 3) / sp)
    sig = cyto[lab] * tex
    if rng.random() < 0.6:  # nucleus excludes the dye (darker round region in each cell)
        rn = rng.uniform(0.15, 0.3) * cell
        sig = np.where((dseed < rn) & (lab > 0), sig * rng.uniform(0.2, 0.7), sig)
    signal = sig + np.clip(mem_mod, 0, None) * wall * rng.uniform(0.6, 1.0)
    signal *= 1 + rng.uniform(0, 0.3) * ramp(rng, shape)
    sxy = rng.uniform(0.5, 2.0)
    psf = (max(0.5, sxy * 3 / sp[0]), sxy, sxy) if ndim == 3 else sxy
    img, cam = camera(blur(signal.astype(np.float32), psf), rng, dtype)
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
    return make_sample(_cells, "cells_membrane", shape, 2, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size)


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
    return make_sample(_cells, "cells_membrane", shape, 3, seed=seed, dtype=dtype,
                       default_dtype="uint16", min_size=min_size, min_slices=min_slices,
                       anisotropy=anisotropy, anisotropy_range=(1.0, 3.0))
