"""napari layers saved as CSV (File > Save Selected Layers) read as ``segment``'s prompts:
a points layer (one object per point, or per ``id`` feature) and a shapes layer (one box per
closed shape)."""

from __future__ import annotations

import csv
from pathlib import Path

from napari_sam.batch.inputs import BatchError
from napari_sam.batch.prompt_entries import (
    CSV_ALIASES,
    Prompts,
    check_entry,
    number,
    object_id,
)

__all__ = ["is_layer_csv", "prompts_from_layer_csv"]


def _axis_columns(fieldnames) -> list[str]:
    """napari's coordinate columns ``axis-0``, ``axis-1``, ... of a CSV header, in order."""
    names = [c.strip().lower() for c in fieldnames if c is not None]
    return [f"axis-{i}" for i in range(len(names)) if f"axis-{i}" in names]


def is_layer_csv(fieldnames) -> bool:
    """Whether a CSV header is that of a napari layer saved as CSV (File > Save Selected
    Layers): a points layer's ``index, axis-0, axis-1[, axis-2], [feature columns]`` or a
    shapes layer's ``index, shape-type, vertex-index, axis-0, ...``."""
    return bool(_axis_columns(fieldnames))


def prompts_from_layer_csv(path: Path, reader: csv.DictReader) -> Prompts:
    """The prompts of a napari points or shapes layer saved as CSV (``reader`` has read the
    header, :func:`is_layer_csv`); every prompt applies to every input.

    Raises
    ------
    BatchError
        Naming the file and line: a layer of other than 2 or 3 dimensions, a point or shape
        between two slices or across slices, an open shape (line, path), an unknown point
        kind, an object id below 1, a negative point without an ``id`` feature.
    """
    axes = _axis_columns(reader.fieldnames)
    lower = {c.strip().lower(): c for c in reader.fieldnames if c is not None}
    shapes = "shape-type" in lower and "vertex-index" in lower
    kind = "shapes" if shapes else "points"
    if (len(axes) not in (2, 3, 4) or axes != [f"axis-{i}" for i in range(len(axes))]
            or any(k.startswith("axis-") and k not in axes for k in lower)):
        raise BatchError(
            f"prompts file {str(path)!r} is a napari {kind} layer with {len(axes)} coordinate "
            "columns (axis-0, axis-1, ...); prompts need a 2D layer (row, col), a 3D one "
            "(slice, row, col) or a 4D one over a movie of volumes (time, slice, row, col): "
            f"save the {kind} of a layer over one 2D image, 3D stack or TZYX movie, or "
            "write the columns id,slice,row,col")
    try:
        if shapes:
            per_file = _prompts_from_shapes_layer(path, reader, axes, lower)
        else:
            per_file = _prompts_from_points_layer(path, reader, axes, lower)
    except csv.Error as exc:
        raise BatchError(f"{path.name}, line {reader.line_num}: not valid CSV ({exc})") from None
    if not per_file:
        raise BatchError(f"prompts file {str(path)!r} is a napari {kind} layer without "
                         f"{kind}: add them in napari and save the layer again")
    return per_file


def _time_of(coords: list[float], n_axes: int, where: str, what: str) -> dict:
    """``{"time": t}`` of a point or vertex of a 4D layer (over a ``TZYX`` movie: ``axis-0``
    is the time point), ``{}`` for fewer axes."""
    if n_axes < 4:
        return {}
    t = coords[0]
    if abs(t - round(t)) > 1e-3:
        raise BatchError(f"{where}: axis-0 (the time point) is {t:g}, between two time "
                         f"points; place the {what} on a time point of the movie")
    return {"time": int(round(t))}


def _slice_of(coords: list[float], n_axes: int, where: str, what: str) -> int:
    """The slice (``axis-0`` of a 3D layer, ``axis-1`` of a 4D one; 0 for a 2D one) of a
    point or vertex."""
    z = 0.0 if n_axes == 2 else coords[-3]
    if abs(z - round(z)) > 1e-3:
        raise BatchError(f"{where}: axis-0 (the slice) is {z:g}, between two slices; place "
                         f"the {what} on a slice of the stack (a layer over an image with a "
                         "channel axis has the channel as axis-0: draw over one channel's "
                         "layer, or write the columns id,slice,row,col)")
    return int(round(z))


def _rows(path: Path, reader: csv.DictReader, lower: dict, axes: list[str]):
    """(where, raw row, coordinates) of every non-empty row."""
    for raw in reader:
        where = f"{path.name}, line {reader.line_num}"
        if None in raw:
            raise BatchError(f"{where}: more values than columns; check the commas")
        if not any((v or "").strip() for v in raw.values()):
            continue
        yield where, raw, [number((raw[lower[a]] or "").strip(), a, where) for a in axes]


#: closed shapes of a napari shapes layer: each gives its bounding box as a box prompt
_CLOSED_SHAPES = ("rectangle", "ellipse", "polygon")


def _prompts_from_shapes_layer(path: Path, reader: csv.DictReader, axes: list[str],
                               lower: dict) -> Prompts:
    """A napari shapes layer saved as CSV: one row per vertex, shapes by ``index``. Each
    closed shape (rectangle, ellipse, polygon) on one slice is an object whose box prompt is
    its bounding box (ids 1, 2, ... in the file's order of shapes)."""
    from napari_sam.prompts import MIN_BOX_SIDE  # the dock's rule

    shapes: dict[str, dict] = {}
    for where, raw, coords in _rows(path, reader, lower, axes):
        key = (raw[lower["index"]] or "").strip() if "index" in lower else where
        shape = shapes.setdefault(key, {"where": where, "kind": "", "vertices": [],
                                        "slices": set()})
        shape["kind"] = (raw[lower["shape-type"]] or "").strip().lower()
        if shape["kind"] not in _CLOSED_SHAPES:
            raise BatchError(
                f"{where}: a {shape['kind'] or 'shape without a type'} is not a box; draw "
                "rectangles (or ellipses, polygons: their bounding box is the box) around the "
                "objects")
        shape["slices"].add((_slice_of(coords, len(axes), where, "shape"),
                             _time_of(coords, len(axes), where, "shape").get("time")))
        shape["vertices"].append(coords[-2:])
    per_file = Prompts()
    for oid, shape in enumerate(shapes.values(), start=1):
        where = shape["where"]
        if len(shape["slices"]) > 1:
            spans = sorted({z for z, _ in shape["slices"]})
            what = f"slices {spans}" if len(spans) > 1 else "time points " + str(
                sorted(t for _, t in shape["slices"]))
            raise BatchError(f"{where}: the {shape['kind']} spans {what}; draw each box on "
                             "one slice")
        rows = [v[0] for v in shape["vertices"]]
        cols = [v[1] for v in shape["vertices"]]
        side = min(max(rows) - min(rows), max(cols) - min(cols))
        if side < MIN_BOX_SIDE:
            raise BatchError(f"{where}: the {shape['kind']} is {side:g} px across, not a box "
                             f"(a plain click draws one; boxes need {MIN_BOX_SIDE:g} px or "
                             "more): drag a rectangle around the object, or remove it")
        z, t = shape["slices"].pop()
        entry = {"slice": z, "box": [min(rows), min(cols), max(rows), max(cols)],
                 **({} if t is None else {"time": t})}
        per_file.add("", oid, check_entry(entry, where), where)
    return per_file


#: a points layer's feature columns read as the point's label (1 on the object, 0 background):
#: the dock's ``prompt`` (positive/negative), or ``label`` / ``positive`` as numbers
_POINT_KIND_COLUMNS = ("prompt", "label", "point_label", "positive")


def _point_kind(value: str, where: str) -> int:
    text = value.strip().lower()
    if text in ("positive", "1", "1.0", "true", "yes"):
        return 1
    if text in ("negative", "0", "0.0", "false", "no"):
        return 0
    raise BatchError(f"{where}: point kind {value!r} is not 'positive' / 1 or 'negative' / 0")


def _prompts_from_points_layer(path: Path, reader: csv.DictReader, axes: list[str],
                               lower: dict) -> Prompts:
    """A napari points layer saved as CSV: ``axis-0, axis-1`` (a 2D layer: row, col),
    ``axis-0, axis-1, axis-2`` (slice, row, col) or, over a ``TZYX`` movie, four (time point,
    slice, row, col) in the layer's data coordinates. Each point
    is its own object (ids 1, 2, ... in file order), unless an ``id`` column (or an alias)
    says which object each point belongs to; a ``prompt`` column (the dock's points layer:
    positive / negative) or ``label`` gives the point's label."""
    id_col = next((lower[c] for c in lower if CSV_ALIASES.get(c, c) == "id"), None)
    kind_col = next((lower[c] for c in _POINT_KIND_COLUMNS if c in lower), None)
    per_file = Prompts()
    n_objects = 0
    for where, raw, coords in _rows(path, reader, lower, axes):
        label = 1 if kind_col is None else _point_kind(raw[kind_col] or "", where)
        if id_col is not None:
            oid = object_id((raw[id_col] or "").strip(), where)
        elif label == 0:
            raise BatchError(
                f"{where}: a negative point, but the file has no 'id' column to say which "
                "object it belongs to (each point of a points layer is its own object); add an "
                "'id' feature to the layer (the object of each point) or remove the negative "
                "points")
        else:
            n_objects += 1
            oid = n_objects
        entry = {"slice": _slice_of(coords, len(axes), where, "point"),
                 "points": [coords[-2:]], "labels": [label],
                 **_time_of(coords, len(axes), where, "point")}
        per_file.add("", oid, check_entry(entry, where), where)
    return per_file
