"""Reading images and writing label volumes, with axes and pixel-size metadata.

This module is part of the core: it never imports napari or Qt.

Reading
-------
``read_image(path, axes=None, lazy=False) -> ImageData`` reads TIFF, OME-TIFF, ImageJ
hyperstacks, BigTIFF, multi-page TIFF, zarr (an array, a group holding a single array, or
OME-Zarr multiscale level 0) and ``.npy``. ``ImageData.axes`` is a string of the letters
``T Z C Y X`` in the order of the data's dimensions, e.g. ``"ZYX"``, ``"TZYX"``, ``"YXC"``.

Axes come from the file's metadata (OME, ImageJ, tifffile's shaped JSON, OME-Zarr ``axes``,
zarr ``dimension_names``) and are mapped from tifffile's letters: ``S`` (samples) -> ``C``;
``Q`` / ``I`` (unknown / image sequence) and other letters -> ``Z`` (or ``T`` when ``Z`` is
taken). Files without metadata get a guess from the shape (``guess_axes``). The ``axes``
argument overrides all of that; it must name every dimension of the data as read.

Memory behaviour of ``lazy=True``:

* uncompressed, contiguous TIFF series and ``.npy`` files come back as a read-only
  ``numpy.memmap``: nothing is read until it is indexed, and the operating system pages in
  (and may drop again) only what is touched, so a slice costs about one slice of memory;
* compressed or tiled TIFF series come back as a read-only ``zarr.Array`` over tifffile's
  zarr store: every index decodes only the TIFF pages / strips it covers. The store keeps an
  open handle on the file;
* zarr inputs are returned as the ``zarr.Array`` itself (chunks are read on indexing).

``lazy=False`` (the default) loads the whole array into memory as a ``numpy.ndarray``.

Standard layout
---------------
The models work on ``(Y, X[, C])`` images and ``(S, Y, X[, C])`` stacks where the stack axis
``S`` is ``Z`` if there is one, else ``T``. ``to_standard`` reorders (a view for numpy /
memmap, a lazy wrapper for zarr), selects a channel or time point and squeezes size-1 axes.

Writing
-------
``write_labels`` writes ``.tif``/``.tiff`` (compressed, ImageJ hyperstack for uint16 labels,
OME-TIFF for uint32 labels because the ImageJ format has no uint32), ``.ome.tif`` (always
OME), ``.npy`` and ``.zarr``. Every write goes to a temporary name in the destination
directory and is renamed into place (``os.replace``), so readers never see a partial file and
a failed write leaves an existing file untouched.

Sidecars
--------
Each output ``out.tif`` gets a JSON sidecar ``out.tif.json`` (the output's full name plus
``.json``, so ``out.tif`` and ``out.npy`` never share a sidecar) recording the model,
version, parameters, objects, the output's size and the input's size, mtime and a hash of
sampled bytes (``content_sample_hash``).
``is_complete`` uses it to decide whether a batch rerun can skip an output.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AXES_LETTERS",
    "save_picture",
    "ImageData",
    "content_sample_hash",
    "ImageReadError",
    "check_image_data",
    "guess_axes",
    "is_complete",
    "quiet_tifffile",
    "label_objects_summary",
    "read_image",
    "read_sidecar",
    "sidecar_path",
    "to_standard",
    "validate_axes",
    "write_json_atomic",
    "write_labels",
    "write_sidecar",
]

#: Letters allowed in an axes string.
AXES_LETTERS = "TZCYX"
#: Spatial letters, in the order pixel sizes are reported.
SPATIAL = "ZYX"
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf8", ".tf2")
SIDECAR_FORMAT = "napari-sam-stacks/output"
SIDECAR_VERSION = 1
BIGTIFF_LIMIT = 2**32 - 2**26  # leave room for tags and offsets


class ImageReadError(ValueError):
    """A file could not be read as an image.

    ``path`` is the file, ``reason`` what went wrong; the message also says what to try next.
    """

    def __init__(self, path: os.PathLike | str, reason: str, hint: str | None = None):
        self.path = Path(path)
        self.reason = reason
        hint = hint or (
            "Check that the file is a complete TIFF, OME-TIFF, zarr or .npy image "
            "(open it in Fiji or tifffile), or convert it to TIFF."
        )
        super().__init__(f"Cannot read image {str(self.path)!r}: {reason}. {hint}")


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


# ----------------------------------------------------------------------------- axes


def validate_axes(axes: str, shape: Sequence[int]) -> str:
    """Check an axes string against a data shape and return it upper-cased.

    Raises ``ValueError`` naming the problem and showing the shape when the length differs
    from ``len(shape)``, a letter is not one of ``TZCYX``, a letter repeats, or ``Y`` / ``X``
    is missing.
    """
    shape = tuple(int(s) for s in shape)
    if not isinstance(axes, str):
        raise ValueError(f"axes must be a string such as 'ZYX', got {axes!r} (data shape {shape})")
    ax = axes.strip().upper()
    problem = None
    bad = sorted({a for a in ax if a not in AXES_LETTERS})
    dup = sorted({a for a in ax if ax.count(a) > 1})
    if len(ax) != len(shape):
        problem = f"it has {len(ax)} letters but the data has {len(shape)} dimensions"
    elif bad:
        problem = f"letter(s) {', '.join(bad)} not allowed; use letters from {AXES_LETTERS}"
    elif dup:
        problem = f"letter(s) {', '.join(dup)} appear more than once"
    elif "Y" not in ax or "X" not in ax:
        problem = "both Y and X are required"
    if problem:
        raise ValueError(
            f"Invalid axes {axes!r} for data of shape {shape}: {problem}. "
            f"Give one letter from {AXES_LETTERS} per dimension, e.g. "
            f"{guess_axes(shape) if 2 <= len(shape) <= 5 else 'ZYX'!r}."
        )
    return ax


def guess_axes(shape: Sequence[int], *, channel_axis: int | None = None) -> str:
    """Guess axes from a shape alone.

    2D -> ``YX``; 3D -> ``YXC`` when the last dimension is 3 or 4, else ``ZYX``;
    4D -> ``ZYXC`` (last dimension 3 or 4) else ``TZYX``; 5D -> ``TZYXC`` / ``TZCYX``.
    ``channel_axis`` marks one dimension as ``C`` (the rest are guessed around it).
    """
    shape = tuple(int(s) for s in shape)
    n = len(shape)
    if channel_axis is not None:
        if not -n <= channel_axis < n:
            raise ValueError(f"channel_axis {channel_axis} out of range for shape {shape}")
        if not 3 <= n <= 5:
            raise ValueError(
                f"cannot guess axes for shape {shape} with channel_axis={channel_axis}"
            )
        c = channel_axis % n
        rest = {2: "YX", 3: "ZYX", 4: "TZYX"}[n - 1]
        return rest[:c] + "C" + rest[c:]
    if n == 2:
        return "YX"
    rgb = shape[-1] in (3, 4)
    if n == 3:
        return "YXC" if rgb else "ZYX"
    if n == 4:
        return "ZYXC" if rgb else "TZYX"
    if n == 5:
        return "TZYXC" if rgb else "TZCYX"
    raise ValueError(f"cannot guess axes for data of shape {shape}: expected 2 to 5 dimensions")


def _map_tifffile_axes(src: str, shape: Sequence[int]) -> str | None:
    """Map tifffile's axes letters to ``TZCYX``; None when impossible."""
    out = list(src.upper())
    for i, a in enumerate(out):
        if a == "S":
            out[i] = "C" if "C" not in src.upper() else "?"
    for i, a in enumerate(out):
        if a not in AXES_LETTERS:
            for cand in ("Z", "T"):
                if cand not in out:
                    out[i] = cand
                    break
            else:
                return None
    ax = "".join(out)
    if len(set(ax)) != len(ax) or "Y" not in ax or "X" not in ax or len(ax) != len(shape):
        return None
    return ax


# ----------------------------------------------------------------------------- standard layout


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
            raise ValueError(f"channel={channel} is out of range: the data has {n} channels")
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
        raise ValueError(
            f"The data has both a time axis (T={size['T']}) and a Z axis (Z={size['Z']}) "
            f"(axes {axes!r}, shape {shape}); only one stack axis is supported. Choose one: "
            "select a time point (select={'T': i}) or a Z slice (select={'Z': i}), "
            "or relabel the axes (axes=...). On the command line: save one time point (or "
            "one Z slice) per file, or pass --axes if the file's axes are wrong."
        )
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


# ----------------------------------------------------------------------------- reading


def _normalise_unit(unit) -> str | None:
    if unit is None:
        return None
    u = str(unit).strip()
    if not u:
        return None
    if u.lower() in ("micron", "microns", "um", "µm", "μm", "\\u00b5m", "micrometer", "micrometre"):
        return "um"
    if u.lower() in ("pixel", "pixels"):
        return None
    return u


def _jsonable_scalars(d: Mapping) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[str(k)] = v
        elif isinstance(v, np.generic):
            out[str(k)] = v.item()
    return out


def _parse_user_json(text) -> dict | None:
    if not isinstance(text, str):
        return None
    try:
        obj = json.loads(text)
    except (ValueError, TypeError):
        return None
    if isinstance(obj, dict) and "napari_sam" in obj:
        return obj["napari_sam"]
    return None


def _pixel_tuple(axes: str, sizes: Mapping[str, float]) -> tuple[float, ...] | None:
    present = [a for a in SPATIAL if a in axes]
    if not any(a in sizes for a in present):
        return None
    return tuple(float(sizes.get(a, 1.0)) for a in present)


def _ome_info(xml: str) -> tuple[dict, str | None, dict | None]:
    """PhysicalSize{X,Y,Z} (by letter), unit and user JSON from the first OME Image."""
    sizes: dict[str, float] = {}
    unit = None
    user = None
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return sizes, unit, user
    image = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"), None)
    if image is None:
        return sizes, unit, user
    for el in image:
        tag = el.tag.rsplit("}", 1)[-1]
        if tag == "Description" and el.text:
            user = _parse_user_json(el.text)
        if tag == "Pixels":
            for letter in "XYZ":
                v = el.get(f"PhysicalSize{letter}")
                if v is not None:
                    try:
                        sizes[letter] = float(v)
                    except ValueError:
                        continue
                    unit = unit or el.get(f"PhysicalSize{letter}Unit", "µm")
    return sizes, _normalise_unit(unit), user


def _resolution_size(page, tag: str) -> float | None:
    t = page.tags.get(tag)
    if t is None:
        return None
    try:
        num, den = t.value
        if num <= 0 or den <= 0:
            return None
        return float(den) / float(num)
    except (TypeError, ValueError, ZeroDivisionError):
        return None


def _check_not_truncated(path: Path, series) -> None:
    """Cheap check that the series' last bytes lie inside the file (lazy reads fail late)."""
    size = path.stat().st_size
    end = 0
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        try:
            last = series.pages[-1] if len(series.pages) else None
            offsets = getattr(last, "dataoffsets", ()) or ()
            counts = getattr(last, "databytecounts", ()) or ()
            end = max((int(o) + int(c) for o, c in zip(offsets, counts)), default=0)
        except Exception:  # tifffile could not even locate the last page
            end = size + 1
    if end > size:
        raise ImageReadError(
            path,
            f"the file is truncated ({size} bytes, but the image data extends to byte {end})",
            "The file was probably not copied or written completely; copy or export it again.",
        )


def _read_tiff(path: Path, axes: str | None, lazy: bool) -> ImageData:
    with quiet_tifffile() as log:
        return _read_tiff_logged(path, axes, lazy, log)


def _read_tiff_logged(path: Path, axes: str | None, lazy: bool, log: list[str]) -> ImageData:
    import tifffile

    try:
        tif = tifffile.TiffFile(path)
    except PermissionError:
        raise
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        if path.suffix.lower() not in TIFF_SUFFIXES:
            raise ImageReadError(
                path, f"{path.suffix or 'a file without suffix'} is not a supported image type",
                "napari-sam reads TIFF (.tif, .tiff, .btf, OME-TIFF), .npy and .zarr; convert "
                "the file, e.g. in Fiji: File > Save As > Tiff.",
            ) from exc
        raise ImageReadError(
            path, f"not a readable TIFF file ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        if not tif.series:
            raise ImageReadError(path, "the TIFF file contains no image series")
        series = tif.series[0]
        damage = [m for m in log if any(sign in m for sign in _DAMAGE_SIGNS)]
        if damage:
            raise ImageReadError(
                path,
                "the file is truncated or damaged: pages or metadata point past its end, so "
                f"slices would be lost (tifffile: {' '.join(damage[0].split())[:160]})",
                "The file was probably not copied or written completely; copy or export it "
                "again.",
            )
        src_axes = series.axes
        shape = tuple(int(s) for s in series.shape)
        md: dict[str, Any] = {"source_axes": src_axes, "format": "tiff"}
        sizes: dict[str, float] = {}
        unit = None
        user = None
        page = series.pages[0] if series.pages else tif.pages[0]
        if tif.is_ome and tif.ome_metadata:
            md["format"] = "ome-tiff"
            sizes, unit, user = _ome_info(tif.ome_metadata)
        elif tif.is_imagej and tif.imagej_metadata is not None:
            md["format"] = "imagej-tiff"
            ij = tif.imagej_metadata
            md["imagej"] = _jsonable_scalars(ij)
            unit = _normalise_unit(ij.get("unit"))
            user = _parse_user_json(ij.get("Info"))
            xs = _resolution_size(page, "XResolution")
            ys = _resolution_size(page, "YResolution")
            calibrated = unit is not None or "spacing" in ij or (xs not in (None, 1.0))
            if calibrated:
                if xs is not None:
                    sizes["X"] = xs
                if ys is not None:
                    sizes["Y"] = ys
                if "spacing" in ij:
                    sizes["Z"] = float(ij["spacing"])
        else:
            if tif.is_shaped and tif.shaped_metadata:
                shaped = tif.shaped_metadata[0]
                md["shaped"] = _jsonable_scalars(shaped)
                user = (
                    shaped.get("napari_sam") if isinstance(shaped.get("napari_sam"), dict) else None
                )
            # plain TIFF: resolution only when the unit is metric (72 dpi defaults mean nothing)
            resunit = page.tags.get("ResolutionUnit")
            factor = {3: 1e4, 4: 1e3, 5: 1.0}.get(int(resunit.value) if resunit else 0)
            if factor is not None:
                xs = _resolution_size(page, "XResolution")
                ys = _resolution_size(page, "YResolution")
                if xs is not None:
                    sizes["X"] = xs * factor
                if ys is not None:
                    sizes["Y"] = ys * factor
                unit = "um"
        if user is not None:
            md["user"] = user
        md["compression"] = str(getattr(page.compression, "name", page.compression))
        md["bigtiff"] = bool(tif.is_bigtiff)
        md["series_count"] = len(tif.series)

        data = None
        _check_not_truncated(path, series)
        if lazy:
            if series.dataoffset is not None:
                try:
                    data = tifffile.memmap(path, series=0, mode="r")
                    md["lazy"] = "memmap"
                except Exception:  # fall back to zarr
                    data = None
            if data is None:
                import zarr

                store = tifffile.imread(path, aszarr=True, series=0, level=0)
                data = zarr.open(store, mode="r")
                md["lazy"] = "zarr"
            if tuple(data.shape) != shape:
                data = data.reshape(shape) if isinstance(data, np.ndarray) else data
        else:
            data = series.asarray()
            md["lazy"] = False
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(
            path, f"the TIFF data could not be decoded ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        tif.close()

    shape = tuple(int(s) for s in data.shape)
    if axes is not None:
        ax = validate_axes(axes, shape)
        md["axes_from"] = "user"
    else:
        ax = _map_tifffile_axes(src_axes, shape)
        md["axes_from"] = "metadata"
        if ax is None:
            try:
                ax = guess_axes(shape)
            except ValueError as exc:
                raise ImageReadError(
                    path,
                    f"cannot interpret tifffile axes {src_axes!r} for shape {shape}",
                    "Pass axes=... (--axes on the command line) with one letter from TZCYX per "
                    "dimension.",
                ) from exc
            md["axes_from"] = "guess"
    return ImageData(data, ax, _pixel_tuple(ax, sizes), md, path, unit)


def _open_zarr_array(path: Path):
    """Return (array, axes or None, sizes, unit, metadata) for a zarr path."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise ImageReadError(
            path, f"not a readable zarr store ({type(exc).__name__}: {exc})"
        ) from exc
    md: dict[str, Any] = {"format": "zarr"}
    sizes: dict[str, float] = {}
    unit = None
    axes = None
    if isinstance(node, zarr.Array):
        arr = node
    else:
        attrs = dict(node.attrs)
        ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        if ms:
            md["format"] = "ome-zarr"
            ms0 = ms[0]
            ds0 = ms0["datasets"][0]
            try:
                arr = node[ds0["path"]]
            except KeyError as exc:
                raise ImageReadError(path, f"OME-Zarr level {ds0['path']!r} is missing") from exc
            names = []
            for a in ms0.get("axes", []):
                names.append((a.get("name") if isinstance(a, dict) else str(a)).upper())
                if isinstance(a, dict) and a.get("unit") and a.get("type") == "space":
                    unit = unit or _normalise_unit(a.get("unit"))
            if names and all(n in AXES_LETTERS for n in names):
                axes = "".join(names)
            scale = None
            for tr in ds0.get("coordinateTransformations", []):
                if tr.get("type") == "scale":
                    scale = tr.get("scale")
            if scale is not None and axes is not None and len(scale) == len(axes):
                sizes = {a: float(s) for a, s in zip(axes, scale) if a in SPATIAL}
        else:
            arrays = sorted(node.arrays(), key=lambda t: t[0])
            if len(arrays) != 1:
                names = [n for n, _ in arrays]
                raise ImageReadError(
                    path,
                    f"the zarr group holds {len(arrays)} arrays {names} and no OME-Zarr multiscales",
                    "Open one array directly, e.g. "
                    + (f"{str(path / names[0])!r}." if names else "'group.zarr/array'."),
                )
            md["zarr_array"] = arrays[0][0]
            arr = arrays[0][1]
    attrs = dict(arr.attrs)
    if axes is None:
        dims = getattr(getattr(arr, "metadata", None), "dimension_names", None) or attrs.get(
            "_ARRAY_DIMENSIONS"
        )
        if isinstance(attrs.get("axes"), str):
            dims = attrs["axes"]
        if dims and all(isinstance(d, str) and d.upper() in AXES_LETTERS for d in dims):
            cand = "".join(d.upper() for d in dims)
            if len(cand) == arr.ndim and len(set(cand)) == len(cand):
                axes = cand
    if not sizes and isinstance(attrs.get("pixel_size"), list) and axes is not None:
        present = [a for a in SPATIAL if a in axes]
        if len(attrs["pixel_size"]) == len(present):
            sizes = dict(zip(present, map(float, attrs["pixel_size"])))
            unit = _normalise_unit(attrs.get("unit"))
    if isinstance(attrs.get("napari_sam"), dict):
        md["user"] = attrs["napari_sam"]
    return arr, axes, sizes, unit, md


def _read_zarr(path: Path, axes: str | None, lazy: bool) -> ImageData:
    arr, meta_axes, sizes, unit, md = _open_zarr_array(path)
    shape = tuple(int(s) for s in arr.shape)
    if lazy:
        data = arr
        md["lazy"] = "zarr"
    else:
        try:
            data = np.asarray(arr[...])
        except Exception as exc:
            raise ImageReadError(
                path, f"zarr chunks could not be decoded ({type(exc).__name__}: {exc})"
            ) from exc
        md["lazy"] = False
    return _finish(path, data, shape, axes, meta_axes, sizes, unit, md)


def _read_npy(path: Path, axes: str | None, lazy: bool) -> ImageData:
    try:
        data = np.load(path, mmap_mode="r" if lazy else None, allow_pickle=False)
    except Exception as exc:
        raise ImageReadError(
            path, f"not a readable .npy array ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, np.ndarray) or data.dtype == object:
        raise ImageReadError(path, "the .npy file does not hold a numeric array")
    md = {"format": "npy", "lazy": "memmap" if lazy else False}
    return _finish(path, data, data.shape, axes, None, {}, None, md)


def _finish(path, data, shape, axes, meta_axes, sizes, unit, md) -> ImageData:
    shape = tuple(int(s) for s in shape)
    md["source_axes"] = meta_axes
    if axes is not None:
        ax = validate_axes(axes, shape)
        md["axes_from"] = "user"
    elif meta_axes is not None and _valid(meta_axes, shape):
        ax = meta_axes
        md["axes_from"] = "metadata"
    else:
        try:
            ax = guess_axes(shape)
        except ValueError as exc:
            raise ImageReadError(
                path, str(exc), "Pass axes=... (--axes) with one letter from TZCYX per dimension."
            ) from exc
        md["axes_from"] = "guess"
    return ImageData(data, ax, _pixel_tuple(ax, sizes), md, Path(path), unit)


def _valid(axes: str, shape) -> bool:
    try:
        validate_axes(axes, shape)
    except ValueError:
        return False
    return True


def is_zarr_path(path: Path) -> bool:
    if path.suffix.lower() == ".zarr":
        return True
    if path.is_dir():
        return any((path / n).exists() for n in ("zarr.json", ".zarray", ".zgroup"))
    return False


def read_image(
    path: os.PathLike | str, *, axes: str | None = None, lazy: bool = False
) -> ImageData:
    """Read an image or stack with its axes and pixel size.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff``/``.ome.tif``/``.btf`` (any TIFF flavour), ``.zarr`` or a zarr
        directory, or ``.npy``. Other suffixes are tried as TIFF.
    axes : str, optional
        Override the axes from the file: one letter from ``TZCYX`` per dimension of the data
        as read (``ImageData.shape``). Invalid strings raise ``ValueError`` showing the shape.
    lazy : bool
        Return a memory-mapped or zarr array that reads on indexing instead of loading the
        whole file (see the module docstring for the memory behaviour).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ImageReadError
        (a ``ValueError``) when the file is corrupted or not a supported image; the message
        names the path, the reason and a next step.
    ValueError
        When ``axes`` is invalid for the data.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"Image file not found: {str(p)!r}. Check the path and the working directory."
        )
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise ImageReadError(p, "permission denied", _PERMISSION_HINT)
    try:
        with quiet_tifffile():
            if is_zarr_path(p):
                img = _read_zarr(p, axes, lazy)
            elif p.suffix.lower() == ".npy":
                img = _read_npy(p, axes, lazy)
            elif p.is_dir():
                raise ImageReadError(
                    p, "it is a directory but not a zarr store",
                    "Pass an image file or a .zarr directory.",
                )
            else:
                img = _read_tiff(p, axes, lazy)
    except PermissionError as exc:
        raise ImageReadError(p, "permission denied", _PERMISSION_HINT) from exc
    check_image_data(p, img.shape, img.dtype)
    return img


_PERMISSION_HINT = (
    "Check the file's permissions (ls -l; chmod +r FILE, or run as a user who may read it)."
)


def check_image_data(path: os.PathLike | str, shape: Sequence[int], dtype) -> None:
    """Refuse data no model can use: empty arrays and non-real dtypes.

    Raises
    ------
    ImageReadError
        When a dimension of ``shape`` is 0 or ``dtype`` is not bool, integer or float
        (complex, strings, structured records).
    """
    shape = tuple(int(s) for s in shape)
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        what = "complex numbers" if dt.kind == "c" else f"dtype {dt}"
        hint = ("Save a real-valued image, e.g. numpy.abs(a) (magnitude) or a.real, "
                "as .npy or TIFF." if dt.kind == "c" else
                "Save the image as integers or floats (.npy or TIFF).")
        raise ImageReadError(path, f"the data are {what} ({dt}); images must be real numbers",
                             hint)
    if any(s == 0 for s in shape):
        raise ImageReadError(path, f"the image is empty (shape {shape})",
                             "Check the export: every dimension needs at least one pixel.")


class _TifffileLog:
    """A ``logging.Filter`` for tifffile's logger: hands each record to every active
    :func:`quiet_tifffile` block instead of printing it."""

    def __init__(self):
        self.active: list[list[str]] = []

    def filter(self, record) -> bool:
        for messages in self.active:
            messages.append(record.getMessage())
        return False


_TIFFFILE_LOG = _TifffileLog()


@contextlib.contextmanager
def quiet_tifffile():
    """Keep tifffile's log lines (e.g. "invalid page offset" on a truncated file) off stderr.

    Yields the list that collects this block's messages; the problems they describe surface
    as :class:`ImageReadError` messages instead. Blocks nest.
    """
    import logging

    log = logging.getLogger("tifffile")
    messages: list[str] = []
    if not _TIFFFILE_LOG.active:
        log.addFilter(_TIFFFILE_LOG)
    _TIFFFILE_LOG.active.append(messages)
    try:
        yield messages
    finally:
        with contextlib.suppress(ValueError):
            _TIFFFILE_LOG.active.remove(messages)
        if not _TIFFFILE_LOG.active:
            log.removeFilter(_TIFFFILE_LOG)


#: tifffile log messages that mean pages or metadata lie beyond the end of the file: it then
#: returns a shorter series (fewer slices, or a single page) without raising.
_DAMAGE_SIGNS = ("invalid page offset", "invalid value offset", "failed to reshape",
                 "metadata invalid or corrupted")


# ----------------------------------------------------------------------------- writing


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def save_picture(image, path, format: str = "PNG") -> None:
    """Save a Pillow image atomically: to a temporary name beside ``path``, then renamed, so a
    reader never sees half a file and a failure leaves nothing behind."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        image.save(tmp, format=format)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise


def fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _check_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"Output {str(path)!r} already exists; pass overwrite=True "
            "(--overwrite on the command line) to replace it, or choose another output path."
        )


def _labels_dtype(labels: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    """Validate label values and choose uint16 or uint32."""
    a = labels
    if a.dtype == bool:
        return a, np.dtype(np.uint16)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"labels must be integers, got dtype {a.dtype}")
    if a.size == 0:
        return a, np.dtype(np.uint16)
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)) or not np.all(a == np.floor(a)):
            raise ValueError(
                "labels must be whole numbers (object ids); got non-integer float values "
                f"(dtype {a.dtype}). Round or relabel them first."
            )
    lo, hi = a.min(), a.max()
    if lo < 0:
        raise ValueError(f"labels must be >= 0 (0 is background); found negative id {lo}")
    if hi <= np.iinfo(np.uint16).max:
        return a, np.dtype(np.uint16)
    if hi <= np.iinfo(np.uint32).max:
        return a, np.dtype(np.uint32)
    raise ValueError(
        f"label id {hi} does not fit in uint32 (max {np.iinfo(np.uint32).max}); relabel sequentially"
    )


def write_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "ome-tiff"
    if path.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    if path.suffix.lower() == ".npy":
        return "npy"
    if path.suffix.lower() == ".zarr":
        return "zarr"
    raise ValueError(
        f"Cannot write labels to {str(path)!r}: unsupported suffix {path.suffix!r}. "
        "Use .tif, .tiff, .ome.tif, .npy or .zarr."
    )


def write_labels(
    path: os.PathLike | str,
    labels,
    *,
    axes: str,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    metadata: Mapping | None = None,
    overwrite: bool = False,
    compression: str | None = "zlib",
) -> Path:
    """Write a label image or volume atomically and return the path written.

    Parameters
    ----------
    path : path-like
        Output file; the suffix chooses the format: ``.tif``/``.tiff`` (ImageJ hyperstack for
        uint16, OME-TIFF for uint32), ``.ome.tif`` (always OME-TIFF), ``.npy`` or ``.zarr``.
    labels : array-like of non-negative whole numbers
        0 is background. Stored as uint16 when the largest id fits, else uint32; ids are
        never truncated. Negative or non-integer values raise ``ValueError``.
    axes : str
        Letters from ``TZCYX`` (e.g. ``"YX"``, ``"ZYX"``, ``"TYX"``), validated against
        ``labels.shape``; TIFF outputs need ImageJ order (``TZCYX`` subsequence).
    pixel_size : sequence of float, optional
        One per spatial axis present, in ``Z, Y, X`` order (as ``ImageData.pixel_size``).
        Written as ImageJ ``spacing`` + X/YResolution, OME ``PhysicalSize*``, or zarr attrs.
    unit : str
        Unit of ``pixel_size`` (``"um"`` by default).
    metadata : mapping, optional
        JSON-serialisable extras, stored in the ImageJ ``Info`` property / OME image
        ``Description`` / zarr attrs as ``{"napari_sam": metadata}`` and returned by
        ``read_image`` as ``ImageData.metadata["user"]``. Not stored in ``.npy`` (use the
        sidecar).
    overwrite : bool
        Replace an existing output; otherwise ``FileExistsError``.
    compression : str or None
        TIFF compression (``"zlib"`` by default; ``None`` for none). zarr outputs use zarr's
        default compressor unless ``compression`` is None.

    The data goes to a hidden temporary name next to ``path`` which is then renamed over it
    (``os.replace``, atomic on one filesystem); on any error the temporary is removed and an
    existing ``path`` is untouched. A zarr output is a directory: it is written to a temporary
    directory, the old one is moved aside, the new one renamed in, then the old one deleted.
    """
    path = Path(path)
    kind = write_kind(path)
    arr = np.asarray(labels)
    ax = validate_axes(axes, arr.shape)
    if "C" in ax:
        raise ValueError(f"labels cannot have a channel axis (axes {ax!r}, shape {arr.shape})")
    arr, dtype = _labels_dtype(arr)
    present = [a for a in SPATIAL if a in ax]
    sizes: dict[str, float] = {}
    if pixel_size is not None:
        ps = [float(v) for v in pixel_size]
        if len(ps) != len(present) or not all(v > 0 and math.isfinite(v) for v in ps):
            raise ValueError(
                f"pixel_size {tuple(pixel_size)} must give one positive size per spatial axis "
                f"{''.join(present)!r} (axes {ax!r})"
            )
        sizes = dict(zip(present, ps))
    user = dict(metadata) if metadata else None
    if user is not None:
        json.dumps(user, default=json_default)  # fail early, before touching the disk
    _check_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = arr.astype(dtype, copy=False)

    if kind == "zarr":
        _write_zarr_atomic(path, out, ax, sizes, unit, user, compression, overwrite)
        return path

    tmp = _tmp_name(path)
    try:
        if kind == "npy":
            with open(tmp, "wb") as f:
                np.save(f, out, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
        else:
            _write_tiff(tmp, out, ax, sizes, unit, user, compression, ome=kind == "ome-tiff")
            fsync_path(tmp)
        _check_overwrite(path, overwrite)
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    return path


def _write_tiff(tmp, out, ax, sizes, unit, user, compression, *, ome: bool) -> None:
    import tifffile

    if not _is_imagej_order(ax):
        raise ValueError(
            f"TIFF labels need axes in ImageJ order (a subsequence of TZCYX), got {ax!r}; "
            "transpose the labels first"
        )
    bigtiff = out.nbytes > BIGTIFF_LIMIT
    kwargs: dict[str, Any] = {"compression": compression, "bigtiff": bigtiff}
    if out.dtype == np.uint32 or ome:
        md: dict[str, Any] = {"axes": ax}
        for letter, v in sizes.items():
            md[f"PhysicalSize{letter}"] = v
            md[f"PhysicalSize{letter}Unit"] = "µm" if unit in ("um", "µm", "micron") else unit
        if user is not None:
            md["Description"] = json.dumps({"napari_sam": user}, default=json_default)
        tifffile.imwrite(tmp, out, ome=True, photometric="minisblack", metadata=md, **kwargs)
        return
    md = {"axes": ax}
    if sizes:
        md["unit"] = "micron" if unit in ("um", "µm", "micron") else unit
        if "Z" in sizes:
            md["spacing"] = sizes["Z"]
        kwargs["resolution"] = (1.0 / sizes.get("X", 1.0), 1.0 / sizes.get("Y", 1.0))
    if user is not None:
        md["Info"] = json.dumps({"napari_sam": user}, default=json_default)
    tifffile.imwrite(tmp, out, imagej=True, photometric="minisblack", metadata=md, **kwargs)


def _is_imagej_order(ax: str) -> bool:
    pos = [AXES_LETTERS.index(a) for a in ax]
    return pos == sorted(pos)


def _write_zarr_atomic(path, out, ax, sizes, unit, user, compression, overwrite) -> None:
    import zarr

    tmp = _tmp_name(path)
    attrs: dict[str, Any] = {"axes": ax}
    if sizes:
        attrs["pixel_size"] = [sizes[a] for a in SPATIAL if a in sizes]
        attrs["unit"] = unit
    if user is not None:
        attrs["napari_sam"] = json.loads(json.dumps(user, default=json_default))
    chunks = tuple([1] * (out.ndim - 2) + [min(s, 1024) for s in out.shape[-2:]])
    old = None
    try:
        if hasattr(zarr, "create_array"):
            kw: dict[str, Any] = {}
            if compression is None:
                kw["compressors"] = None
            z = zarr.create_array(
                store=str(tmp),
                shape=out.shape,
                dtype=out.dtype,
                chunks=chunks,
                dimension_names=list(ax),
                attributes=attrs,
                **kw,
            )
        else:  # zarr 2
            z = zarr.open_array(str(tmp), mode="w", shape=out.shape, dtype=out.dtype, chunks=chunks)
            z.attrs.update({**attrs, "_ARRAY_DIMENSIONS": list(ax)})
        z[...] = out
        _check_overwrite(path, overwrite)
        if path.exists():
            old = _tmp_name(path)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        if old is not None and not path.exists():
            os.replace(old, path)
            old = None
        remove_path(tmp)
        raise
    finally:
        if old is not None:
            remove_path(old)


# ----------------------------------------------------------------------------- JSON sidecars


def json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serialisable")


def write_json_atomic(path: os.PathLike | str, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` via a temporary file and ``os.replace``.

    numpy scalars / arrays, paths, tuples and sets are converted. Returns the path.
    """
    path = Path(path)
    text = json.dumps(obj, indent=2, default=json_default, allow_nan=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    return path


def sidecar_path(output_path: os.PathLike | str) -> Path:
    """The JSON sidecar of an output: its full name plus ``.json`` (``out.tif`` -> ``out.tif.json``)."""
    p = Path(output_path)
    return p.with_name(p.name + ".json")


def _path_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


#: Bytes read by :func:`content_sample_hash`: the first and last 64 KiB and 32 blocks of 4 KiB
#: spread evenly in between (about 256 KiB per file, whatever its size).
_SAMPLE_EDGE = 64 << 10
_SAMPLE_BLOCK = 4 << 10
_SAMPLE_BLOCKS = 32


def content_sample_hash(path: os.PathLike | str) -> str | None:
    """A cheap content hash of a file: BLAKE2 of its size and sampled bytes.

    Reads the first and last 64 KiB and 32 evenly spaced 4 KiB blocks (at most about 256 KiB),
    so it costs the same for a 1 MB and a 100 GB file. It tells apart two files of the same
    size and mtime with other data (a stack replaced by another acquisition) unless they
    differ only between the sampled blocks. Returns None for directories (zarr stores) and
    unreadable files.
    """
    import hashlib

    p = Path(path)
    try:
        if p.is_dir():
            return None
        size = p.stat().st_size
        h = hashlib.blake2b(digest_size=16)
        h.update(str(size).encode())
        with open(p, "rb") as f:
            if size <= 2 * _SAMPLE_EDGE + _SAMPLE_BLOCKS * _SAMPLE_BLOCK:
                h.update(f.read())
            else:
                h.update(f.read(_SAMPLE_EDGE))
                inner = size - 2 * _SAMPLE_EDGE - _SAMPLE_BLOCK
                for i in range(_SAMPLE_BLOCKS):
                    f.seek(_SAMPLE_EDGE + inner * i // max(1, _SAMPLE_BLOCKS - 1))
                    h.update(f.read(_SAMPLE_BLOCK))
                f.seek(size - _SAMPLE_EDGE)
                h.update(f.read(_SAMPLE_EDGE))
    except OSError:
        return None
    return h.hexdigest()


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {
        "path": str(path.resolve()),
        "size": _path_size(path) if path.is_dir() else st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sample_hash": content_sample_hash(path),
    }


def _object_record(o: Mapping) -> dict:
    sr = o.get("slice_range")
    score = o.get("score")
    return {
        "id": int(o["id"]),
        "slice_range": None if sr is None else [int(sr[0]), int(sr[1])],
        "area": None if o.get("area") is None else int(o["area"]),
        "score": None if score is None or not math.isfinite(float(score)) else float(score),
    }


def write_sidecar(
    output_path: os.PathLike | str,
    *,
    model,
    version: str,
    parameters: Mapping | None,
    objects: Sequence[Mapping],
    input_path: os.PathLike | str | None,
    status: str = "complete",
    extra: Mapping | None = None,
) -> Path:
    """Write the JSON sidecar of ``output_path`` (which must already be written) atomically.

    Contents: ``format``, ``format_version``, ``status`` (``"complete"`` or e.g.
    ``"partial"``), ``created`` (UTC ISO time), ``model`` (name or dict), ``version``,
    ``parameters``, ``input`` ({path, size, mtime_ns, sample_hash} or null), ``output`` ({name, size}),
    ``objects`` as ``[{id, slice_range, area, score}]`` and optional ``extra``.
    Returns the sidecar path.
    """
    out = Path(output_path)
    if not out.exists():
        raise FileNotFoundError(
            f"cannot write a sidecar for {str(out)!r}: the output does not exist yet"
        )
    record = {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "status": str(status),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "version": str(version),
        "parameters": dict(parameters or {}),
        "input": None if input_path is None else _fingerprint(Path(input_path)),
        "output": {"name": out.name, "size": _path_size(out)},
        "objects": [_object_record(o) for o in objects],
    }
    if extra:
        record["extra"] = dict(extra)
    return write_json_atomic(sidecar_path(out), record)


def read_sidecar(output_path: os.PathLike | str) -> dict | None:
    """The sidecar of ``output_path`` as a dict, or None when missing, unreadable or corrupt."""
    p = sidecar_path(output_path)
    try:
        with open(p, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def is_complete(
    output_path: os.PathLike | str, input_path: os.PathLike | str | None = None
) -> bool:
    """Whether ``output_path`` is a finished, up-to-date output that a rerun can skip.

    True only when the output exists, its sidecar is readable with ``status == "complete"``,
    the sidecar's recorded output size equals the output's current size, and (when
    ``input_path`` is given) the sidecar's input size, mtime and sampled content hash
    (:func:`content_sample_hash`) match the current input file.
    With ``input_path=None`` the input is not checked.
    """
    out = Path(output_path)
    if not out.exists():
        return False
    sc = read_sidecar(out)
    if sc is None or sc.get("status") != "complete":
        return False
    try:
        if int(sc["output"]["size"]) != _path_size(out):
            return False
    except (KeyError, TypeError, ValueError, OSError):
        return False
    if input_path is not None:
        inp = Path(input_path)
        rec = sc.get("input")
        if not isinstance(rec, dict) or not inp.exists():
            return False
        try:
            now = _fingerprint(inp)
        except OSError:
            return False
        if rec.get("size") != now["size"] or rec.get("mtime_ns") != now["mtime_ns"]:
            return False
        # same size and mtime can still be other data (a file replaced by a copy that kept
        # the time stamp): compare sampled content; sidecars from before it have no hash
        if rec.get("sample_hash") is not None and rec["sample_hash"] != now["sample_hash"]:
            return False
    return True


# ----------------------------------------------------------------------------- object summaries


def label_objects_summary(labels, scores: Mapping | Sequence | None = None) -> list[dict]:
    """Summarise each object of a label image / volume.

    Returns ``[{id, slice_range, area, bbox, score}]`` sorted by id, for every id > 0 present:
    ``area`` the pixel (voxel) count; ``bbox`` ``[start_0, ..., start_n, stop_0, ..., stop_n]``
    (stops exclusive, like scikit-image); ``slice_range`` ``[first, last]`` (inclusive) index
    along the first axis for 3D labels, None for 2D; ``score`` from ``scores`` (a mapping
    id -> score, or a sequence indexed by id) or None.
    Vectorised with ``np.bincount`` and ``scipy.ndimage.find_objects`` (ids are compacted
    first when they are sparse, so huge ids cost no memory).
    """
    from scipy import ndimage

    a = np.asarray(labels)
    if a.size == 0:
        return []
    if not np.issubdtype(a.dtype, np.integer) and a.dtype != bool:
        raise ValueError(f"labels must be integers, got dtype {a.dtype}")
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.min() < 0:
        raise ValueError("labels must be >= 0")
    max_id = int(a.max())
    if max_id == 0:
        return []
    if max_id <= 4 * a.size + 1024:
        compact = a if a.dtype.itemsize <= 4 or a.dtype.kind == "i" else a.astype(np.int64)
        counts = np.bincount(compact.ravel().astype(np.intp, copy=False), minlength=max_id + 1)
        ids = np.flatnonzero(counts[1:]) + 1
        all_slices = ndimage.find_objects(compact)
        slices = [all_slices[i - 1] for i in ids]
        areas = counts[ids]
    else:  # sparse huge ids: compact them first
        uniq, inv = np.unique(a, return_inverse=True)
        inv = inv.reshape(a.shape).astype(np.int64, copy=False)
        counts = np.bincount(inv.ravel(), minlength=len(uniq))
        if uniq[0] == 0:
            ids, areas = uniq[1:], counts[1:]
        else:
            inv = inv + 1
            ids, areas = uniq, counts
        slices = ndimage.find_objects(inv)
    out = []
    for oid, area, sl in zip(ids.tolist(), areas.tolist(), slices):
        starts = [s.start for s in sl]
        stops = [s.stop for s in sl]
        score = None
        if scores is not None:
            try:
                score = scores[oid]
            except (KeyError, IndexError, TypeError):
                score = None
            score = None if score is None else float(score)
        out.append(
            {
                "id": int(oid),
                "slice_range": [starts[0], stops[0] - 1] if a.ndim == 3 else None,
                "area": int(area),
                "bbox": starts + stops,
                "score": score,
            }
        )
    return out
