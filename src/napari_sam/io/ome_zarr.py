"""Zarr groups as images: OME-Zarr multiscales (the full-resolution level, its axes and voxel
size), the bioformats2raw layout (the usual output of converting microscopy files: a root
group marked ``"bioformats2raw.layout": 3`` whose image series are the groups ``0/``,
``1/``, ... listed in ``OME/``'s ``series``), and a group holding a single array.

:func:`open_group_image` is used by :func:`napari_sam.io.read_image` (``readers``); a group
it cannot read raises :class:`GroupLayoutError` with the reason and what to do, which the
reader turns into its ``ImageReadError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_sam.io.axes import AXES_LETTERS, SPATIAL
from napari_sam.io.time_interval import interval, ome_time_unit

#: The value of ``bioformats2raw.layout`` this reader follows (NGFF 0.4 / 0.5 transitional).
BF2RAW_LAYOUT = 3


class GroupLayoutError(ValueError):
    """A zarr group that holds no image this reader can pick: ``reason`` says why, ``hint``
    what to open instead."""

    def __init__(self, reason: str, hint: str):
        self.reason = reason
        self.hint = hint
        super().__init__(f"{reason}. {hint}")


def _ome_attrs(attrs: dict) -> dict:
    """A group's OME attributes: the v0.5 ``ome`` object, else the attributes themselves."""
    ome = attrs.get("ome")
    return ome if isinstance(ome, dict) else attrs


def is_bf2raw(attrs: dict) -> bool:
    """Whether a group's attributes mark the root of a bioformats2raw layout."""
    return _ome_attrs(attrs).get("bioformats2raw.layout") == BF2RAW_LAYOUT \
        or attrs.get("bioformats2raw.layout") == BF2RAW_LAYOUT


def bf2raw_series(group) -> list[str]:
    """The paths of a bioformats2raw root's image series, in order.

    The ``series`` list of the ``OME`` group where it is given (bioformats2raw writes it),
    else the consecutively numbered groups ``0``, ``1``, ... that exist (older versions).
    """
    try:
        listed = _ome_attrs(dict(group["OME"].attrs)).get("series")
    except KeyError:
        listed = None
    if isinstance(listed, list) and listed and all(isinstance(s, str) for s in listed):
        return listed
    found = []
    while True:
        try:
            group[str(len(found))]
        except KeyError:
            return found
        found.append(str(len(found)))


def _series_shape(group, name: str) -> tuple[str, tuple[int, ...]]:
    """(axes, shape) of the full-resolution level of series ``name`` (for the note on the
    series that were not read); ``("?", ())`` where it cannot be read."""
    try:
        arr, axes, _, _ = _multiscales_level0(group[name], Path(name))
        return axes or "?", tuple(int(n) for n in arr.shape)
    except Exception:
        return "?", ()


def _pick_series(group, path: Path, md: dict[str, Any]):
    """The first image series of a bioformats2raw root (``md`` records which, and the
    others: ``series``, ``series_count``, ``other_series``, ``series_paths``)."""
    series = bf2raw_series(group)
    if not series:
        raise GroupLayoutError(
            "it is a bioformats2raw store (\"bioformats2raw.layout\": 3) without image "
            "series (no group '0', nor an 'OME' group listing 'series')",
            "Check that the conversion finished and the store was copied completely.")
    try:
        image = group[series[0]]
    except KeyError as exc:
        raise GroupLayoutError(
            f"its bioformats2raw series {series[0]!r} (listed in OME/.zattrs) is missing",
            "Check that the store was copied completely, or open another series, e.g. "
            f"{str(path / series[-1])!r}.") from exc
    md["series"] = series[0]
    md["series_count"] = len(series)
    md["series_paths"] = [str(path / s) for s in series]
    md["other_series"] = [_series_shape(group, s) for s in series[1:4]]
    return image


def _multiscales_level0(group, path: Path, level: str | None = None, md: dict | None = None):
    """(array, axes or None, sizes, unit or None) of an OME-Zarr image group's
    full-resolution level (or of the level whose path is ``level``); None where the group
    has no multiscales (or no such level). A time axis's scale, with its unit, goes to
    ``md["time_interval"]`` (:mod:`napari_sam.io.time_interval`) where ``md`` is given."""
    ms = _ome_attrs(dict(group.attrs)).get("multiscales")
    if not ms:
        return None
    ms0 = ms[0]
    ds0 = ms0["datasets"][0]
    if level is not None:
        ds0 = next((d for d in ms0["datasets"] if str(d.get("path")) == level), None)
        if ds0 is None:
            return None
    try:
        arr = group[ds0["path"]]
    except KeyError as exc:
        raise GroupLayoutError(f"OME-Zarr level {ds0['path']!r} is missing",
                               "Check that the store was copied completely.") from exc
    names, unit, time_unit = [], None, None
    for a in ms0.get("axes", []):
        names.append((a.get("name") if isinstance(a, dict) else str(a)).upper())
        if isinstance(a, dict) and a.get("unit") and a.get("type") == "space":
            unit = unit or a.get("unit")
        if isinstance(a, dict) and a.get("type") == "time":
            time_unit = a.get("unit")
    axes = "".join(names) if names and all(n in AXES_LETTERS for n in names) else None
    scale = None
    for tr in ds0.get("coordinateTransformations", []):
        if tr.get("type") == "scale":
            scale = tr.get("scale")
    for tr in ms0.get("coordinateTransformations") or []:  # for every level, after
        if tr.get("type") == "scale" and scale is not None \
                and len(tr.get("scale") or []) == len(scale):
            scale = [float(a) * float(b) for a, b in zip(scale, tr["scale"])]
    sizes = {}
    if scale is not None and axes is not None and len(scale) == len(axes):
        sizes = {a: float(s) for a, s in zip(axes, scale) if a in SPATIAL}
        unit_t = time_unit and (ome_time_unit(time_unit) or time_unit)  # ("minute": "min")
        t_scale = float(scale[axes.index("T")]) if "T" in axes else None
        # scale 1 without a unit is the writers' default, no interval the movie claims
        time = None if t_scale is None or (t_scale == 1 and not unit_t) else interval(
            t_scale, unit_t)
        if md is not None and time is not None:
            md["time_interval"] = time
    return arr, axes, sizes, unit


def level_in_parent(path: Path, md: dict | None = None):
    """(axes or None, sizes, unit or None) of a zarr array opened directly that is a level
    of its parent's OME-Zarr multiscales (``stack.zarr/0``): the parent names its axes and
    voxel size (and a movie's time between frames: ``md["time_interval"]``, where ``md`` is
    given); None where the parent is no multiscales image listing it."""
    import zarr

    try:
        parent = zarr.open_group(str(path.parent), mode="r")
        found = _multiscales_level0(parent, path.parent, path.name, md)
    except Exception:
        return None
    return None if found is None else found[1:]


def open_group_image(group, path: Path, md: dict[str, Any]):
    """The image a zarr group holds.

    Parameters
    ----------
    group : zarr.Group
        The group opened at ``path``.
    path : Path
        Its path, for messages and the series' paths.
    md : dict
        The reader's metadata, updated in place: ``format`` (``"ome-zarr"`` for
        multiscales), ``zarr_array`` (a single-array group's array), and for a
        bioformats2raw store ``series`` (the series read), ``series_count``,
        ``series_paths`` and ``other_series`` (``(axes, shape)`` of up to 3 others).

    Returns
    -------
    tuple
        ``(array, axes or None, sizes, unit or None)``: the ``zarr.Array`` of the image
        (OME-Zarr: its full-resolution level), its axes letters, pixel sizes by spatial
        axis letter and the unit as the file spells it.

    Raises
    ------
    GroupLayoutError
        Where the group holds no image, or several arrays and no multiscales.
    """
    if is_bf2raw(dict(group.attrs)):
        group = _pick_series(group, path, md)
        path = path / md["series"]
    found = _multiscales_level0(group, path, md=md)
    if found is not None:
        md["format"] = "ome-zarr"
        return found
    arrays = sorted(group.arrays(), key=lambda t: t[0])
    if len(arrays) != 1:
        names = [n for n, _ in arrays]
        raise GroupLayoutError(
            f"the zarr group holds {len(arrays)} arrays {names} and no OME-Zarr multiscales",
            "Open one array directly, e.g. "
            + (f"{str(path / names[0])!r}." if names else "'group.zarr/array'."))
    md["zarr_array"] = arrays[0][0]
    return arrays[0][1], None, {}, None


#: The files that make a folder a zarr store (v2 array / group, v3).
ZARR_METADATA = (".zarray", ".zgroup", "zarr.json")


def unreadable_store_hint(path: Path) -> str:
    """What to do about a ``.zarr`` path zarr cannot open: zarr's advice, not a TIFF's (a
    folder named ``.zarr`` without zarr metadata, e.g. one holding TIFF files, or a
    store copied in part)."""
    if path.is_dir() and not any((path / n).exists() for n in ZARR_METADATA):
        files = sorted(p.name for p in path.iterdir() if not p.name.startswith("."))
        held = (f"it holds {', '.join(files[:3])}{' ...' if len(files) > 3 else ''}"
                if files else "it is empty")
        return (f"The folder has no zarr metadata ({', '.join(ZARR_METADATA)}) at its top; "
                f"{held}. A zarr store copied in part: copy it again whole; image files "
                "in a folder named .zarr: pass the files themselves (or rename the folder).")
    return ("Check that the zarr store was written and copied completely (its .zarray / "
            ".zgroup or zarr.json files), or open the array inside it directly, e.g. "
            f"{str(path / '0')!r}.")


def second_series(path: Path) -> Path | None:
    """The path of the second image series of the bioformats2raw store at ``path`` (what to
    pass to read it: ``b2r.zarr/1``, or its name in OME's ``series``); None where ``path`` is
    no such store or holds one series."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        series = bf2raw_series(group) if is_bf2raw(dict(group.attrs)) else []
    except Exception:  # (not a readable group: no series to name)
        return None
    return Path(path) / series[1] if len(series) > 1 else None
