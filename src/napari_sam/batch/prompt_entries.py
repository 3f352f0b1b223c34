"""One prompt of a prompts file, as ``segment`` reads it: numbers, object ids and a slice
prompt's keys checked with the file and line they came from (:func:`check_entry`), and the
per-input collection they go into (:class:`Prompts`)."""

from __future__ import annotations

import math
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from napari_sam.batch.inputs import BatchError
from napari_sam.words import counted, for_count

__all__ = ["CSV_ALIASES", "PROMPT_KEYS", "Prompts", "check_entry", "normalise_file_key",
           "number", "object_id", "truthy", "whole_number"]


def number(value, what: str, where: str) -> float:
    """``value`` as a finite float; a :class:`BatchError` naming ``what`` and ``where`` (the
    file and line) otherwise."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        comma = isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d*,\d+\s*", value)
        hint = (f" (a decimal comma? write {value.strip().replace(',', '.')!r}: prompts files "
                "use '.' for decimals)") if comma else ""
        raise BatchError(f"{where}: {what} must be a number, got {value!r}{hint}") from None
    if not math.isfinite(v):
        raise BatchError(f"{where}: {what} must be finite, got {value!r}")
    return v


def whole_number(value, what: str, where: str) -> int:
    """``value`` as an int (``"3"``, ``3.0``); a :class:`BatchError` for a fraction."""
    v = number(value, what, where)
    if v != int(v):
        raise BatchError(f"{where}: {what} must be a whole number, got {value!r}")
    return int(v)


def truthy(value) -> bool:
    """Whether a CSV cell says yes (``1``, ``true``, ``yes``, ``stop``, ...)."""
    return str(value).strip().lower() in ("1", "true", "yes", "y", "t", "stop")


CSV_ALIASES = {
    "object_id": "id", "object": "id", "label_id": "id", "z": "slice", "t": "slice",
    "y": "row", "x": "col", "column": "col", "point_label": "label", "positive": "label",
    "y0": "row0", "x0": "col0", "y1": "row1", "x1": "col1", "filename": "file", "image": "file",
}


class Prompts(dict):
    """``{file_key: {object_id: [slice prompt, ...]}}`` as read by
    :func:`napari_sam.batch.prompts.load_prompts`.

    A plain dict with one more attribute: ``where`` maps ``(file_key, object_id, index)``
    (the prompt's position in its object's list) to where it was written, e.g.
    ``"clicks.csv, line 7"``, so a prompt found wrong later (outside the image) names its
    line. ``problems``: what was wrong with rows left out (read with ``defer_problems``:
    :func:`~napari_sam.batch.prompts.check_prompts` reports them with the problems found
    against the inputs' shapes, all in one run). ``file_field`` and ``for_every_input``: how
    the file's format names the file a prompt is for, and how it gives prompts for every
    input (a CSV's 'file' column; a JSON file's "files" names or its items' "file" keys), for
    the messages about them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.where: dict[tuple[str, int, int], str] = {}
        self.problems: list[str] = []
        self.file_field = "the 'file' column"
        self.for_every_input = "leave 'file' empty to apply to every input"
        self.t_is_slice = False  # a CSV whose 't' column, without 'z', holds the slice

    def add(self, file_key: str, oid: int, entry: dict, where: str) -> None:
        file_key = normalise_file_key(file_key)
        items = self.setdefault(file_key, {}).setdefault(oid, [])
        self.where[(file_key, oid, len(items))] = where
        items.append(entry)


PROMPT_KEYS = ("slice", "points", "labels", "box", "stop", "candidate", "time")


def normalise_file_key(file_key: str) -> str:
    """A prompts file's ``file`` entry as the inputs' keys are written (``./my data/x.tif``
    and ``my data//x.tif`` -> ``my data/x.tif``; a Windows colleague's ``pos1\\img.tif`` ->
    ``pos1/img.tif``), in Unicode normal form NFC (``café`` typed as one character or as
    ``e`` and a combining accent, as macOS writes file names, is one name); ``""`` (every
    input) stays ``""``.

    Parameters
    ----------
    file_key : str

    Returns
    -------
    str
    """
    text = str(file_key).strip().replace("\\", "/")
    if not text:
        return ""
    return unicodedata.normalize("NFC", Path(os.path.normpath(os.path.expanduser(text))).as_posix())


def object_id(value, where: str) -> int:
    oid = whole_number(value, "the object id", where)
    if oid < 1:
        raise BatchError(f"{where}: object id {oid} is not allowed: ids are 1, 2, 3, ... "
                         "(0 is the background); renumber the object")
    return oid


def check_entry(entry: Mapping, where: str) -> dict:
    """Validate one slice prompt's form (not yet its coordinates: they need the image shape)."""
    unknown = sorted(set(entry) - set(PROMPT_KEYS))
    if unknown:
        raise BatchError(f"{where}: unknown {for_count(len(unknown), 'key')} {unknown}; "
                         "a prompt has "
                         f"{', '.join(PROMPT_KEYS)}")
    out: dict[str, Any] = {"slice": whole_number(entry.get("slice", 0), "slice", where)}
    if out["slice"] < 0:
        raise BatchError(f"{where}: slice {out['slice']} is negative; slices count from 0")
    if entry.get("points") is not None:
        pts = entry["points"]
        if isinstance(pts, Sequence) and len(pts) == 2 and not isinstance(pts[0], Sequence):
            pts = [pts]
        if not isinstance(pts, Sequence) or not pts or any(
                not isinstance(p, Sequence) or len(p) != 2 for p in pts):
            raise BatchError(f"{where}: points must be a list of [row, col] pairs, got "
                             f"{entry['points']!r}")
        out["points"] = [[number(r, "row", where), number(c, "col", where)] for r, c in pts]
        labels = entry.get("labels")
        labels = [1] * len(pts) if labels is None else (
            list(labels) if isinstance(labels, Sequence) and not isinstance(labels, str)
            else [labels])
        if len(labels) != len(pts):
            raise BatchError(f"{where}: {counted(len(pts), 'point')} but "
                             f"{counted(len(labels), 'label')}; give "
                             "one label per point (1 object, 0 background)")
        out["labels"] = [whole_number(v, "label", where) for v in labels]
        bad = [v for v in out["labels"] if v not in (0, 1)]
        if bad:
            raise BatchError(f"{where}: label {bad[0]} is not allowed: a point's label is 1 "
                             "(on the object) or 0 (background); the object's id goes in 'id'")
    elif entry.get("labels") is not None:
        raise BatchError(f"{where}: labels without points; add the points (row, col)")
    if entry.get("box") is not None:
        box = entry["box"]
        if not isinstance(box, Sequence) or isinstance(box, str) or len(box) != 4:
            raise BatchError(f"{where}: box must be 4 numbers [row0, col0, row1, col1], got "
                             f"{box!r}")
        out["box"] = [number(v, k, where) for v, k in zip(box, ("row0", "col0", "row1", "col1"))]
        b = out["box"]
        if b[2] < b[0] or b[3] < b[1]:
            raise BatchError(f"{where}: box {b} is inverted; give row0 <= row1 and col0 <= col1 "
                             "(top-left corner first)")
    if entry.get("stop") is not None and truthy(entry["stop"]):
        if "points" in out or "box" in out:
            raise BatchError(f"{where}: a stop marker carries no point or box; put them on "
                             "separate rows")
        out["stop"] = True
    if len(out) == 1:
        raise BatchError(f"{where}: the prompt has no point (row, col), box (row0, col0, "
                         "row1, col1) or stop marker")
    if entry.get("candidate") is not None and str(entry["candidate"]).strip() != "":
        out["candidate"] = _candidate(entry["candidate"], out, where)
    if entry.get("time") is not None and str(entry["time"]).strip() != "":
        out["time"] = whole_number(entry["time"], "time point", where)
        if out["time"] < 0:
            raise BatchError(f"{where}: time point {out['time']} is negative; time points "
                             "count from 0")
    return out


def _candidate(value, entry: Mapping, where: str) -> int:
    """A prompt's ``candidate``: which of a single click's three masks seeds the object on
    its slice (:func:`napari_sam.volume.annotations.candidate_problem`)."""
    from napari_sam.volume.annotations import prompt_candidate_problem

    if isinstance(value, bool):
        value = "true" if value else "false"
    try:
        c = whole_number(value, "candidate", where)
    except BatchError:
        c = None
    problem = prompt_candidate_problem(value if c is None else c, entry)
    if problem:
        raise BatchError(f"{where}: {problem}")
    return c
