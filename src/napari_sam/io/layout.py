"""The standard layout ``(S, Y, X[, C])`` / ``(Y, X[, C])``: :class:`ImageData` (an image as read,
with axes and pixel size) and :func:`to_standard` (reorder, select, squeeze; lazy for zarr)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.io.axes import SPATIAL, guess_axes, validate_axes


@dataclass
class ImageData:
    """An image or stack as read from a file.

    Attributes
    ----------
    data : numpy.ndarray, numpy.memmap, zarr.Array or another lazy array
        Indexable by the first axis (``data[i]``) and sliceable.
    axes : str
        One letter from ``TZCYX`` per dimension of ``data``, e.g. ``"ZYX"``.
    pixel_size : tuple of float or None
        Physical size of a pixel along each spatial axis present in ``axes``, in the order
        ``Z, Y, X`` (so ``(y, x)`` for ``"YX"``/``"TYX"``/``"YXC"`` and ``(z, y, x)`` for
        ``"ZYX"``). An axis the file does not calibrate gets 1.0; ``None`` when nothing is
        calibrated. Unit in ``unit``.
    unit : str or None
        Unit of ``pixel_size`` (micrometres are normalised to ``"um"``).
    metadata : dict
        ``format`` (``"tiff"``, ``"imagej-tiff"``, ``"ome-tiff"``, ``"zarr"``, ``"ome-zarr"``,
        ``"npy"``), ``source_axes`` (axes as the file spells them), ``axes_from``
        (``"user"``, ``"metadata"`` or ``"guess"``), ``lazy``, ``user`` (JSON metadata written
        by ``write_labels``) and format-specific entries.
    path : pathlib.Path or None
    """

    data: Any
    axes: str
    pixel_size: tuple[float, ...] | None = None
    metadata: dict = field(default_factory=dict)
    path: Path | None = None
    unit: str | None = None

    def __repr__(self) -> str:  # one line, not the (memory-mapped) array
        size = "" if self.pixel_size is None else (
            f", pixel_size={tuple(self.pixel_size)}{' ' + self.unit if self.unit else ''}")
        path = "" if self.path is None else f", path={str(self.path)!r}"
        lazy = ", lazy" if self.metadata.get("lazy") else ""
        return f"ImageData({self.axes} {self.shape} {self.dtype}{size}{path}{lazy})"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def ndim(self) -> int:
        return len(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def spatial_axes(self) -> str:
        """The spatial letters present, in ``Z, Y, X`` order (matches ``pixel_size``)."""
        return "".join(a for a in SPATIAL if a in self.axes)

    @property
    def scale(self) -> tuple[float, ...]:
        """Per-dimension scale for napari (1.0 for non-spatial axes and uncalibrated files)."""
        sizes = dict(zip(self.spatial_axes, self.pixel_size or ()))
        return tuple(float(sizes.get(a, 1.0)) for a in self.axes)

    def to_standard(
        self,
        *,
        channel: int | None = None,
        select: Mapping[str, int] | None = None,
    ) -> ImageData:
        """Return a copy ordered ``(S, Y, X[, C])`` or ``(Y, X[, C])``; see ``to_standard``."""
        data, axes = to_standard(self.data, self.axes, channel=channel, select=select)
        pixel_size = None
        if self.pixel_size is not None:
            sizes = dict(zip(self.spatial_axes, self.pixel_size))
            pixel_size = tuple(sizes[a] for a in SPATIAL if a in axes)
        md = dict(self.metadata)
        md["standard_from_axes"] = self.axes
        return replace(self, data=data, axes=axes, pixel_size=pixel_size, metadata=md)


class _LazyView:
    """A lazy reordered / sub-selected view of an array that is not numpy (e.g. zarr).

    ``perm`` lists the source dimensions in output order; ``fixed`` maps source dimensions
    to the integer index chosen for them. Indexing translates the key to the source, reads
    only that region and transposes it.
    """

    def __init__(self, source, perm: Sequence[int], fixed: Mapping[int, int]):
        self.source = source
        self.perm = tuple(perm)
        self.fixed = dict(fixed)
        sshape = tuple(int(s) for s in source.shape)
        self.shape = tuple(sshape[p] for p in self.perm)
        self.dtype = np.dtype(source.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<_LazyView shape={self.shape} dtype={self.dtype} of {type(self.source).__name__}>"

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = self.ndim - (len(key) - 1)
            key = key[:i] + (slice(None),) * fill + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for array of shape {self.shape}")
        key = key + (slice(None),) * (self.ndim - len(key))
        basic = all(isinstance(k, slice | int | np.integer) for k in key)
        if not basic:  # fancy indexing: read the whole view, then index it
            return np.asarray(self)[key]
        src_key: list = [slice(None)] * len(self.source.shape)
        for d, idx in self.fixed.items():
            src_key[d] = idx
        kept = []  # output order of source dims that survive
        for out_dim, k in enumerate(key):
            sdim = self.perm[out_dim]
            if isinstance(k, slice):
                src_key[sdim] = k
                kept.append(sdim)
            else:
                k = int(k)
                n = self.shape[out_dim]
                if not -n <= k < n:
                    raise IndexError(f"index {k} out of range for axis {out_dim} of size {n}")
                src_key[sdim] = k % n
        region = np.asarray(self.source[tuple(src_key)])
        surviving = sorted(kept)  # region dims are in source order
        order = [surviving.index(s) for s in kept]
        return np.transpose(region, order) if order != sorted(order) else region

    def __array__(self, dtype=None, copy=None):
        arr = self[...]
        return arr.astype(dtype, copy=False) if dtype is not None else arr


def to_standard(
    data,
    axes: str | None,
    *,
    channel_axis: int | None = None,
    channel: int | None = None,
    select: Mapping[str, int] | None = None,
):
    """Reorder an array to ``(S, Y, X[, C])`` or ``(Y, X[, C])``.

    Parameters
    ----------
    data : array-like
        numpy / memmap (the result is a view) or a lazy array such as ``zarr.Array`` (the
        result is a lazy wrapper that reads only what is indexed).
    axes : str or None
        Letters from ``TZCYX`` for ``data``'s dimensions; ``None`` guesses from the shape.
    channel_axis : int, optional
        Index of the channel dimension; with ``axes=None`` it steers the guess, with
        ``axes`` given it relabels that dimension as ``C``.
    channel : int, optional
        Keep only this channel (the ``C`` axis is removed).
    select : mapping, optional
        Fixed indices for other axes, e.g. ``{"T": 3}`` to pick a time point of a TZYX movie.

    Returns
    -------
    (array, axes) : the reordered array and its axes, one of ``YX``, ``YXC``, ``ZYX``,
    ``TYX``, ``ZYXC``, ``TYXC``.

    The stack axis is ``Z`` when present, else ``T``. Size-1 ``T``, ``Z`` (when another stack
    axis remains) and ``C`` axes are squeezed. A ``C`` axis of 3 or 4 entries is kept last as
    RGB(A); other channel counts need ``channel=``.

    Raises
    ------
    ValueError
        When both ``T`` and ``Z`` have more than one entry, when there are several channels
        that are not RGB(A), or on invalid axes / indices.
    """
    shape = tuple(int(s) for s in data.shape)
    if axes is None:
        axes = guess_axes(shape, channel_axis=channel_axis)
    else:
        axes = validate_axes(axes, shape)
        if channel_axis is not None:
            c = channel_axis % len(shape)
            if axes[c] != "C":
                if "C" in axes:
                    raise ValueError(
                        f"channel_axis={channel_axis} conflicts with axes {axes!r} "
                        f"(C is already dimension {axes.index('C')}); data shape {shape}"
                    )
                axes = axes[:c] + "C" + axes[c + 1 :]
    size = dict(zip(axes, shape))
    fixed: dict[str, int] = {}
    for letter, idx in (select or {}).items():
        letter = letter.upper()
        if letter not in axes:
            raise ValueError(
                f"cannot select {letter}={idx}: no {letter} axis in {axes!r} (shape {shape})"
            )
        if letter in "YX":
            raise ValueError(f"cannot select along {letter}; Y and X are always kept")
        n = size[letter]
        if not -n <= int(idx) < n:
            raise ValueError(f"{letter}={idx} is out of range: the {letter} axis has {n} entries")
        fixed[letter] = int(idx) % n
    if channel is not None:
        if "C" not in axes:
            raise ValueError(
                f"channel={channel} was given but the data has no channel axis "
                f"(axes {axes!r}, shape {shape})"
            )
        n = size["C"]
        if not -n <= int(channel) < n:
            raise ValueError(f"channel={channel} is out of range: {n} channels, give 0..{n - 1}")
        fixed["C"] = int(channel) % n
    # squeeze size-1 axes
    for letter in "TC":
        if letter in axes and letter not in fixed and size[letter] == 1:
            fixed[letter] = 0
    remaining = [a for a in "TZ" if a in axes and a not in fixed]
    if remaining == ["T", "Z"] and size["Z"] == 1:
        fixed["Z"] = 0
        remaining = ["T"]
    if len(remaining) == 2:
        raise ValueError(_two_stack_axes(size, axes, shape))
    if "C" in axes and "C" not in fixed and size["C"] not in (3, 4):
        raise ValueError(
            f"The data has {size['C']} channels (axes {axes!r}, shape {shape}); only a single "
            "channel or RGB(A) with 3 or 4 channels is supported. Pick one channel with "
            "channel=N (--channel N on the command line)."
        )
    out_axes = "".join(remaining) + "YX" + ("C" if "C" in axes and "C" not in fixed else "")
    perm = [axes.index(a) for a in out_axes]
    fixed_dims = {axes.index(a): i for a, i in fixed.items()}
    if isinstance(data, np.ndarray):
        key = tuple(fixed_dims.get(d, slice(None)) for d in range(len(shape)))
        sub = data[key]
        kept_dims = [d for d in range(len(shape)) if d not in fixed_dims]
        order = [kept_dims.index(p) for p in perm]
        return np.transpose(sub, order), out_axes
    if not fixed_dims and perm == sorted(perm):
        return data, out_axes
    return _LazyView(data, perm, fixed_dims), out_axes


def _two_stack_axes(size: Mapping[str, int], axes: str, shape: tuple[int, ...]) -> str:
    """Why a movie of volumes (``T`` and ``Z`` both longer than 1) has no standard layout,
    and what to do."""
    return (
        f"The data has both a time axis (T={size['T']}) and a Z axis (Z={size['Z']}) "
        f"(axes {axes!r}, shape {shape}); only one stack axis is supported here. Choose "
        "one: select a time point (select={'T': i}) or a Z slice (select={'Z': i}), "
        "or relabel the axes (axes=...). On the command line, `napari-sam auto` and "
        "`segment` segment each time point of such a movie as its own volume; for "
        "`embed`, save one time point (or one Z slice) per file, or pass --axes if the "
        "file's axes are wrong."
    )
