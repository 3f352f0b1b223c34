"""A synthetic sample (image + instance labels) and the way every generator makes one.

:class:`SyntheticSample` is what every generator returns. :func:`make_sample` is the
common frame of the public generators: it checks the shape and dtype, seeds one
``np.random.default_rng(seed)``, draws the anisotropy of a volume, calls the domain's
scene function and wraps its ``(image, labels, meta)`` in a :class:`SyntheticSample`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .fields import loguniform

__all__ = ["DTYPES", "SyntheticSample", "check_dtype", "check_shape", "make_sample"]

#: Image dtypes the generators write.
DTYPES = ("uint8", "uint16")


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



def check_dtype(dtype: str | None, default: str) -> str:
    """The dtype name (``"uint8"`` or ``"uint16"``); ``default`` when ``dtype`` is None."""
    dtype = default if dtype is None else str(np.dtype(dtype))
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def check_shape(shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    """``shape`` as a tuple of ``ndim`` ints; Y, X >= 32 and (3D) Z >= 4, else ValueError."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} dimensions, got {shape}")
    if min(shape[-2:]) < 32 or (ndim == 3 and shape[0] < 4):
        raise ValueError(f"shape {shape} is too small (need Y, X >= 32 and Z >= 4)")
    return shape


#: ``scene(shape, rng, *, spacing, dtype, min_size, min_slices, **kw) -> (image, labels, meta)``
Scene = Callable[..., tuple[np.ndarray, np.ndarray, dict]]


def make_sample(
    scene: Scene,
    domain: str,
    shape: Sequence[int],
    ndim: int,
    *,
    seed: int,
    dtype: str | None,
    default_dtype: str,
    min_size: int,
    min_slices: int = 1,
    anisotropy: float | None = None,
    anisotropy_range: tuple[float, float] = (1.0, 3.0),
    **scene_kwargs,
) -> SyntheticSample:
    """Check the arguments, seed the generator and run ``scene`` once.

    Parameters
    ----------
    scene : callable
        The domain's scene function (see :data:`Scene`); all its randomness comes from the
        ``rng`` it is given.
    domain : str
        Recorded in :attr:`SyntheticSample.domain`.
    shape : sequence of int
        ``(Y, X)`` for ``ndim`` 2, ``(Z, Y, X)`` for ``ndim`` 3.
    ndim : {2, 3}
    seed : int
        Seed of ``np.random.default_rng``.
    dtype, default_dtype : str
        Image dtype (``None``: ``default_dtype``).
    min_size, min_slices : int
        Passed to ``scene`` (2D scenes get ``min_slices=1``).
    anisotropy : float, optional
        3D only: Z step / lateral pixel size; ``None`` draws one log-uniformly in
        ``anisotropy_range`` (the first draw of the generator). Recorded in
        ``meta["anisotropy"]``; the scene gets ``spacing=(anisotropy, 1, 1)``.
    **scene_kwargs
        Further keyword arguments of ``scene``.

    Returns
    -------
    SyntheticSample
    """
    shape = check_shape(shape, ndim)
    dtype = check_dtype(dtype, default_dtype)
    rng = np.random.default_rng(seed)
    if ndim == 2:
        img, lab, meta = scene(shape, rng, spacing=None, dtype=dtype, min_size=min_size,
                               min_slices=1, **scene_kwargs)
        return SyntheticSample(img, lab, domain, int(seed), meta)
    anis = loguniform(rng, *anisotropy_range) if anisotropy is None else float(anisotropy)
    img, lab, meta = scene(shape, rng, spacing=(anis, 1.0, 1.0), dtype=dtype, min_size=min_size,
                           min_slices=min_slices, **scene_kwargs)
    return SyntheticSample(img, lab, domain, int(seed), {"anisotropy": anis, **meta})
