"""The registries of generators by domain name and :func:`make_dataset` (seeded datasets,
with the training / held-out seed convention).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .cells import cells_membrane_2d, cells_membrane_3d
from .em import em_3d, em_organelles_2d
from .nuclei import nuclei_2d, nuclei_3d
from .sample import SyntheticSample
from .underwater import underwater_rgb
from .xray import xray_2d, xray_3d

__all__ = ["DOMAINS", "DOMAINS_3D", "HELDOUT_SEED_START", "make_dataset"]

#: First seed of the held-out range used by tests; training uses seeds below it.
HELDOUT_SEED_START = 10_000

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
