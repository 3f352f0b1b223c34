"""napari reader: a label TIFF named ``*_labels.tif`` -> a Labels layer with its scale and units.

File > Open of ``img_labels.tif`` (what ``napari-sam auto`` / ``segment`` write, and what
File > Save Selected Layers writes under that name with the *labels TIFF (napari-sam)*
writer) gives back a Labels layer with the file's ids and dtype, its pixel size as the
layer's scale, its unit (a length) as the layer's units, and the translate our writer
stored. napari's own TIFF reader would give an Image layer in pixels.

The manifest (napari.yaml) gives this reader only names ending in ``_labels.tif``,
``_labels.tiff``, ``_labels.ome.tif`` or ``_labels.ome.tiff``: napari 0.9 matches readers by
file name alone, and asks the user to pick a reader whenever two match a file
(``ViewerModel._open_or_raise_error``), so a ``*.tif`` pattern would put that question
before every TIFF. A file of those names that is not a label image (floats, colour, no
TIFF) is refused (``get_reader`` returns None).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LABEL_SUFFIXES", "get_reader", "read_labels_tiff"]

#: The ends of the file names this reader takes (lower case; the manifest's patterns).
LABEL_SUFFIXES = ("_labels.tif", "_labels.tiff", "_labels.ome.tif", "_labels.ome.tiff")


def get_reader(path: Any) -> Callable[[Any], list[tuple]] | None:
    """npe2's reader hook: :func:`read_labels_tiff` for a label TIFF, else None.

    Parameters
    ----------
    path : str or list of str
        What napari opens; a list (a stack of files) or a folder is refused.

    Returns
    -------
    callable or None
        None when ``path`` is not one file named ``*_labels.tif[f]`` holding one channel of
        whole numbers (integer or bool pixels, no colour or channel axis).
    """
    if not isinstance(path, str | Path) or not str(path).lower().endswith(LABEL_SUFFIXES):
        return None
    from napari_sam.io import read_image

    try:
        img = read_image(path, lazy=True)
    except (OSError, ValueError):  # ImageReadError is a ValueError
        return None
    if _label_axes(img) is None or not (
            img.dtype.kind == "b" or np.issubdtype(img.dtype, np.integer)):
        return None
    return read_labels_tiff


def _label_axes(img) -> str | None:
    """The axes to read a label TIFF with: the file's, where it names no channel axis;
    ``ZYX`` for a first axis of 3 or 4 that only the shape or planar samples make channels
    (tifffile and scikit-image write a 3- or 4-slice stack so; labels have no channels);
    None for channels the file declares (ImageJ, OME) and colour."""
    if "C" not in img.axes:
        return img.axes
    if img.axes == "CYX" and "channels_declared" not in img.metadata:
        return "ZYX"
    return None


def _layer_name(path) -> str:
    """The file's name without the suffix the reader matched (``a.v2_labels.tif`` ->
    ``a.v2_labels``)."""
    name = Path(path).name
    for ext in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return name


def read_labels_tiff(path: Any) -> list[tuple]:
    """Read a label TIFF as napari layer data: ``[(data, meta, "labels")]``.

    Parameters
    ----------
    path : str or pathlib.Path
        A TIFF of whole-number ids, (Y, X), (Z, Y, X), (T, Y, X) or (T, Z, Y, X).

    Returns
    -------
    list of tuple
        One ``(data, meta, "labels")``: ``data`` the ids as stored (uint16 or uint32 for our
        files), loaded into memory (a Labels layer is edited); ``meta`` with ``scale`` (the
        file's pixel size on the spatial axes, 1 elsewhere), ``units`` (only when the file
        names a length unit: that unit on the spatial axes, ``pixel`` elsewhere),
        ``translate`` where our writer stored it, ``name`` the file's name without suffixes, and
        ``metadata["stack_axis"] = "t"`` for a time series (so saving it again writes TYX),
        ``metadata["time_interval"]`` where the file gives a movie's time between frames (so
        saving it again keeps it; the time axis's scale stays 1, as napari's reader gives the
        movie itself).
    """
    from napari_sam.io import read_image

    img = read_image(path)
    if "C" in img.axes and _label_axes(img) is not None:  # 3 or 4 slices guessed as channels
        img = read_image(path, axes=_label_axes(img))
    data = np.asarray(img.data)
    user = img.metadata.get("user") or {}
    meta: dict[str, Any] = {"name": _layer_name(path), "scale": tuple(img.scale)}
    units = _units(img.axes, img.unit)
    if units is not None:
        meta["units"] = units
    translate = user.get("translate")
    if isinstance(translate, list) and len(translate) == data.ndim:
        meta["translate"] = tuple(float(t) for t in translate)
    if "T" in img.axes and "Z" not in img.axes:
        meta["metadata"] = {"stack_axis": "t"}
    if "time_interval" in img.metadata:  # kept for saving (not a scale: the movie has none)
        meta.setdefault("metadata", {})["time_interval"] = img.metadata["time_interval"]
    return [(data, meta, "labels")]


def _units(axes: str, unit: str | None) -> tuple[str, ...] | None:
    """The layer units of a file in ``unit`` (a length on Z, Y and X; ``pixel`` on T); None
    for no unit, or one pint does not know as a length."""
    if not unit:
        return None
    import pint

    reg = pint.get_application_registry()
    try:
        if reg.Unit(unit).dimensionality != reg.Unit("meter").dimensionality:
            return None
    except Exception:  # noqa: BLE001 - any name pint does not know is no length
        return None
    return tuple(unit if a in "ZYX" else "pixel" for a in axes)
