"""napari writer: a labels layer -> compressed TIFF keeping the layer's scale and units.

File > Save Selected Layers... with a ``.tif`` name (``.tif`` is added to a name without
extension; another extension is refused, with what to type: this writer writes TIFF). The
file is written to a temporary name and renamed (never a half-written file under the final
name) by :func:`napari_sam.io.write_labels`: zlib-compressed ImageJ TIFF (OME-TIFF when ids
need 32 bits), the scale of the spatial axes stored as resolution / spacing, and the layer's
name and translate in the metadata.

The unit written is the layer's (napari's ``layer.units``): a layer in lengths (µm, nm, mm,
...) gets its scale in one length unit (the X axis's; a Z axis in another length unit is
converted), e.g. ImageJ ``unit=nm`` or OME ``PhysicalSizeXUnit="nm"``. A layer in pixels (napari's
default), or whose spatial axes are not all lengths, claims no physical unit: an identity scale
is not written at all, another scale is written with the unit ``pixel``. Reading the file back
with :func:`napari_sam.io.read_image` gives the same scale, and the unit when it is a length.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["physical_scale", "tiff_name", "write_labels_tiff"]

_AXES = {2: "YX", 3: "ZYX", 4: "TZYX"}


@functools.lru_cache(maxsize=1)
def _registry():
    import pint

    return pint.UnitRegistry()


def _unit_of(unit, dimension: str):
    """The pint unit of a layer's axis unit (a pint unit or its name) where it measures
    ``dimension`` (a pint unit name: "meter", "second"), else None (pixels, another
    dimension, an unknown name, or no unit)."""
    if unit is None:
        return None
    reg = _registry()
    try:
        parsed = reg.Unit(str(unit))
    except Exception:  # noqa: BLE001 - any name pint does not know measures nothing
        return None
    return parsed if parsed.dimensionality == reg.Unit(dimension).dimensionality else None


def _length_unit(unit):
    """The pint length unit of a layer's axis unit, else None (pixels, time, unknown)."""
    return _unit_of(unit, "meter")


def _time_scale(size: float, unit) -> dict | None:
    """The time between frames a layer's time axis gives: its scale ``size`` where napari
    names the axis's ``unit`` a time (``minute`` -> ``{"value": size, "unit": "min"}``);
    None for pixels or any other unit."""
    parsed = _unit_of(unit, "second")
    if parsed is None:
        return None
    return {"value": float(size), "unit": f"{parsed:~}"}


def physical_scale(sizes: Sequence[float], units: Sequence | None) -> tuple[list[float], str]:
    """The spatial ``sizes`` of a layer (Z, Y, X order) in one unit, and that unit.

    Parameters
    ----------
    sizes : sequence of float
        The layer's scale along its spatial axes.
    units : sequence or None
        The layer's units along the same axes (napari's pint units or their names).

    Returns
    -------
    sizes : list of float
        In the X axis's length unit (the other axes converted to it); unchanged when the
        unit is ``"pixel"``.
    unit : str
        ``"um"``, or the length's symbol (``"nm"``, ``"mm"``, ...; its name where the symbol
        is not ASCII: ``"angstrom"``); ``"pixel"`` when the units are missing or not all
        lengths (napari's default ``pixel``): no physical claim.
    """
    sizes = [float(s) for s in sizes]
    lengths = [_length_unit(u) for u in units] if units is not None else []
    if len(lengths) != len(sizes) or not lengths or any(u is None for u in lengths):
        return sizes, "pixel"
    target = lengths[-1]
    reg = _registry()
    out = [float(reg.Quantity(s, u).to(target).magnitude) for s, u in zip(sizes, lengths)]
    if target == reg.Unit("micrometer"):
        return out, "um"
    symbol = f"{target:~}"  # "nm", "mm"; ImageJ metadata is ASCII: "angstrom", not "Å"
    return out, symbol if symbol.isascii() else str(target)


def write_labels_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """Write one labels layer; returns the path written, in a list (napari's single-layer
    writer protocol): ``path``, with ``.tif`` added when it has no extension
    (:func:`tiff_name`).

    ``meta`` is the layer's metadata (``scale``, ``units``, ``translate``, ``name``); the
    scale and units of its spatial axes are written as :func:`physical_scale` says. 3D
    labels are ZYX, or TYX when the layer's ``metadata["stack_axis"]`` is ``"t"`` (the dock
    marks the labels layers of an image it works on with its *Stack axis is*).
    The scale of a time axis in a unit of time (``units=("minute", ...)``, as the dock copies
    a movie's), else a ``metadata["time_interval"]`` (what our reader gives a movie's labels),
    is written as the file's time between frames.

    A failure is shown as a napari error notification (why, and what to do) before it is
    raised: napari drops a writer's ``ValueError`` and says only "Given plugin ... is not a
    valid writer" (napari 0.5-0.6's ``plugins._npe2.write_layers``), so the reason would
    otherwise never reach the user.

    Raises
    ------
    ValueError
        Labels that cannot be written (negative ids, more than 4 dimensions, ...).
    OSError
        The file cannot be written.
    """
    try:
        target = tiff_name(path)
    except ValueError as err:
        _notify_failure(path, meta, err, advice="")
        raise
    try:
        return _write(target, data, meta)
    except (ValueError, TypeError, OSError) as err:
        _notify_failure(target, meta, err)
        raise


def tiff_name(path: str) -> str:
    """The TIFF name this writer writes for the name typed in napari's Save dialog.

    A name without extension gets ``.tif`` (as napari's own writers add), also one whose
    last dot starts no letters (``cells_2024.01.05``); ``.tif`` or ``.tiff`` (any case,
    ``.ome.tif`` too) is kept; trailing dots are dropped.

    Raises
    ------
    ValueError
        Another extension (``.npy``, ``.zarr``, ``.png``, ...): this writer writes TIFF only,
        and the message says to name the file ``.tif`` (a ``.npy`` would lose the scale).
    """
    path = path.rstrip(".")
    name = os.path.basename(path)
    suffix = os.path.splitext(name)[1]
    if suffix.lower() in (".tif", ".tiff"):
        return path
    if not any(ch.isalpha() for ch in suffix):  # no extension, or a dotted name (a date)
        return path + ".tif"
    tif = os.path.join(os.path.dirname(path), os.path.splitext(name)[0] + ".tif")
    raise ValueError(
        f"the labels TIFF (napari-sam) writer writes TIFF files only, not {suffix!r}; "
        f"save as {os.path.basename(tif)!r} (.tif or .tiff, or no extension: .tif is added), "
        "which keeps the layer's scale and units"
    )


_ADVICE = "; correct the layer (or pick a folder you can write to) and save again"


def _notify_failure(path: str, meta: dict, err: Exception, advice: str = _ADVICE) -> None:
    """An error notification saying why ``path`` was not written and what to do next
    (``advice``, after "Nothing was written")."""
    from napari.utils.notifications import show_error

    name = meta.get("name") or "the labels layer"
    why = (err.strerror or str(err) if isinstance(err, OSError) else str(err)).rstrip(". ")
    show_error(f"napari-sam-stacks did not save '{name}' to {path}: {why}. Nothing was "
               f"written{advice}.")


def _write(path: str, data: Any, meta: dict) -> list[str]:
    from napari_sam.io import write_labels

    arr = np.asarray(data)
    scale = list(meta.get("scale") or [1.0] * arr.ndim)
    translate = list(meta.get("translate") or [0.0] * arr.ndim)
    units = meta.get("units")
    units = list(units) if units is not None and len(units) == arr.ndim else None
    # drop size-1 axes in front of the image plane (e.g. the channel axis of our layers)
    keep = [i for i in range(arr.ndim) if arr.shape[i] != 1 or i >= arr.ndim - 2]
    if arr.ndim > 2 and len(keep) < arr.ndim:
        arr = arr.reshape([arr.shape[i] for i in keep])
        scale = [scale[i] for i in keep]
        translate = [translate[i] for i in keep]
        units = [units[i] for i in keep] if units is not None else None
    if arr.ndim not in _AXES:
        raise ValueError(
            f"cannot write labels of shape {arr.shape} to TIFF: only 2D, 3D (ZYX) and 4D (TZYX) "
            "labels are supported; save a 3D sub-volume instead"
        )
    axes = _AXES[arr.ndim]
    if axes == "ZYX" and (meta.get("metadata") or {}).get("stack_axis") == "t":
        axes = "TYX"  # a time series (the dock marks its labels layers: "Stack axis is")
    spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
    sizes, unit = physical_scale([scale[i] for i in spatial],
                                 [units[i] for i in spatial] if units is not None else None)
    pixel_size = None if unit == "pixel" and all(s == 1.0 for s in sizes) else sizes
    # the time axis napari scales in a unit of time (the dock copies a movie's onto its
    # labels), else what our reader kept of the file (its time axis stays at scale 1)
    time = _time_scale(scale[0], units[0]) if axes[0] == "T" and units is not None else None
    write_labels(
        path,
        arr,
        axes=axes,
        pixel_size=pixel_size,
        unit=unit,
        metadata={"name": meta.get("name"), "translate": [float(t) for t in translate]},
        overwrite=True,
        time_interval=time or (meta.get("metadata") or {}).get("time_interval"),
    )
    return [str(path)]
