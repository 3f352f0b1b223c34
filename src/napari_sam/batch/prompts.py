"""Prompts files of ``segment``: CSV, JSON and session files (and napari layers saved as
CSV, :mod:`napari_sam.batch.layer_csv`) read into per-input object prompts
(:func:`load_prompts`), checked against each input's shape (:func:`check_prompts`) and picked
per input (:func:`prompts_for`)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import BatchError, stem_of
from napari_sam.batch.layer_csv import is_layer_csv, prompts_from_layer_csv
from napari_sam.batch.prompt_entries import (
    CSV_ALIASES,
    Prompts,
    check_entry,
    normalise_file_key,
    object_id,
    truthy,
)
from napari_sam.batch.prompt_text import read_prompts_text
from napari_sam.batch.reading import MovieOfVolumes, open_image, open_session_image
from napari_sam.words import counted, for_count

__all__ = ["CSV_ALIASES", "Prompts", "check_prompts", "check_unambiguous", "load_prompts",
           "normalise_file_key", "prompts_for"]


_CSV_KNOWN = {"file", "id", "slice", "row", "col", "label", "row0", "col0", "row1", "col1", "stop",
              "candidate", "time"}


def _refuse_other_separator(path: Path, fieldnames: Sequence[str]) -> None:
    """BatchError when the header is one field holding ';' or a tab: a semicolon- or
    tab-separated file (Excel's CSV export where the decimal mark is a comma), which would
    otherwise be read as one unknown column."""
    if len(fieldnames) != 1 or fieldnames[0] is None:
        return
    header = fieldnames[0]
    for sep, name, shown in ((";", "semicolons (';')", "';'"), ("\t", "tabs", "tab")):
        if sep in header:
            raise BatchError(
                f"prompts file {str(path)!r} is separated by {name}, but prompts files "
                "must be comma-separated (file,id,slice,row,col); save it as \"CSV (comma "
                f"delimited)\" or replace every {shown} by ',' (and any decimal commas in "
                "numbers by '.')"
            )


def _prompts_from_csv(path: Path) -> Prompts:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(read_prompts_text(path), newline=""))
    if reader.fieldnames is None:
        raise BatchError(f"prompts file {str(path)!r} is empty; the first line names the "
                         "columns: file,id,slice,row,col,label,row0,col0,row1,col1")
    _refuse_other_separator(path, reader.fieldnames)
    if is_layer_csv(reader.fieldnames):
        return prompts_from_layer_csv(path, reader)
    # columns without a name (Excel writes the empty columns right of the table, "...,col,,"):
    # named by their place, and they must stay empty (_add_csv_row)
    unnamed = {i: f"column {i + 1}" for i, c in enumerate(reader.fieldnames)
               if c is not None and not c.strip()}
    reader.fieldnames = [unnamed.get(i, c) for i, c in enumerate(reader.fieldnames)]
    cols = _time_column({c: CSV_ALIASES.get(c.strip().lower(), c.strip().lower())
                         for c in reader.fieldnames if c is not None})
    cols.update({c: "" for c in unnamed.values()})
    unknown = sorted(c for c, k in cols.items() if k and k not in _CSV_KNOWN)
    if unknown:
        raise BatchError(
            f"prompts file {str(path)!r}: unknown {for_count(len(unknown), 'column')} {unknown}; "
            "known columns: "
            "file, id, slice, row, col, label, row0, col0, row1, col1, stop, candidate, time "
            "(aliases: "
            + ", ".join(f"{a}={k}" for a, k in CSV_ALIASES.items()) + ")"
        )
    if "id" not in cols.values():
        raise BatchError(f"prompts file {str(path)!r} needs an 'id' column (the object id)")
    per_file = Prompts()
    per_file.t_is_slice = any(c.strip().lower() == "t" and k == "slice" for c, k in cols.items())
    try:
        for raw in reader:
            try:
                _add_csv_row(per_file, raw, cols, f"{path.name}, line {reader.line_num}")
            except BatchError as exc:  # every row's problem, not only the first
                per_file.problems.append(str(exc))
    except csv.Error as exc:
        raise BatchError(f"{path.name}, line {reader.line_num}: not valid CSV ({exc})") from None
    return per_file


def _time_column(cols: dict[str, str]) -> dict[str, str]:
    """The CSV's columns by their canonical names, where a ``t`` column beside a ``z`` (or
    ``slice``) column is the time point of a movie of volumes (``TZYX``): ``time``; alone,
    ``t`` is the slice of a ``TYX`` movie, as before."""
    if list(cols.values()).count("slice") < 2:
        return cols
    return {c: "time" if c.strip().lower() == "t" else k for c, k in cols.items()}


def _add_csv_row(per_file: Prompts, raw: dict, cols: dict, where: str) -> None:
    """Add one row of a prompts CSV (``raw``: csv.DictReader's, ``cols``: its columns by their
    canonical names) to ``per_file``; BatchError naming ``where`` for a bad row."""
    if None in raw:
        raise BatchError(f"{where}: more values than columns; check the commas")
    for k, v in raw.items():
        if k is not None and not cols[k] and (v or "").strip():
            raise BatchError(f"{where}: {k} has no name in the first line but holds "
                             f"{v.strip()!r}; name that column (file, id, slice, row, col, "
                             "...) or delete it")
    row = {cols[k]: (v or "").strip() for k, v in raw.items() if k is not None and cols[k]}
    if not any(row.values()):
        return
    oid = object_id(row.get("id"), where)
    entry: dict[str, Any] = {"slice": row.get("slice") or 0}
    if row.get("row") or row.get("col"):
        entry["points"] = [[row.get("row"), row.get("col")]]
        entry["labels"] = [row.get("label") or 1]
    elif row.get("label"):
        raise BatchError(f"{where}: a label without a point; fill in row and col")
    box = [row.get(k) for k in ("row0", "col0", "row1", "col1")]
    if any(box):
        entry["box"] = box
    if truthy(row.get("stop", "")):
        entry["stop"] = True
    if row.get("candidate"):
        entry["candidate"] = row["candidate"]
    if row.get("time"):
        entry["time"] = row["time"]
    per_file.add(row.get("file", ""), oid, check_entry(entry, where), where)


def _normalise_objects(obj, where: str) -> list[tuple[int, dict, str]]:
    """``[(object id, checked prompt, where), ...]`` of a JSON objects mapping or list."""
    out: list[tuple[int, dict, str]] = []
    if isinstance(obj, list):  # list of records with an "id"
        for i, rec in enumerate(obj):
            at = f"{where}, item {i}"
            if not isinstance(rec, Mapping) or "id" not in rec:
                raise BatchError(f"{at} must be an object with an 'id'")
            rec = dict(rec)
            oid = object_id(rec.pop("id"), at)
            rec.pop("file", None)
            out.append((oid, check_entry(rec, at), at))
        return out
    if not isinstance(obj, Mapping):
        raise BatchError(f"{where}: expected {{object_id: [prompts, ...]}}, got {type(obj).__name__}")
    for key, value in obj.items():
        oid = object_id(key, f"{where}, object {key!r}")
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            raise BatchError(f"{where}, object {oid}: expected a list of prompts, got {items!r}")
        for i, item in enumerate(items):
            at = f"{where}, object {oid}, prompt {i + 1}"
            if not isinstance(item, Mapping):
                raise BatchError(f"{at}: each prompt must be an object, got {item!r}")
            out.append((oid, check_entry(item, at), at))
    return out


def _prompts_from_json(path: Path) -> Prompts:
    try:
        data = json.loads(read_prompts_text(path))
    except ValueError as exc:
        raise BatchError(f"prompts file {str(path)!r} is not valid JSON: {exc}") from None
    where = path.name
    per_file = Prompts()
    if isinstance(data, list):
        per_file.file_field = "the items' \"file\" keys"
        per_file.for_every_input = "leave \"file\" out to apply to every input"
        for i, rec in enumerate(data):
            if not isinstance(rec, Mapping):
                raise BatchError(f"{where}: item {i} must be an object")
            f = str(rec.get("file", ""))
            for oid, item, _ in _normalise_objects([rec], where):
                per_file.add(f, oid, item, f"{where}, item {i}")
        return per_file
    if not isinstance(data, Mapping):
        raise BatchError(f"{where}: expected a JSON object or list, got {type(data).__name__}")
    if "objects" in data or "files" in data:
        extra = sorted(set(data) - {"objects", "files"})
        if extra:
            raise BatchError(f"{where}: unknown top-level {for_count(len(extra), 'key')} {extra}; "
                             "use 'objects' and 'files'")
        per_file.file_field = "the names under \"files\""
        per_file.for_every_input = "put the objects under \"objects\" to apply to every input"
        for oid, item, at in _normalise_objects(data.get("objects") or {}, where):
            per_file.add("", oid, item, at)
        files = data.get("files") or {}
        if not isinstance(files, Mapping):
            raise BatchError(f"{where}: 'files' must map file names to objects")
        for name, objs in files.items():
            for oid, item, at in _normalise_objects(objs, f"{where}, file {name!r}"):
                per_file.add(str(name), oid, item, at)
        return per_file
    for oid, item, at in _normalise_objects(data, where):
        per_file.add("", oid, item, at)
    return per_file


def load_prompts(path: os.PathLike | str, *, defer_problems: bool = False) -> Prompts:
    """Read a prompts file (CSV or JSON) into ``{file_key: {object_id: [slice prompt, ...]}}``.

    ``file_key`` ``""`` holds prompts that apply to every input; other keys are matched
    against each input's name, stem or path (:func:`prompts_for`). Slice prompts are dicts
    with the keys of :class:`napari_sam.volume.SlicePrompt` (``slice``, ``points``,
    ``labels``, ``box``, ``stop``); coordinates are napari order (row, col).

    CSV: one row per point, box or stop marker, columns ``id, slice, row, col, label`` and/or
    ``row0, col0, row1, col1`` and ``stop``; optional ``file``; the aliases of
    ``CSV_ALIASES`` (``z``, ``y``, ``x``, ``object``, ...) are accepted; a napari points layer
    saved as CSV (``index, axis-0, axis-1[, axis-2]`` and its features) gives one object per
    point, or per value of an ``id`` feature. JSON:
    ``{"objects": {id: [prompts]}, "files": {name: {id: [prompts]}}}``, a bare
    ``{id: [prompts]}`` or a list of records ``[{"file"?, "id", "slice", "points"?, ...}]``.
    See docs/cli.md.

    Every prompt's form is checked here (ids >= 1, labels 0 or 1, slices >= 0, 4-number
    boxes); :func:`check_prompts` checks the coordinates against each input's shape. Every
    bad CSV row is named in one error; with ``defer_problems`` (the CLI) the bad rows are
    left out and kept in the result's ``problems`` instead, for :func:`check_prompts` to
    report with the rest (one run names every problem of the file).

    Returns
    -------
    Prompts
        A dict (see above) whose ``where`` attribute names each prompt's line.

    Raises
    ------
    BatchError
        Naming the file, the line (CSV) or object (JSON) and the fix.
    """
    p = Path(path)
    if p.is_dir():
        raise BatchError(f"prompts file {str(p)!r} is a directory; give the .csv or .json file")
    if not p.is_file():
        raise BatchError(f"prompts file {str(p)!r} does not exist")
    if p.suffix.lower() == ".csv":
        per_file = _prompts_from_csv(p)
        if per_file.problems and not defer_problems:
            raise BatchError(_problems_text(per_file.problems))
        return per_file if per_file.problems else _require_prompts(per_file, p)
    if p.suffix.lower() == ".json":
        from napari_sam.session import is_session_file

        if is_session_file(p):
            return _prompts_from_session(p)
        return _require_prompts(_prompts_from_json(p), p)
    raise BatchError(f"prompts file {str(p)!r}: use a .csv or .json file")


def _problems_text(problems: list[str], max_problems: int = 8) -> str:
    """One error naming up to ``max_problems`` problems of a prompts file, and the fix."""
    more = len(problems) - max_problems
    return ("; ".join(p.rstrip(".") for p in problems[:max_problems])
            + (f"; and {more} more" if more > 0 else "")
            + ". Prompts use napari order (slice, row, col) in pixels, from 0; fix the prompts "
              "file (or the 'file' column) and rerun")


def _require_prompts(per_file: Prompts, path: Path) -> Prompts:
    """``per_file`` itself; a :class:`BatchError` naming ``path`` when it holds no prompt."""
    if not any(items for objects in per_file.values() for items in objects.values()):
        kind = "rows" if path.suffix.lower() == ".csv" else "objects"
        raise BatchError(
            f"prompts file {str(path)!r} has no prompt {kind}: add at least one prompt (CSV: a "
            "line such as 1,0,12,34 under the header id,slice,row,col; JSON: "
            '{"objects": {"1": [{"slice": 0, "points": [[12, 34]]}]}}) and rerun')
    return per_file


class _SessionPrompts(dict):
    """One input's prompts from a session file; ``session`` is the session to replay."""

    session = None


def _prompts_from_session(path: Path) -> Prompts:
    """A session file (:mod:`napari_sam.session`) as prompts: every label's prompts apply to
    every input; the session itself rides along (``.session``) for the replay."""
    from napari_sam.session import SessionError, legacy_prompts, read_session

    try:
        sess = read_session(path)
    except SessionError as exc:
        raise BatchError(str(exc)) from None
    if not sess.operations:
        raise BatchError(f"session file {path.name} has no committed objects to replay; commit "
                         "at least one object in the dock and save again")
    per_file = Prompts()
    for oid, items in legacy_prompts(sess).items():
        for item in items:
            where = f"{path.name}, label {oid}"
            per_file.add("", oid, check_entry(item, where), where)
    per_file.session = sess
    return per_file


def _file_keys(input_path: Path, subfolder: Path | None = None) -> set[str]:
    """The ``file`` entries that name ``input_path``: its name, stem and paths, in Unicode
    normal form NFC and with ``/`` for ``\\`` as :func:`normalise_file_key` writes the
    entries."""
    keys = {input_path.name, stem_of(input_path), str(input_path), input_path.as_posix()}
    with contextlib.suppress(OSError):  # a link's own name, not its target's
        keys.add(os.path.join(os.path.realpath(input_path.parent), input_path.name))
    if subfolder is not None and subfolder != Path("."):  # below the folder it was found in
        keys |= {(subfolder / input_path.name).as_posix(),
                 (subfolder / stem_of(input_path)).as_posix()}
    return {unicodedata.normalize("NFC", k.replace("\\", "/")) for k in keys}


def _windows_paths_hint(names: Sequence[str]) -> str:
    """Words for ``file`` entries that are absolute Windows paths (``C:/...``, ``//server/...``
    once normalised), which name no input here; "" when none is."""
    windows = [k for k in names if re.match(r"[A-Za-z]:/|//[^/]", k)]
    if not windows:
        return ""
    return (f" ({windows[0]!r} is a Windows path, which names no file here: write the "
            f"file's name ({windows[0].rsplit('/', 1)[-1]!r}), or its path below the input "
            "folder)")


def check_unambiguous(per_file: Mapping[str, Mapping], inputs: Sequence[Path],
                      subfolders: Mapping[Path, Path] | None = None) -> None:
    """Refuse a prompts file whose ``file`` entry (a name or stem) names several inputs, e.g.
    ``img.tif`` for ``pos1/img.tif`` and ``pos2/img.tif``: the prompts of one would be given to
    all. Raises :class:`BatchError` naming the entry and the path to write instead."""
    owners: dict[str, list[Path]] = {}  # each input's keys once (they resolve paths)
    for p in inputs:
        for k in _file_keys(p, (subfolders or {}).get(p)):
            owners.setdefault(k, []).append(p)
    for key in (k for k in per_file if k):
        hits = owners.get(key, [])
        if len(hits) > 1:
            subs = [((subfolders or {}).get(p, Path(".")) / p.name).as_posix() for p in hits]
            raise BatchError(
                f"the prompts file's 'file' entry {key!r} names {len(hits)} inputs ("
                + ", ".join(str(p) for p in hits[:4]) + "); write the path below the input "
                f"folder instead (e.g. {subs[0]!r}) so that each input gets its own prompts")


def check_prompts(per_file: Mapping[str, Mapping], jobs: Sequence[Job], ctx: Context,
                  *, max_problems: int = 8) -> list[str]:
    """Check every job's prompts against its input's shape, before any work.

    Reads only each input's header (lazy). Inputs that cannot be read are left to their job
    (which reports them as failed).

    Returns
    -------
    list of str
        Notes: prompts keyed to a file that matches no input.

    Raises
    ------
    BatchError
        Listing (up to ``max_problems``) prompts on a slice out of range or outside the
        image, each with its line; or when no input has any prompt.
    """
    where_of = getattr(per_file, "where", {})
    field = getattr(per_file, "file_field", "the 'file' column")
    every = getattr(per_file, "for_every_input", "leave 'file' empty to apply to every input")
    _check_session(per_file, jobs, ctx)
    problems: list[str] = list(getattr(per_file, "problems", ()))  # rows left out
    used: set[str] = set()
    any_prompts = False
    for job in jobs:
        keys = _file_keys(job.input, job.subfolder)
        mine = [k for k in per_file if k == "" or k in keys]
        used.update(mine)
        if not any(per_file[k] for k in mine):
            continue
        any_prompts = True
        problems.extend(_start_problems(per_file, mine, job))
        problems.extend(_candidate_problems(per_file, mine, job))
        try:
            sess, movie = getattr(per_file, "session", None), 0
            if sess is None:
                try:
                    opened = open_image(job.input, ctx)
                except MovieOfVolumes as exc:  # its prompts against one time point's volume
                    movie = exc.time_points
                    opened = open_image(job.input, replace(ctx, time_point=0))
            else:
                opened = open_session_image(job, ctx, sess, say=False)
        except Exception:  # the job reports it
            continue
        problems.extend(_time_problems(per_file, mine, job, movie, opened.label_axes))
        shape = opened.label_shape
        n = 1 if opened.is2d else shape[0]
        h, w = shape[-2:]
        for k in mine:
            for oid, items in per_file[k].items():
                for i, e in enumerate(items):
                    at = where_of.get((k, oid, i), f"object {oid}")
                    msg = _coordinate_problem(e, n, h, w, opened.is2d)
                    if msg:
                        problems.append(f"{at}: {msg} of {job.input.name} "
                                        f"({_shape_words(n, h, w, opened.is2d)})")
    if problems:
        raise BatchError(_problems_text(problems, max_problems))
    if jobs and not any_prompts:
        names = sorted(k for k in per_file if k)
        raise BatchError(
            f"no prompts apply to any input: the prompts file's names ({field}) "
            f"{names[:5]} match none of the {counted(len(jobs), 'input')} "
            f"(e.g. {jobs[0].input.name!r}){_windows_paths_hint(names)}; "
            f"use the inputs' file names (or stems), or {every}")
    notes = []
    unused = sorted(k for k in per_file if k and k not in used)
    if unused:
        import difflib

        lines = sorted({where_of.get((k, oid, 0), "") for k in unused for oid in per_file[k]})
        names = sorted({job.input.name for job in jobs})
        near = [f"{k!r} -> {close[0]!r}" for k in unused[:5]
                if (close := difflib.get_close_matches(k, names, n=1, cutoff=0.8))]
        notes.append(f"prompts for {unused[:5]} ({', '.join(x for x in lines[:3] if x)}) match "
                     f"no input and are ignored; check {field} against the inputs"
                     + (f" (a misspelling? {', '.join(near)})" if near else "")
                     + _windows_paths_hint(unused))
    return notes


def _time_problems(per_file: Mapping[str, Mapping], keys: Sequence[str], job: Job,
                   movie: int, axes: str) -> list[str]:
    """Prompts of ``job`` whose time point does not fit its input: a movie of ``movie`` time
    points (``TZYX``, each segmented as its own volume) needs one on every prompt, in range;
    any other input (``axes``, its labels' axes) has no time point but 0."""
    where_of = getattr(per_file, "where", {})
    found = [(k, oid, i, e.get("time")) for k in keys for oid, items in per_file[k].items()
             for i, e in enumerate(items)]
    name = job.input.name
    if movie and all(t is None for *_, t in found):
        t_alone = ("their 't' column, without a 'z' column beside it, is read as the slice "
                   "(as in a TYX movie's prompts); "
                   if getattr(per_file, "t_is_slice", False) else "")
        return [f"{name} is a movie of {movie} time points (axes TZYX, each segmented as its "
                f"own volume), and its prompts say no time point: {t_alone}add a 't' column "
                "beside 'z' (CSV: t,z,row,col, time points from 0; JSON: \"time\" in each "
                "prompt), or save each time point as its own file"]
    problems = []
    for k, oid, i, t in found:
        at = where_of.get((k, oid, i), f"object {oid}")
        if movie and t is None:
            problems.append(f"{at}: no time point for {name}, a movie of {movie} time points; "
                            "fill in its 't'")
        elif movie and t >= movie:
            problems.append(f"{at}: time point {t} is out of range of {name} "
                            f"({movie} time points, 0-{movie - 1})")
        elif not movie and t and axes.startswith("T"):
            problems.append(f"{at}: time point {t} beside a slice, but {name} is a movie of "
                            f"2D frames (axes {axes}): its frames are its slices; give each "
                            "prompt's frame in 't' alone, without a 'z' column (CSV: "
                            "id,t,row,col)")
        elif not movie and t:
            problems.append(f"{at}: time point {t}, but {name} is not a movie of volumes "
                            f"(axes {axes}): it has no time point besides 0; leave its 't' "
                            "empty, or give its rows in a prompts file of their own")
    return problems


def _start_problems(per_file: Mapping[str, Mapping], keys: Sequence[str], job: Job) -> list[str]:
    """Objects of ``job`` whose prompts start nothing: only negative points, or only stop
    markers (what :func:`napari_sam.volume.segment_volume` would refuse after embedding)."""
    if getattr(per_file, "session", None) is not None:
        return []
    where_of = getattr(per_file, "where", {})
    found: dict[tuple[int, int], list[tuple[str, int, Mapping]]] = {}
    for k in keys:
        for oid, items in per_file[k].items():
            for i, e in enumerate(items):  # (a movie's time points: each its own volume)
                found.setdefault((int(oid), int(e.get("time") or 0)), []).append((k, i, e))
    problems = []
    for (oid, _), items in sorted(found.items()):
        if any(e.get("box") is not None or any(e.get("labels") or ()) for _, _, e in items):
            continue
        k, i, _ = items[0]
        at = where_of.get((k, oid, i), f"object {oid}")
        negative = any(e.get("points") for _, _, e in items)
        what = "only negative points (label 0)" if negative else "only stop markers"
        problems.append(f"{at}: object {oid} of {job.input.name} has {what}, which start "
                        "nothing; add a positive point (label 1) or a box on one slice")
    return problems


def _candidate_problems(per_file: Mapping[str, Mapping], keys: Sequence[str],
                        job: Job) -> list[str]:
    """Prompts of ``job`` with a ``candidate`` that are not alone on their object's slice:
    with the other rows there (another point, a box) the slice is no single click, and
    its prompts give one mask (what :func:`napari_sam.segment_volume` would refuse after
    embedding)."""
    from napari_sam.volume.annotations import prompt_candidate_problem

    where_of = getattr(per_file, "where", {})
    on_slice: dict[tuple[int, int, int], list[tuple[str, int, Mapping]]] = {}
    for k in keys:
        for oid, items in per_file[k].items():
            for i, e in enumerate(items):
                if not e.get("stop"):
                    key = (int(oid), int(e.get("time") or 0), int(e.get("slice", 0)))
                    on_slice.setdefault(key, []).append((k, i, e))
    problems = []
    for (oid, _, z), items in sorted(on_slice.items()):
        chosen = [(k, i, e) for k, i, e in items if e.get("candidate") is not None]
        if not chosen or len(items) == 1:
            continue
        k, i, e = chosen[0]
        problem = prompt_candidate_problem(e["candidate"], e, others=len(items) - 1)
        at = where_of.get((k, oid, i), f"object {oid}")
        problems.append(f"{at}: object {oid} of {job.input.name}, slice {z}: {problem}")
    return problems


def _check_session(per_file, jobs: Sequence[Job], ctx: Context) -> None:
    """A session replays on stacks of the shape it was made for only (BatchError)."""
    from napari_sam.session import SessionError, check_image

    sess = getattr(per_file, "session", None)
    if sess is None:
        return
    for job in jobs:
        try:
            opened = open_session_image(job, ctx, sess, say=False)
        except Exception:  # the job reports it  # noqa: BLE001
            continue
        shape = opened.label_shape
        try:
            check_image(sess, (1, *shape) if opened.is2d else shape, what=job.input.name)
        except SessionError as exc:
            raise BatchError(str(exc)) from None


def _shape_words(n: int, h: int, w: int, is2d: bool) -> str:
    return f"a 2D image of {h} x {w} pixels" if is2d else \
        f"{n} slices 0-{n - 1} of {h} x {w} pixels"


def _coordinate_problem(entry: Mapping, n: int, h: int, w: int, is2d: bool) -> str | None:
    """What is wrong with a prompt's slice or coordinates for a stack of n slices of h x w."""
    z = int(entry.get("slice", 0))
    if not 0 <= z < n:
        return (f"slice {z} is out of range (a 2D image has only slice 0)" if is2d
                else f"slice {z} is out of range")
    for r, c in entry.get("points") or ():
        if not (-0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5):
            return f"point (row {r:g}, col {c:g}) lies outside the image"
    b = entry.get("box")
    if b is not None and (b[2] < 0 or b[3] < 0 or b[0] > h - 1 or b[1] > w - 1):
        return f"box {[float(v) for v in b]} lies outside the image"
    return None


def prompts_for(per_file: Mapping[str, Mapping], input_path: Path,
                subfolder: Path | None = None) -> dict[int, list[dict]]:
    """The prompts of one input: the ones for every file plus those keyed by its name/stem/path
    (or, for an input found in ``subfolder`` below a folder, ``subfolder/name``)."""
    keys = _file_keys(input_path, subfolder)
    merged: dict[int, list[dict]] = {}
    for key, objs in per_file.items():
        if key == "" or key in keys:
            for oid, items in objs.items():
                merged.setdefault(int(oid), []).extend(items)
    if getattr(per_file, "session", None) is not None:
        merged = _SessionPrompts(merged)
        merged.session = per_file.session
    return merged
