"""The time between the frames of a movie (a ``TYX`` or ``TZYX`` image), read from the file
and written back with its labels, so that tracking tools (TrackMate, napari's own time
slider scale) see the same calibration on the labels as on the image.

Where it is stored:

- ImageJ hyperstack TIFF: the ``finterval`` property (and ``tunit``, seconds by default);
- OME-TIFF: the ``Pixels`` attributes ``TimeIncrement`` and ``TimeIncrementUnit`` (written
  as one of OME's ``UnitsTime`` symbols: :func:`ome_time_unit`);
- zarr written by :func:`napari_sam.io.write_labels`: the attributes ``time_interval`` and
  ``time_unit``.

An interval is a dict ``{"value": float, "unit": str}``: ``value`` positive and finite,
``unit`` as the file spells it, ``"s"`` where it names none (ImageJ's ``"sec"`` is ``"s"``).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping

__all__ = [
    "imagej_time_entries",
    "interval",
    "ome_time_entries",
    "ome_time_unit",
    "time_interval_from_imagej",
    "time_interval_from_ome",
    "time_interval_from_zarr",
    "zarr_time_entries",
]

_SECONDS = ("s", "sec", "secs", "second", "seconds")


def interval(value, unit=None) -> dict | None:
    """``{"value", "unit"}`` for a positive finite ``value`` (None otherwise: ImageJ writes
    ``finterval=0`` for "not calibrated")."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not (v > 0 and math.isfinite(v)):
        return None
    u = str(unit).strip() if unit is not None else ""
    return {"value": v, "unit": "s" if not u or u.lower() in _SECONDS else u}


def time_interval_from_imagej(ij: Mapping) -> dict | None:
    """The interval of an ImageJ hyperstack's properties (``tifffile``'s
    ``imagej_metadata``)."""
    return interval(ij.get("finterval"), ij.get("tunit"))


def time_interval_from_ome(xml: str) -> dict | None:
    """The interval of the first OME ``Image`` (its ``Pixels``' ``TimeIncrement``)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] == "Pixels":
            return interval(el.get("TimeIncrement"), el.get("TimeIncrementUnit"))
    return None


def time_interval_from_zarr(attrs: Mapping) -> dict | None:
    """The interval in a zarr array's attributes (as :func:`zarr_time_entries` writes)."""
    return interval(attrs.get("time_interval"), attrs.get("time_unit"))


def imagej_time_entries(time: Mapping) -> dict:
    """ImageJ properties for ``time`` (``finterval``, and ``tunit`` unless seconds). The
    ImageJ description is ASCII: OME's ``µs`` is written ``us``; a unit that is still not
    ASCII writes nothing (``tifffile`` refused it: the labels were not written)."""
    unit = str(time["unit"]).replace("µ", "u").replace("μ", "u")
    if not unit.isascii():
        return {}
    entries = {"finterval": float(time["value"])}
    if unit != "s":
        entries["tunit"] = unit
    return entries


#: OME's ``UnitsTime`` symbols (the only values ``TimeIncrementUnit`` may take) for the ways
#: files and people spell a time unit; ImageJ's ``tunit`` is free text and keeps what it got.
_OME_TIME = {
    **dict.fromkeys(_SECONDS, "s"),
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), "ms"),
    **dict.fromkeys(("µs", "μs", "us", "usec", "usecs", "microsecond", "microseconds"), "µs"),
    **dict.fromkeys(("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"), "ns"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "min"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "h"),
    **dict.fromkeys(("d", "day", "days"), "d"),
}


def ome_time_unit(unit: str) -> str | None:
    """OME's ``UnitsTime`` symbol of ``unit`` (``"us"``, ``"microsecond"``: ``"µs"``;
    ``"hr"``, ``"hour"``: ``"h"``; ``"msec"``: ``"ms"``), None for a unit OME has no
    symbol for."""
    u = str(unit).strip()
    return _OME_TIME.get(u, _OME_TIME.get(u.lower()))


def ome_time_entries(time: Mapping) -> dict:
    """OME ``Pixels`` attributes for ``time``: ``TimeIncrement`` and ``TimeIncrementUnit``
    as an OME ``UnitsTime`` symbol (:func:`ome_time_unit`). A unit OME has no symbol for
    (``"frames"``, ``"weeks"``) writes neither: without a unit OME reads seconds, a wrong
    interval, and a unit outside OME's list makes the file's OME-XML invalid."""
    symbol = ome_time_unit(time["unit"])
    if symbol is None:
        return {}
    return {"TimeIncrement": float(time["value"]), "TimeIncrementUnit": symbol}


def zarr_time_entries(time: Mapping) -> dict:
    """zarr attributes for ``time``."""
    return {"time_interval": float(time["value"]), "time_unit": time["unit"]}
