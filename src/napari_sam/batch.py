"""File-level batch jobs: inputs, outputs, resume, memory-bounded reading, dask.distributed.

This module is the engine behind the ``napari-sam`` command (:mod:`napari_sam.cli`); it is
part of the core and never imports napari or Qt. It can be used from Python too::

    from napari_sam import batch
    inputs = batch.collect_inputs(["data/*.tif"])
    ctx = batch.Context(command="auto", model="demo", out_dir="out")
    results = batch.run_jobs(batch.make_jobs(inputs, ctx), ctx)

Rules every job follows
-----------------------
* **One output per input** (``out/<stem>_labels.tif`` for ``auto`` and ``segment``,
  ``out/<stem>.zarr`` for ``embed``) with a JSON sidecar (``<output>.json``, see
  :func:`napari_sam.io.write_sidecar`).
* **Atomic outputs.** Labels are written to a hidden temporary name and renamed into place;
  the sidecar is written after the output. Before a job starts, its sidecar is marked
  ``"status": "partial"``, so an output whose job was killed at any point is never taken as
  complete: a rerun recomputes it.
* **Resume.** A rerun skips outputs that are complete (sidecar ``complete``, output size, input
  size, mtime and sampled content hash, command and parameters all matching) and finishes partial ones: per-slice
  work (embeddings in a zarr store, per-slice automatic segmentations) lives in
  ``out/.napari-sam-work/`` and is reused, then deleted when the output is complete.
* **One bad file never stops the batch.** Every failure becomes a :class:`JobResult` with a
  one-line reason; only ``KeyboardInterrupt`` (Ctrl-C, or SIGTERM from a job scheduler) ends
  a batch early, leaving finished outputs complete and the others resumable.
* **Locks.** A job holds an exclusive ``flock`` on its output while it runs (POSIX), so two
  processes never write the same output. A serial run leaves an output another process is
  writing for the end of its batch and then waits for it (and skips it when the other
  process completed it); on a cluster it comes back ``"busy"``, which is not a success.
  Lock files are removed when their job ends.
* **Bounded memory.** Inputs are read lazily (memory-mapped or through zarr), one slice at a
  time, and memory-mapped pages are released as the job goes (:class:`SliceSource`). ``embed``
  streams embeddings to zarr; ``auto`` segments slice by slice, stores each slice's result on
  disk and writes the label TIFF page by page, so its peak memory does not grow with the
  number of slices (see docs/cli.md, "Memory"). ``segment`` holds the label volume in memory
  (Z x Y x X x 2 bytes).
* **Scale-out.** :func:`run_jobs` with ``scheduler=`` (an address) or ``workers=N`` (a
  ``LocalCluster`` of N processes) submits one task per file, or per block of slices of a
  stack with more than ``block_slices`` slices (``embed`` and ``auto``). Each worker process
  loads a model once (:func:`get_model`, a module-level cache) and reuses it for every task.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam import io as nio

__all__ = [
    "BatchError",
    "COMMANDS",
    "Prompts",
    "check_prompts",
    "Context",
    "Job",
    "JobResult",
    "SliceSource",
    "collect_inputs",
    "get_model",
    "load_prompts",
    "make_jobs",
    "model_cache_info",
    "output_path",
    "output_state",
    "run_job",
    "run_jobs",
    "write_labels_stream",
    "write_preview",
]

logger = logging.getLogger(__name__)

#: Commands that produce one output per input file.
COMMANDS = ("auto", "segment", "embed")
#: File suffixes picked up when a directory is given as input.
IMAGE_SUFFIXES = (".tif", ".tiff", ".btf", ".npy", ".zarr")
#: Hidden folder inside the output folder for resumable per-slice work and locks.
WORK_DIR = ".napari-sam-work"
_MADVISE_EVERY = 64 << 20  # release memory-mapped input pages after this many bytes read


class BatchError(ValueError):
    """A problem with the batch as a whole (inputs, outputs, prompts file): nothing was run."""


# ============================================================================ inputs


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith("."):
        return False
    if path.is_dir():
        return name.endswith(".zarr") or nio.is_zarr_path(path)
    return name.endswith(IMAGE_SUFFIXES)


def _is_our_output(path: Path) -> bool:
    sc = nio.read_sidecar(path)
    return sc is not None and sc.get("format") == nio.SIDECAR_FORMAT


def collect_inputs(
    specs: Iterable[str | os.PathLike], *, recursive: bool = False
) -> list[Path]:
    """Expand files, directories and glob patterns into a sorted, de-duplicated list of images.

    A directory contributes its ``.tif``/``.tiff``/``.btf``/``.npy`` files and ``.zarr``
    stores (with ``recursive=True`` those of its subfolders too); a glob (``"data/*.tif"``,
    ``"data/**/*.tif"``) its matches; a zarr directory is one input. Files that are outputs of
    napari-sam (they have a napari-sam sidecar) are left out, so writing the outputs next to
    the inputs does not feed them back in.

    Raises
    ------
    BatchError
        Naming every path that does not exist, pattern that matches nothing and directory
        without images.
    """
    found: list[Path] = []
    problems = []
    for spec in specs:
        text = os.path.expanduser(os.fspath(spec))
        p = Path(text)
        if glob.has_magic(text) and not p.exists():
            matches = [Path(m) for m in sorted(glob.glob(text, recursive=True))]
            matches = [m for m in matches if m.is_file() or _is_image(m)]
            if not matches:
                problems.append(f"{text!r} matches no files")
        elif p.is_dir() and not nio.is_zarr_path(p):
            pattern = "**/*" if recursive else "*"
            matches = sorted(m for m in p.glob(pattern) if _is_image(m) and WORK_DIR not in m.parts)
            if not matches:
                problems.append(
                    f"directory {text!r} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                    + ("" if recursive else "; use --recursive to search subfolders")
                )
        elif p.exists():
            matches = [p]
        else:
            problems.append(f"{text!r}: no such file or directory")
            matches = []
        found.extend(matches)
    if problems:
        raise BatchError("; ".join(problems))
    out, seen = [], set()
    for m in found:
        key = m.resolve()
        if key in seen or _is_our_output(m):
            continue
        seen.add(key)
        out.append(m)
    if not out:
        raise BatchError("no input images left (every match is an output of napari-sam)")
    return out


def stem_of(path: os.PathLike | str) -> str:
    """File name without its image suffix (``a.ome.tif`` -> ``a``, ``b.zarr`` -> ``b``)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".btf", ".npy", ".zarr"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def output_path(input_path: os.PathLike | str, out_dir: os.PathLike | str, command: str, *,
                suffix: str = "_labels", fmt: str = "tif") -> Path:
    """Where ``command`` writes the output of ``input_path``.

    ``auto`` / ``segment``: ``out_dir/<stem><suffix>.<fmt>``; ``embed``: ``out_dir/<stem>.zarr``.
    """
    stem = stem_of(input_path)
    if command == "embed":
        return Path(out_dir) / f"{stem}.zarr"
    return Path(out_dir) / f"{stem}{suffix}.{fmt.lstrip('.')}"


# ============================================================================ prompts


def _num(value, what: str, where: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise BatchError(f"{where}: {what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise BatchError(f"{where}: {what} must be finite, got {value!r}")
    return v


def _int(value, what: str, where: str) -> int:
    v = _num(value, what, where)
    if v != int(v):
        raise BatchError(f"{where}: {what} must be a whole number, got {value!r}")
    return int(v)


def _truthy(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y", "t", "stop")


_CSV_ALIASES = {
    "object_id": "id", "object": "id", "label_id": "id", "z": "slice", "t": "slice",
    "y": "row", "x": "col", "column": "col", "point_label": "label", "positive": "label",
    "y0": "row0", "x0": "col0", "y1": "row1", "x1": "col1", "filename": "file", "image": "file",
}
_CSV_KNOWN = {"file", "id", "slice", "row", "col", "label", "row0", "col0", "row1", "col1", "stop"}


class Prompts(dict):
    """``{file_key: {object_id: [slice prompt, ...]}}`` as read by :func:`load_prompts`.

    A plain dict with one more attribute: ``where`` maps ``(file_key, object_id, index)``
    (the prompt's position in its object's list) to where it was written, e.g.
    ``"clicks.csv, line 7"``, so a prompt found wrong later (outside the image) names its
    line.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.where: dict[tuple[str, int, int], str] = {}

    def add(self, file_key: str, oid: int, entry: dict, where: str) -> None:
        items = self.setdefault(file_key, {}).setdefault(oid, [])
        self.where[(file_key, oid, len(items))] = where
        items.append(entry)


_PROMPT_KEYS = ("slice", "points", "labels", "box", "stop")


def _object_id(value, where: str) -> int:
    oid = _int(value, "the object id", where)
    if oid < 1:
        raise BatchError(f"{where}: object id {oid} is not allowed: ids are 1, 2, 3, ... "
                         "(0 is the background); renumber the object")
    return oid


def _check_entry(entry: Mapping, where: str) -> dict:
    """Validate one slice prompt's form (not yet its coordinates: they need the image shape)."""
    unknown = sorted(set(entry) - set(_PROMPT_KEYS))
    if unknown:
        raise BatchError(f"{where}: unknown key(s) {unknown}; a prompt has "
                         f"{', '.join(_PROMPT_KEYS)}")
    out: dict[str, Any] = {"slice": _int(entry.get("slice", 0), "slice", where)}
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
        out["points"] = [[_num(r, "row", where), _num(c, "col", where)] for r, c in pts]
        labels = entry.get("labels")
        labels = [1] * len(pts) if labels is None else (
            list(labels) if isinstance(labels, Sequence) and not isinstance(labels, str)
            else [labels])
        if len(labels) != len(pts):
            raise BatchError(f"{where}: {len(pts)} point(s) but {len(labels)} label(s); give "
                             "one label per point (1 object, 0 background)")
        out["labels"] = [_int(v, "label", where) for v in labels]
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
        out["box"] = [_num(v, k, where) for v, k in zip(box, ("row0", "col0", "row1", "col1"))]
        b = out["box"]
        if b[2] < b[0] or b[3] < b[1]:
            raise BatchError(f"{where}: box {b} is inverted; give row0 <= row1 and col0 <= col1 "
                             "(top-left corner first)")
    if entry.get("stop") is not None and _truthy(entry["stop"]):
        if "points" in out or "box" in out:
            raise BatchError(f"{where}: a stop marker carries no point or box; put them on "
                             "separate rows")
        out["stop"] = True
    if len(out) == 1:
        raise BatchError(f"{where}: the prompt has no point (row, col), box (row0, col0, "
                         "row1, col1) or stop marker")
    return out


def _read_text(path: Path) -> str:
    """The prompts file as text: UTF-8 (with or without a BOM), else a clear error."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise BatchError(
            f"prompts file {str(path)!r} is not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"on line {line}); save it as UTF-8 (Excel: \"CSV UTF-8\"; iconv -f latin1 -t utf-8)"
        ) from None
    except OSError as exc:
        raise BatchError(f"prompts file {str(path)!r} cannot be read: {exc.strerror or exc}; "
                         "check its permissions") from None


def _prompts_from_csv(path: Path) -> Prompts:
    import csv
    import io

    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    if reader.fieldnames is None:
        raise BatchError(f"prompts file {str(path)!r} is empty; the first line names the "
                         "columns: file,id,slice,row,col,label,row0,col0,row1,col1")
    cols = {c: _CSV_ALIASES.get(c.strip().lower(), c.strip().lower())
            for c in reader.fieldnames if c is not None}
    unknown = sorted(c for c, k in cols.items() if k not in _CSV_KNOWN)
    if unknown:
        raise BatchError(
            f"prompts file {str(path)!r}: unknown column(s) {unknown}; known columns: "
            "file, id, slice, row, col, label, row0, col0, row1, col1, stop (aliases: "
            + ", ".join(f"{a}={k}" for a, k in _CSV_ALIASES.items()) + ")"
        )
    if "id" not in cols.values():
        raise BatchError(f"prompts file {str(path)!r} needs an 'id' column (the object id)")
    per_file = Prompts()
    try:
        for raw in reader:
            n = reader.line_num
            where = f"{path.name}, line {n}"
            if None in raw:
                raise BatchError(f"{where}: more values than columns; check the commas")
            row = {cols[k]: (v or "").strip() for k, v in raw.items() if k is not None}
            if not any(row.values()):
                continue
            oid = _object_id(row.get("id"), where)
            entry: dict[str, Any] = {"slice": row.get("slice") or 0}
            if row.get("row") or row.get("col"):
                entry["points"] = [[row.get("row"), row.get("col")]]
                entry["labels"] = [row.get("label") or 1]
            elif row.get("label"):
                raise BatchError(f"{where}: a label without a point; fill in row and col")
            box = [row.get(k) for k in ("row0", "col0", "row1", "col1")]
            if any(box):
                entry["box"] = box
            if _truthy(row.get("stop", "")):
                entry["stop"] = True
            per_file.add(row.get("file", ""), oid, _check_entry(entry, where), where)
    except csv.Error as exc:
        raise BatchError(f"{path.name}, line {reader.line_num}: not valid CSV ({exc})") from None
    return per_file


def _normalise_objects(obj, where: str) -> list[tuple[int, dict, str]]:
    """``[(object id, checked prompt, where), ...]`` of a JSON objects mapping or list."""
    out: list[tuple[int, dict, str]] = []
    if isinstance(obj, list):  # list of records with an "id"
        for i, rec in enumerate(obj):
            at = f"{where}, item {i}"
            if not isinstance(rec, Mapping) or "id" not in rec:
                raise BatchError(f"{at} must be an object with an 'id'")
            rec = dict(rec)
            oid = _object_id(rec.pop("id"), at)
            rec.pop("file", None)
            out.append((oid, _check_entry(rec, at), at))
        return out
    if not isinstance(obj, Mapping):
        raise BatchError(f"{where}: expected {{object_id: [prompts, ...]}}, got {type(obj).__name__}")
    for key, value in obj.items():
        oid = _object_id(key, f"{where}, object {key!r}")
        items = [value] if isinstance(value, Mapping) else value
        if not isinstance(items, list):
            raise BatchError(f"{where}, object {oid}: expected a list of prompts, got {items!r}")
        for i, item in enumerate(items):
            at = f"{where}, object {oid}, prompt {i + 1}"
            if not isinstance(item, Mapping):
                raise BatchError(f"{at}: each prompt must be an object, got {item!r}")
            out.append((oid, _check_entry(item, at), at))
    return out


def _prompts_from_json(path: Path) -> Prompts:
    try:
        data = json.loads(_read_text(path))
    except ValueError as exc:
        raise BatchError(f"prompts file {str(path)!r} is not valid JSON: {exc}") from None
    where = path.name
    per_file = Prompts()
    if isinstance(data, list):
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
            raise BatchError(f"{where}: unknown top-level key(s) {extra}; use 'objects' and 'files'")
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


def load_prompts(path: os.PathLike | str) -> Prompts:
    """Read a prompts file (CSV or JSON) into ``{file_key: {object_id: [slice prompt, ...]}}``.

    ``file_key`` ``""`` holds prompts that apply to every input; other keys are matched
    against each input's name, stem or path (:func:`prompts_for`). Slice prompts are dicts
    with the keys of :class:`napari_sam.volume.SlicePrompt` (``slice``, ``points``,
    ``labels``, ``box``, ``stop``); coordinates are napari order (row, col).

    CSV: one row per point, box or stop marker, columns ``id, slice, row, col, label`` and/or
    ``row0, col0, row1, col1`` and ``stop``; optional ``file``; the aliases of
    ``_CSV_ALIASES`` (``z``, ``y``, ``x``, ``object``, ...) are accepted. JSON:
    ``{"objects": {id: [prompts]}, "files": {name: {id: [prompts]}}}``, a bare
    ``{id: [prompts]}`` or a list of records ``[{"file"?, "id", "slice", "points"?, ...}]``.
    See docs/cli.md.

    Every prompt's form is checked here (ids >= 1, labels 0 or 1, slices >= 0, 4-number
    boxes); :func:`check_prompts` checks the coordinates against each input's shape.

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
        return _prompts_from_csv(p)
    if p.suffix.lower() == ".json":
        from napari_sam.session import is_session_file

        return _prompts_from_session(p) if is_session_file(p) else _prompts_from_json(p)
    raise BatchError(f"prompts file {str(p)!r}: use a .csv or .json file")


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
            per_file.add("", oid, _check_entry(item, where), where)
    per_file.session = sess
    return per_file


def _file_keys(input_path: Path) -> set[str]:
    keys = {input_path.name, stem_of(input_path), str(input_path), input_path.as_posix()}
    with contextlib.suppress(OSError):
        keys.add(str(input_path.resolve()))
    return keys


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
    _check_session(per_file, jobs, ctx)
    problems: list[str] = []
    used: set[str] = set()
    any_prompts = False
    for job in jobs:
        keys = _file_keys(job.input)
        mine = [k for k in per_file if k == "" or k in keys]
        used.update(mine)
        if not any(per_file[k] for k in mine):
            continue
        any_prompts = True
        try:
            opened = open_image(job.input, ctx)
        except Exception:  # the job reports it
            continue
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
        more = len(problems) - max_problems
        raise BatchError("; ".join(problems[:max_problems])
                         + (f"; and {more} more" if more > 0 else "")
                         + ". Prompts use napari order (slice, row, col) in pixels, from 0; "
                           "fix the prompts file (or the 'file' column) and rerun")
    if jobs and not any_prompts:
        names = sorted(k for k in per_file if k)
        raise BatchError(
            "no prompts apply to any input: the prompts file's 'file' entries "
            f"{names[:5]} match none of the {len(jobs)} input(s) (e.g. {jobs[0].input.name!r}); "
            "use the inputs' file names (or stems), or leave 'file' empty to apply to every input")
    notes = []
    unused = sorted(k for k in per_file if k and k not in used)
    if unused:
        lines = sorted({where_of.get((k, oid, 0), "") for k in unused for oid in per_file[k]})
        notes.append(f"prompts for {unused[:5]} ({', '.join(x for x in lines[:3] if x)}) match "
                     "no input and are ignored; check the 'file' column against the inputs")
    return notes


def _check_session(per_file, jobs: Sequence[Job], ctx: Context) -> None:
    """A session replays on stacks of the shape it was made for only (BatchError)."""
    from napari_sam.session import SessionError, check_image

    sess = getattr(per_file, "session", None)
    if sess is None:
        return
    for job in jobs:
        try:
            opened = open_image(job.input, ctx)
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


def prompts_for(per_file: Mapping[str, Mapping], input_path: Path) -> dict[int, list[dict]]:
    """The prompts of one input: the ones for every file plus those keyed by its name/stem/path."""
    keys = _file_keys(input_path)
    merged: dict[int, list[dict]] = {}
    for key, objs in per_file.items():
        if key == "" or key in keys:
            for oid, items in objs.items():
                merged.setdefault(int(oid), []).extend(items)
    if getattr(per_file, "session", None) is not None:
        merged = _SessionPrompts(merged)
        merged.session = per_file.session
    return merged


# ============================================================================ jobs


@dataclass
class Context:
    """Settings shared by every job of a batch (picklable: it travels to dask workers).

    Attributes
    ----------
    command : {"auto", "segment", "embed"}
    model : str
        Registry name or checkpoint path, given to :func:`napari_sam.load_model`.
    out_dir : path
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``.
    params : dict
        Algorithm parameters (recorded in the sidecar; a change makes a rerun recompute).
    axes : str, optional
        Override of the inputs' axes (``--axes``).
    channel : int, optional
        Channel to segment for multi-channel inputs.
    overwrite, preview, quiet, verbose : bool
    suffix, fmt : str
        Output naming (see :func:`output_path`).
    batch_size : int
        Slices per encoder call.
    keep_work : bool
        Keep ``.napari-sam-work`` data (embeddings) after an output is complete.
    embeddings_dir : path, optional
        Reuse embedding stores written by ``napari-sam embed`` (``<dir>/<stem>.zarr``).
    """

    command: str
    model: str = "demo"
    out_dir: str | os.PathLike = "."
    device: str = "auto"
    params: dict = field(default_factory=dict)
    axes: str | None = None
    channel: int | None = None
    overwrite: bool = False
    preview: bool = False
    quiet: bool = False
    verbose: bool = False
    suffix: str = "_labels"
    fmt: str = "tif"
    batch_size: int = 4
    keep_work: bool = False
    embeddings_dir: str | os.PathLike | None = None

    def signature(self) -> dict:
        """What must match for a rerun to skip an output: command, model and parameters."""
        sig = {"command": self.command, "model": _model_key(self.model), "channel": self.channel,
               "axes": self.axes, **self.params}
        return json.loads(json.dumps(sig, default=nio.json_default, sort_keys=True))


@dataclass
class Job:
    """One input file and its output. ``prompts`` is used by ``segment``."""

    input: Path
    output: Path
    prompts: dict | None = None

    @property
    def name(self) -> str:
        return self.input.name


@dataclass
class JobResult:
    """What happened to one input.

    ``status`` is ``"done"``, ``"skipped"`` (already complete), ``"busy"`` (another process
    was writing the output: nothing was done, not ok) or ``"failed"``; ``reason`` says why
    for the last three; ``objects`` counts the objects (label
    outputs) or slices (embeddings); ``model_loaded`` tells whether this job had to load the
    model in its process (False when the process's model cache already held it); ``pid`` is
    the process that ran it.
    """

    input: str
    output: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    objects: int | None = None
    model_loaded: bool = False
    pid: int = 0
    details: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


def make_jobs(inputs: Sequence[Path], ctx: Context,
              prompts: Mapping[str, Mapping] | None = None) -> list[Job]:
    """One :class:`Job` per input; refuses inputs that would share an output name."""
    jobs = []
    by_output: dict[Path, Path] = {}
    clashes = []
    for inp in inputs:
        out = output_path(inp, ctx.out_dir, ctx.command, suffix=ctx.suffix, fmt=ctx.fmt)
        key = out.resolve()
        if key in by_output:
            clashes.append(f"{by_output[key]} and {inp} -> {out}")
        by_output[key] = inp
        if key == Path(inp).resolve():
            raise BatchError(f"the output {out} would replace its own input; choose another -o")
        job_prompts = None
        if prompts is not None:
            job_prompts = prompts_for(prompts, Path(inp))
        jobs.append(Job(Path(inp), out, job_prompts))
    if clashes:
        raise BatchError(
            "several inputs would write the same output (" + "; ".join(clashes)
            + "); run them into different output folders"
        )
    return jobs


# ============================================================================ models

_MODELS: dict[tuple[str, str], Any] = {}
_MODEL_LOADS: list[tuple[str, str]] = []


def _model_key(spec: str) -> str:
    """Registry names stay names; paths become absolute (workers may have another cwd)."""
    from napari_sam.models.registry import REGISTRY

    if spec in REGISTRY:
        return spec
    return str(Path(spec).expanduser().resolve())


def get_model(spec: str, device: str = "auto"):
    """The model ``spec`` on ``device``, loaded once per process and then reused.

    The cache is a module-level dict keyed by (model, device): every task a dask worker
    process runs shares it. Returns ``(model, loaded_now)``.
    """
    from napari_sam.device import resolve_device

    dev = str(resolve_device(device))
    key = (_model_key(spec), dev)
    model = _MODELS.get(key)
    if model is not None:
        return model, False
    from napari_sam.models.registry import load_model

    model = _load_quietly(load_model, key[0] if spec not in _registry() else spec, dev)
    _MODELS[key] = model
    _MODEL_LOADS.append(key)
    return model, True


def _registry():
    from napari_sam.models.registry import REGISTRY

    return REGISTRY


class _DropDemoWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "bundled demo model" not in record.getMessage()


def _load_quietly(load_model, spec, device):
    """load_model without its demo-model log line (the CLI prints its own note once)."""
    reg_logger = logging.getLogger("napari_sam.models.registry")
    filt = _DropDemoWarning()
    reg_logger.addFilter(filt)
    try:
        return load_model(spec if spec in _registry() else Path(spec), device=device,
                          progress=False)
    finally:
        reg_logger.removeFilter(filt)


def model_cache_info() -> dict:
    """``{"cached": [(model, device), ...], "loads": [...], "pid": pid}`` of this process."""
    return {"cached": list(_MODELS), "loads": list(_MODEL_LOADS), "pid": os.getpid()}


# ============================================================================ reading


class SliceSource:
    """A read-only ``(S, Y, X[, C])`` view of a (lazy) array that hands out slice copies.

    Indexing reads only what is asked for and returns a numpy array. For memory-mapped inputs
    the pages already read are released (``madvise(MADV_DONTNEED)``) after every 64 MiB, so
    the resident memory of a pass over a 100 GB stack stays about one slice.
    """

    def __init__(self, data, expand: bool = False, path: os.PathLike | str | None = None):
        self.data = data
        self.path = None if path is None else Path(path)  # named in decoding errors
        self.expand = bool(expand)  # a 2D image seen as a stack of one slice
        shape = tuple(int(s) for s in data.shape)
        self.shape = (1, *shape) if self.expand else shape
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)
        self._mmap = getattr(data, "_mmap", None) if isinstance(data, np.memmap) else None
        self._since = 0

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return int(math.prod(self.shape)) * self.dtype.itemsize

    def _release(self, nbytes: int) -> None:
        if self._mmap is None:
            return
        self._since += nbytes
        if self._since >= _MADVISE_EVERY:
            self.release()

    def release(self) -> None:
        """Drop the resident pages of a memory-mapped input (a no-op otherwise)."""
        self._since = 0
        if self._mmap is not None and hasattr(self._mmap, "madvise"):
            import mmap

            with contextlib.suppress(OSError, ValueError):
                self._mmap.madvise(mmap.MADV_DONTNEED)

    def __getitem__(self, key):
        try:
            with nio.quiet_tifffile():
                arr = self._read(key)
        except (IndexError, KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a damaged strip or chunk: name the file and the slice
            if self.path is None:
                raise
            where = f"slice {key}" if isinstance(key, (int, np.integer)) else f"region {key!r}"
            raise nio.ImageReadError(
                self.path,
                f"{where} could not be decoded ({_exc_name(exc)}: "
                f"{' '.join(str(exc).split())})",
                "The file is damaged (a corrupted compressed strip or chunk); copy or export "
                "it again, or open it in Fiji to see which slices are lost.",
            ) from exc
        self._release(arr.nbytes)
        return arr

    def _read(self, key) -> np.ndarray:
        if self.expand:
            if isinstance(key, tuple):
                first, rest = key[0], key[1:]
            else:
                first, rest = key, ()
            if isinstance(first, (int, np.integer)):
                if int(first) not in (0, -1):
                    raise IndexError(f"index {first} out of range for a stack of 1 slice")
                arr = np.array(self.data[rest] if rest else self.data[...])
            else:
                arr = np.array(self.data[rest] if rest else self.data[...])[None][first]
        else:
            arr = np.array(self.data[key])
        return arr

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


def _exc_name(exc: BaseException) -> str:
    """``zlib.error`` rather than a bare ``error``."""
    name = type(exc).__name__
    mod = type(exc).__module__
    return f"{mod}.{name}" if name.islower() and mod not in ("builtins", "__main__") else name


@dataclass
class OpenedImage:
    stack: SliceSource  # (S, Y, X[, C])
    is2d: bool
    label_axes: str  # "YX", "ZYX" or "TYX"
    pixel_size: tuple | None
    unit: str | None
    source_axes: str

    @property
    def label_shape(self) -> tuple[int, ...]:
        s = self.stack.shape[:3]
        return s[1:] if self.is2d else s


def open_image(path: Path, ctx: Context) -> OpenedImage:
    """Read ``path`` lazily and put it in the standard layout (see :func:`napari_sam.io.to_standard`)."""
    img = nio.read_image(path, axes=ctx.axes, lazy=True)
    std = img.to_standard(channel=ctx.channel)
    axes = std.axes
    is2d = axes in ("YX", "YXC")
    stack = SliceSource(std.data, expand=is2d, path=path)
    label_axes = axes.replace("C", "")
    return OpenedImage(stack, is2d, label_axes, std.pixel_size, std.unit or "um", img.axes)


# ============================================================================ locks and state


class OutputLock:
    """Exclusive lock on an output, held while its job runs (POSIX ``flock``).

    The kernel releases it when the process dies (even on SIGKILL). Lock files live in the
    output folder's ``.napari-sam-work/locks/`` and are removed when the job ends (the
    folders too, when empty), so a finished run leaves no trace. Removing a lock file is
    safe: a process that locked the old file checks that the path still names it, and
    retries otherwise. Where ``fcntl`` is missing (Windows) locking is skipped.

    Parameters
    ----------
    output : path
    wait : bool
        Block until the lock is free (default: fail at once when another process holds it).
    """

    def __init__(self, output: Path, *, wait: bool = False):
        self.path = output.parent / WORK_DIR / "locks" / f"{output.name}.lock"
        self.wait = bool(wait)
        self._fh = None

    def holder(self) -> int | None:
        """The process id written by the lock's holder, if any."""
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self) -> bool:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        while True:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fh = open(self.path, "a+")
            except FileNotFoundError:  # another process removed the empty folder just now
                continue
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if self.wait else fcntl.LOCK_NB))
            except OSError:
                fh.close()
                return False
            except BaseException:  # Ctrl-C while waiting
                fh.close()
                raise
            try:  # the holder before us may have removed the file: lock the current one
                same = os.path.samestat(os.fstat(fh.fileno()), os.stat(self.path))
            except OSError:
                same = False
            if same:
                break
            fh.close()
        self._fh = fh
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        return True

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while we hold it: a waiter re-checks the path
            self._fh.close()  # closing releases the flock
            self._fh = None
            for d in (self.path.parent, self.path.parent.parent):  # locks/, .napari-sam-work/
                with contextlib.suppress(OSError):
                    d.rmdir()  # only when empty


def output_state(output: Path, input_path: Path | None, signature: Mapping) -> str:
    """Classify an existing output before a job runs.

    Returns
    -------
    ``"missing"``
        Nothing there.
    ``"complete"``
        Complete and up to date (input unchanged, same command, model and parameters): skip.
    ``"changed"``
        Written by napari-sam but the input or the parameters changed since: recompute.
    ``"partial"``
        Its job never finished (killed, crashed, interrupted): recompute, reusing saved work.
    ``"foreign"``
        A file without a napari-sam sidecar: not ours, replaced only with ``--overwrite``.
    ``"other-command"``
        Written by another napari-sam command: replaced only with ``--overwrite``.
    """
    sc = nio.read_sidecar(output)
    exists = output.exists()
    if sc is None or sc.get("format") != nio.SIDECAR_FORMAT:
        return "foreign" if exists else "missing"
    params = sc.get("parameters") or {}
    if params.get("command") not in (None, signature.get("command")):
        return "other-command" if exists else "missing"
    if sc.get("status") != "complete" or not exists:
        return "partial"
    if not nio.is_complete(output, input_path):
        return "changed"
    if params != dict(signature):
        return "changed"
    return "complete"


def _mark_partial(job: Job, ctx: Context) -> None:
    nio.write_json_atomic(
        nio.sidecar_path(job.output),
        {
            "format": nio.SIDECAR_FORMAT,
            "format_version": nio.SIDECAR_VERSION,
            "status": "partial",
            "parameters": ctx.signature(),
            "input": str(job.input),
            "pid": os.getpid(),
        },
    )


def _cleanup_tmp(output: Path) -> None:
    """Remove temporaries of ``output`` left by a killed writer (we hold its lock)."""
    prefix = f".{output.name}."
    with contextlib.suppress(OSError):
        for p in output.parent.iterdir():
            if p.name.startswith(prefix) and p.name.endswith(".tmp"):
                nio.remove_path(p)


def _work_dir(job: Job) -> Path:
    return job.output.parent / WORK_DIR / job.output.name


# ============================================================================ writing


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def write_labels_stream(
    path: os.PathLike | str,
    slices: Iterable[np.ndarray],
    *,
    shape: Sequence[int],
    max_id: int,
    axes: str,
    pixel_size: Sequence[float] | None = None,
    unit: str = "um",
    metadata: Mapping | None = None,
    compression: str | None = "zlib",
) -> Path:
    """Write a label volume slice by slice to a TIFF, atomically, with ``write_labels``' metadata.

    ``slices`` yields ``shape[0]`` arrays of ``shape[1:]``; only one is held at a time. The
    file layout and metadata are those of :func:`napari_sam.io.write_labels` (ImageJ
    hyperstack for uint16, OME-TIFF for uint32 or ``.ome.tif``), so :func:`napari_sam.io.read_image`
    reads back the axes, pixel size and ``metadata``. The data go to a hidden temporary file
    that is renamed into place only when complete.
    """
    import tifffile

    path = Path(path)
    shape = tuple(int(s) for s in shape)
    ax = nio.validate_axes(axes, shape)
    dtype = np.dtype(np.uint16 if max_id <= np.iinfo(np.uint16).max else np.uint32)
    present = [a for a in nio.SPATIAL if a in ax]
    sizes = dict(zip(present, map(float, pixel_size))) if pixel_size is not None else {}
    user = dict(metadata) if metadata else None
    ome = dtype == np.uint32 or path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    nbytes = int(math.prod(shape)) * dtype.itemsize
    kwargs: dict[str, Any] = {"compression": compression, "bigtiff": nbytes > nio.BIGTIFF_LIMIT}
    if ome:
        md: dict[str, Any] = {"axes": ax}
        for letter, v in sizes.items():
            md[f"PhysicalSize{letter}"] = v
            md[f"PhysicalSize{letter}Unit"] = "µm" if unit in ("um", "µm", "micron") else unit
        if user is not None:
            md["Description"] = json.dumps({"napari_sam": user}, default=nio.json_default)
        kwargs.update(ome=True, metadata=md)
    else:
        md = {"axes": ax}
        if sizes:
            md["unit"] = "micron" if unit in ("um", "µm", "micron") else unit
            if "Z" in sizes:
                md["spacing"] = sizes["Z"]
            kwargs["resolution"] = (1.0 / sizes.get("X", 1.0), 1.0 / sizes.get("Y", 1.0))
        if user is not None:
            md["Info"] = json.dumps({"napari_sam": user}, default=nio.json_default)
        kwargs.update(imagej=True, metadata=md)

    def pages():
        n = 0
        for s in slices:
            s = np.asarray(s)
            if s.shape != shape[-2:]:
                raise ValueError(f"slice {n} has shape {s.shape}, expected {shape[-2:]}")
            n += 1
            yield s.astype(dtype, copy=False)
        if n != (shape[0] if len(shape) == 3 else 1):
            raise ValueError(f"got {n} slices, expected {shape[0]}")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        tifffile.imwrite(tmp, pages(), shape=shape, dtype=dtype, photometric="minisblack",
                         **kwargs)
        nio.fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        nio.remove_path(tmp)
        raise
    return path


# ---------------------------------------------------------------------------- preview


def _colour(ids: np.ndarray) -> np.ndarray:
    """A bright, well-separated RGB colour per id (golden-ratio hues)."""
    h = (ids.astype(np.float64) * 0.6180339887498949) % 1.0
    s = np.where(ids % 3 == 0, 0.75, 0.95)
    v = np.ones_like(h)
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def _outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean inner boundary of every object (4-connectivity)."""
    lab = labels
    edge = np.zeros(lab.shape, bool)
    edge[:-1] |= lab[:-1] != lab[1:]
    edge[1:] |= lab[1:] != lab[:-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    return edge & (lab > 0)


def _panel(image: np.ndarray, labels: np.ndarray, max_side: int, min_side: int = 0) -> np.ndarray:
    from PIL import Image

    from napari_sam.preprocess import to_uint8_rgb

    rgb = to_uint8_rgb(image)
    h, w = labels.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST))
    elif max(h, w) < min_side:
        k = min(-(-min_side // max(h, w)), max(1, max_side // max(h, w)))
        rgb = np.repeat(np.repeat(rgb, k, 0), k, 1)
        labels = np.repeat(np.repeat(labels, k, 0), k, 1)
    out = rgb.copy()
    edge = _outlines(labels)
    if edge.any():
        out[edge] = _colour(labels[edge])
    return out


def write_preview(
    path: os.PathLike | str,
    mid_image: np.ndarray,
    mid_labels: np.ndarray,
    max_image: np.ndarray | None = None,
    max_labels: np.ndarray | None = None,
    *,
    title: str = "",
    max_side: int = 768,
    min_side: int = 256,
) -> Path:
    """Write a PNG: the middle slice and (for stacks) a max projection, label outlines in colour.

    ``mid_image`` (Y, X) or (Y, X, 3|4) with ``mid_labels`` (Y, X); ``max_image`` /
    ``max_labels`` the max projections (omit for 2D images). Each panel is scaled down to at
    most ``max_side`` pixels, or up by a whole factor (each pixel a block) to at least
    ``min_side``, so small images stay readable. The title, if any, gets a line of its own
    above the captions. Written to a temporary name and renamed.
    """
    from PIL import Image, ImageDraw

    panels = [_panel(np.asarray(mid_image), np.asarray(mid_labels), max_side, min_side)]
    captions = ["middle slice" if max_image is not None else "image"]
    if max_image is not None and max_labels is not None:
        panels.append(_panel(np.asarray(max_image), np.asarray(max_labels), max_side, min_side))
        captions.append("max projection")
    gap, line = 6, 14
    top = 18 + (line if title else 0)
    height = max(p.shape[0] for p in panels) + top
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = np.full((height, width, 3), 24, np.uint8)
    x = 0
    offsets = []
    for p in panels:
        canvas[top : top + p.shape[0], x : x + p.shape[1]] = p
        offsets.append(x)
        x += p.shape[1] + gap
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    for x0, cap in zip(offsets, captions):
        draw.text((x0 + 3, top - 15), cap, fill=(230, 230, 230))
    if title:
        draw.text((3, 3), title, fill=(170, 170, 170))
    nio.save_picture(img, Path(path))
    return path


def preview_path(output: Path) -> Path:
    return output.with_name(stem_of(output) + ".png")


def _preview_from_arrays(job: Job, opened: OpenedImage, labels_slice: Callable[[int], np.ndarray],
                         n_objects: int) -> None:
    """Preview of a finished output, reading one slice at a time (bounded memory)."""
    stack = opened.stack
    title = f"{job.input.name}: {n_objects} objects"
    if opened.is2d:
        write_preview(preview_path(job.output), stack[0], labels_slice(0), title=title)
        return
    n = len(stack)
    mid = n // 2
    max_img = None
    max_lab = None
    for z in range(n):
        img = stack[z]
        lab = labels_slice(z)
        max_img = img if max_img is None else np.maximum(max_img, img)
        max_lab = lab.copy() if max_lab is None else np.maximum(max_lab, lab)
    write_preview(preview_path(job.output), stack[mid], labels_slice(mid), max_img, max_lab,
                  title=title)


def _write_preview_for(job: Job, ctx: Context, opened: OpenedImage | None = None) -> None:
    """(Re)make the preview of a complete label output from the files on disk."""
    if opened is None:
        opened = open_image(job.input, ctx)
    out = nio.read_image(job.output, lazy=True)
    data = out.data
    sc = nio.read_sidecar(job.output) or {}
    n = len(sc.get("objects") or [])
    if opened.is2d:
        _preview_from_arrays(job, opened, lambda z: np.asarray(data[...]), n)
    else:
        src = SliceSource(data)
        _preview_from_arrays(job, opened, lambda z: src[z], n)
        src.release()


# ============================================================================ commands


class _Bar:
    """Per-slice progress bar with ETA (tqdm, stderr), started now; nothing when quiet.

    Called as ``bar(done, total)`` by the embedding / propagation / segmentation loops.
    """

    def __init__(self, ctx: Context, desc: str, total: int | None = None, unit: str = "slice"):
        self.bar = None
        if not ctx.quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, leave=False, position=1,
                            dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cache_size(model) -> int:
    """Embeddings kept in memory: at most ~256 MB of them, at least 4."""
    e = int(model.embedding_size)
    per = 256 * e * e * 4
    return int(max(4, min(64, (256 << 20) // per)))


def _label_metadata(job: Job, ctx: Context, model) -> dict:
    from napari_sam import __version__

    return {
        "command": ctx.command,
        "model": ctx.model,
        "model_id": getattr(model, "model_id", None),
        "version": __version__,
        "input": job.input.name,
        "parameters": ctx.params,
    }


def _model_record(ctx: Context, model) -> dict:
    model_id = str(getattr(model, "model_id", ""))
    return {"name": ctx.model, "id": model_id or None, "is_demo": model_id.startswith("demo:")}


def _user_embeddings(job: Job, ctx: Context, model) -> Path | None:
    """The ``--embeddings DIR`` store of this input, when it can be reused as is.

    Only a complete store (per its sidecar) made from this very input file with this very model
    is used; anything else would be rewritten by the embedding cache, so it is left alone.
    """
    if ctx.embeddings_dir is None:
        return None
    store = Path(ctx.embeddings_dir) / f"{stem_of(job.input)}.zarr"
    sc = nio.read_sidecar(store) or {}
    same_model = (sc.get("model") or {}).get("id") == getattr(model, "model_id", None)
    if same_model and nio.is_complete(store, job.input):
        return store
    logger.warning("not reusing %s (missing, incomplete, or made from another input or model)",
                   store)
    return None


def _embed_store(job: Job, ctx: Context, model) -> Path:
    """Embedding store of a labels job: a reusable ``--embeddings`` store, else its work folder
    (created here)."""
    store = _user_embeddings(job, ctx, model)
    if store is None:
        store = _work_dir(job) / "embeddings.zarr"
        store.parent.mkdir(parents=True, exist_ok=True)
    return store


def _run_embed(job: Job, ctx: Context, model) -> dict:
    from napari_sam.embeddings import StackEmbeddings

    opened = open_image(job.input, ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")
    emb = StackEmbeddings(opened.stack, model, store=partial, batch_size=ctx.batch_size,
                          device=ctx.device, cache_size=2)
    bar = _Bar(ctx, f"{job.name}: embed", len(emb))
    try:
        emb.compute(progress=bar)
    finally:
        bar.close()
        opened.stack.release()
    n = len(emb)
    group_attrs = {"contrast_limits": list(emb.contrast_limits), "axes": opened.label_axes,
                   "shape": list(opened.stack.shape)}
    import zarr

    zarr.open_group(str(partial), mode="a").attrs.update({"napari_sam": group_attrs})
    if job.output.exists():
        nio.remove_path(job.output)
    os.replace(partial, job.output)
    from napari_sam import __version__

    nio.write_sidecar(
        job.output, model=_model_record(ctx, model), version=__version__,
        parameters=ctx.signature(), objects=[], input_path=job.input,
        extra={"slices": n, "embedding_size": int(model.embedding_size),
               "contrast_limits": list(emb.contrast_limits), "image_shape": list(opened.stack.shape),
               "encoder_calls": emb.encoder_calls},
    )
    return {"objects": n}


def _finish_labels(job: Job, ctx: Context, model, opened: OpenedImage, labels: np.ndarray,
                   scores: Mapping[int, float] | None, extra: Mapping | None = None) -> dict:
    """Write a labels output held in memory, its sidecar and preview."""
    from napari_sam import __version__

    labels = labels[0] if opened.is2d and labels.ndim == 3 else labels
    nio.write_labels(job.output, labels, axes=opened.label_axes, pixel_size=opened.pixel_size,
                     unit=opened.unit or "um", metadata=_label_metadata(job, ctx, model),
                     overwrite=True)
    objects = nio.label_objects_summary(labels, scores)
    nio.write_sidecar(job.output, model=_model_record(ctx, model), version=__version__,
                      parameters=ctx.signature(), objects=objects, input_path=job.input,
                      extra=dict(extra or {}))
    if ctx.preview:
        if opened.is2d:
            _preview_from_arrays(job, opened, lambda z: labels, len(objects))
        else:
            _preview_from_arrays(job, opened, lambda z: labels[z], len(objects))
    return {"objects": len(objects)}


def _stack_embeddings(job: Job, ctx: Context, model, opened: OpenedImage):
    """The stack's embeddings in the job's store (:func:`_embed_store`), every slice computed
    (with a progress bar) or read back from the store."""
    from napari_sam.embeddings import embed

    store = _embed_store(job, ctx, model)
    emb = embed(opened.stack, model, store=store, batch_size=ctx.batch_size, device=ctx.device,
                cache_size=_cache_size(model))
    bar = _Bar(ctx, f"{job.name}: embed", len(emb))
    try:
        emb.compute(progress=bar)
    finally:
        bar.close()
    return emb


def _run_segment(job: Job, ctx: Context, model) -> dict:
    from napari_sam.volume import segment_volume

    if not job.prompts:
        raise ValueError(
            "no prompts for this file in the prompts file (add rows with its name in the 'file' "
            "column, or rows without a file that apply to every input)"
        )
    if getattr(job.prompts, "session", None) is not None:
        return _replay_session(job, ctx, model, job.prompts.session)
    opened = open_image(job.input, ctx)
    params = {k: v for k, v in ctx.params.items() if k in _SEGMENT_KEYS and v is not None}
    params.update({k: None for k, v in params.items() if v == "off"})  # a rule disabled
    if "axis_kind" not in params:  # a time series propagates along t
        params["axis_kind"] = "t" if opened.label_axes.startswith("T") else "z"
    emb = _stack_embeddings(job, ctx, model, opened)
    bar = _Bar(ctx, f"{job.name}: propagate", 2 * len(emb))
    try:
        res = segment_volume(emb, job.prompts, progress=bar, **params)
    finally:
        bar.close()
    scores = {oid: float(np.mean(list(s.values()))) for oid, s in res.scores.items() if s}
    extra = {"stop_reasons": {str(k): v for k, v in res.stop_reasons.items()},
             "decoder_calls": int(res.decoder_calls)}
    from napari_sam.trace import propagation_trace  # the numbers `napari-sam report` plots

    annotated = {oid: [e["slice"] for e in items if not e.get("stop")]
                 for oid, items in job.prompts.items()}
    extra["trace"] = propagation_trace(res.labels, opened.stack, res.scores, res.stop_reasons,
                                       annotated)
    info = _finish_labels(job, ctx, model, opened, np.asarray(res.labels), scores, extra)
    opened.stack.release()
    return info


def _replay_session(job: Job, ctx: Context, model, sess) -> dict:
    """``segment --prompts session.json``: replay the session's operations (the GUI's
    commits, in order) on this input; the sidecar says per object what changed from the
    session's labels, and holds the propagation trace."""
    from napari_sam import session as S

    opened = open_image(job.input, ctx)
    emb = _stack_embeddings(job, ctx, model, opened)
    bar = _Bar(ctx, f"{job.name}: replay", len(sess.operations), unit="commit")
    try:
        res = S.replay(sess, emb, progress=bar)
    finally:
        bar.close()
    extra: dict[str, Any] = {"session": str(sess.path), "trace": res.trace,
                             "replay_notes": res.notes}
    same_image = S.image_hash(opened.stack) == sess.image.get("hash")
    same_model = getattr(model, "model_id", None) == sess.model.get("id")
    extra["replay"] = {"same_image": same_image, "same_model": same_model}
    if sess.labels is not None:
        changes = S.compare(sess.labels, res.labels)
        extra["replay"]["objects"] = changes
        lines = S.describe_changes(changes)
        extra["replay"]["identical"] = not lines
        if not ctx.quiet:
            import sys

            from tqdm.auto import tqdm

            for line in lines or ["every object as in the session"]:
                tqdm.write(f"  {job.name}: {line}", file=sys.stderr)
    info = _finish_labels(job, ctx, model, opened, res.labels, None, extra)
    opened.stack.release()
    return info


_SEGMENT_KEYS = ("mode", "axis_kind", "iou_threshold", "area_factor", "min_area", "min_score",
                 "fade_fraction", "rebound_fraction", "claimed_fraction", "max_slices",
                 "motion")


# ---------------------------------------------------------------------------- auto

#: Parameters of :func:`napari_sam.segment_everything` the CLI passes through per slice.
AUTO_KEYS = (
    "points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
    "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
    "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area",
    "min_visible_fraction", "fill_gaps",
)
#: Linking of per-slice objects into 3D objects, with segment_everything's defaults.
LINK_DEFAULTS = {"link_iou": 0.25, "max_gap": 1, "min_z_extent": 1}
#: Stacks: propagate each linked object through the stack (segment_everything's default).
PROPAGATE_DEFAULT = True


def _auto_work(job: Job) -> Path:
    return _work_dir(job) / "auto"


def prepare_auto_work(job: Job, ctx: Context) -> Path:
    """Create (or keep) the per-slice work folder of an ``auto`` job; idempotent.

    The folder is reused only when it was made for the same input (size, mtime), command,
    model and parameters of the per-slice segmentation (linking and propagation parameters
    may differ: a run that ran out of memory while propagating can be rerun with
    ``--no-propagate`` without segmenting the slices again); otherwise it is emptied first.
    """
    work = _auto_work(job)
    st = job.input.stat()
    sig = ctx.signature()  # the slices do not depend on how they are linked and propagated
    sig = {k: v for k, v in sig.items() if k not in LINK_DEFAULTS and k != "propagate"}
    key = {"signature": sig, "input": [str(job.input.resolve()), st.st_size, st.st_mtime_ns,
                                       nio.content_sample_hash(job.input)]}
    marker = work / "params.json"
    try:
        same = json.loads(marker.read_text()) == json.loads(json.dumps(key))
    except (OSError, ValueError):
        same = False
    if not same:
        nio.remove_path(work)
        work.mkdir(parents=True, exist_ok=True)
        nio.write_json_atomic(marker, key)
    return work


def _slice_file(work: Path, z: int) -> Path:
    return work / f"z{z:06d}.npz"


def _save_slice(work: Path, z: int, labels: np.ndarray, scores: np.ndarray) -> None:
    path = _slice_file(work, z)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, labels=labels, scores=scores)
        os.replace(tmp, path)
    except BaseException:
        nio.remove_path(tmp)
        raise


def _load_slice(work: Path, z: int) -> tuple[np.ndarray, np.ndarray]:
    with np.load(_slice_file(work, z), allow_pickle=False) as d:
        return d["labels"], d["scores"]


def _auto_result(res) -> tuple[np.ndarray, np.ndarray]:
    """(labels (Y, X) with ids 1..n, predicted IoU per id (n + 1,)) of a 2D result."""
    labels = np.asarray(res.labels)
    n = int(labels.max()) if labels.size else 0
    scores = np.full(n + 1, np.nan, np.float32)
    for rec in res.records:
        if 0 < int(rec.id) <= n:
            scores[int(rec.id)] = float(rec.predicted_iou)
    dtype = np.uint16 if n <= np.iinfo(np.uint16).max else np.uint32
    return labels.astype(dtype, copy=False), scores


def _segment_slice(emb, z: int, image: np.ndarray, model, ctx: Context):
    """segment_everything on slice z exactly as its stack path does (same embedding, same
    volume-wide contrast, constant slices empty)."""
    from napari_sam import automatic

    params = {k: ctx.params[k] for k in AUTO_KEYS if ctx.params.get(k) is not None}
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if automatic.is_constant(image):
        return automatic.empty_result(image.shape[:2], None)
    foreground = ctx.params.get("foreground")
    fg = automatic.auto_foreground(image) if foreground == "auto" else None
    if params.get("crop_n_layers", 0) > 0:  # crops are re-embedded from the image
        return automatic.segment_everything(image, model, contrast_limits=emb.contrast_limits,
                                            foreground=fg, device=ctx.device, keep_masks=False,
                                            **params)
    return automatic.segment_everything(emb[z], model, foreground=fg, device=ctx.device,
                                        image=image, contrast_limits=emb.contrast_limits,
                                        keep_masks=False, **params)


def auto_slices(job: Job, ctx: Context, model, indices: Iterable[int] | None = None,
                progress: Callable[[int, int], None] | None = None,
                keep_embeddings: bool = False, block_store: Path | None = None,
                hashes: dict[int, int] | None = None) -> dict[int, int]:
    """Stage 1 of ``auto``: segment every slice in ``indices`` whose result is not saved yet.

    Each slice's labels (ids 1..n) and predicted IoUs go to ``<work>/z000123.npz`` (written
    atomically), so an interrupted job, or several dask tasks each given a block of slices,
    only compute missing slices. Returns ``{slice: n_objects}`` of the slices computed now.
    ``keep_embeddings``: a stack's embeddings go to the job's embedding store (the
    ``--embeddings`` store, else its work folder), for propagation to reuse; otherwise they
    live in memory only (unless an ``--embeddings`` store can be reused). ``block_store``
    (the blocks of a cluster run, see :func:`_auto_prepare_task`): each computed slice's
    features go to that store's feature chunk and its pixel hash to ``hashes``, for the
    final task, the only writer of the store's hash array.
    """
    from napari_sam.embeddings import StackEmbeddings, slice_hash

    work = _auto_work(job)
    opened = open_image(job.input, ctx)
    n = len(opened.stack)
    wanted = range(n) if indices is None else [int(i) for i in indices]
    todo = [z for z in wanted if not _slice_file(work, z).exists()]
    done_now: dict[int, int] = {}
    if not todo:
        return done_now
    if keep_embeddings and not opened.is2d:
        store = _embed_store(job, ctx, model)
    else:
        store = _user_embeddings(job, ctx, model)  # otherwise embeddings live in memory only
    emb = StackEmbeddings(opened.stack, model, store=store, batch_size=ctx.batch_size,
                          device=ctx.device, cache_size=max(2, ctx.batch_size))
    group = None
    if block_store is not None:
        import zarr

        group = zarr.open_group(str(block_store), mode="r+")
    total = len(todo)
    if progress is not None:
        progress(0, total)
    try:
        import torch

        with torch.inference_mode():
            for k, z in enumerate(todo):
                labels, scores = _auto_result(_segment_slice(emb, z, opened.stack[z], model, ctx))
                if group is not None:  # before the slice counts as done
                    group["features"][z] = emb[z].features.cpu().numpy().astype(np.float16)
                    hashes[z] = slice_hash(emb.slice_image(z))
                _save_slice(work, z, labels, scores)
                done_now[z] = int(labels.max()) if labels.size else 0
                if progress is not None:
                    progress(k + 1, total)
    finally:
        opened.stack.release()
    return done_now


@dataclass
class LinkPlan:
    """Result of :func:`link_slices`: how to turn each slice's 2D ids into 3D ids.

    ``luts[z]`` maps slice z's 2D ids to 3D ids (0: dropped); ``gap_links`` lists
    ``(z0, i, z1, j, id)``: the slices strictly between z0 and z1 get the intersection of
    mask i of z0 and mask j of z1 (background pixels only); ``scores[id]`` is the mean
    predicted IoU of the object's 2D masks; ``n_objects`` the number of 3D ids.
    """

    luts: list[np.ndarray]
    gap_links: list[tuple[int, int, int, int, int]]
    scores: dict[int, float]
    n_objects: int


def link_slices(
    load: Callable[[int], tuple[np.ndarray, np.ndarray]], n_slices: int, *,
    link_iou: float = 0.25, max_gap: int = 1, min_z_extent: int = 1, fill_gaps: bool = True,
) -> LinkPlan:
    """Link per-slice objects into 3D objects with at most ``max_gap + 2`` slices in memory.

    ``load(z)`` returns slice z's labels (ids 1..n) and predicted IoUs (n + 1,). The rule is
    :func:`napari_sam.automatic.link_slices` (what ``segment_everything`` does on a stack),
    computed in one streaming pass in an order that gives the same result: on each slice z1,
    first the one-to-one matches with slice z1 - 1 (IoU >= ``link_iou``, greedy by decreasing
    IoU), then gap closing from slices z1 - g - 1 for g = 1..``max_gap`` between objects whose
    tracks end and start there; objects spanning fewer than ``min_z_extent`` slices are
    dropped, ids are 1..N in order of first appearance.
    """
    from napari_sam.automatic import match_by_iou

    offsets = [0]
    n_per: list[int] = []
    areas: list[np.ndarray] = []
    has_next: list[np.ndarray] = []
    has_prev: list[np.ndarray] = []
    node_score: list[float] = [float("nan")]
    parent: list[int] = [0]
    window: dict[int, np.ndarray] = {}
    gap_raw: list[tuple[int, int, int, int]] = []

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for z1 in range(n_slices):
        lab, scores = load(z1)
        n1 = int(lab.max()) if lab.size else 0
        n_per.append(n1)
        areas.append(np.bincount(lab.ravel(), minlength=n1 + 1))
        has_next.append(np.zeros(n1 + 1, bool))
        has_prev.append(np.zeros(n1 + 1, bool))
        offsets.append(offsets[-1] + n1)
        parent.extend(range(offsets[z1] + 1, offsets[z1] + n1 + 1))
        node_score.extend(float(scores[i]) if i < len(scores) else float("nan")
                          for i in range(1, n1 + 1))
        window[z1] = lab
        if z1 >= 1:
            z0 = z1 - 1
            pairs = match_by_iou(window[z0], lab, n1, areas[z0], areas[z1], link_iou)
            for i, j in pairs:
                parent[find(offsets[z1] + j)] = find(offsets[z0] + i)
                has_next[z0][i] = True
                has_prev[z1][j] = True
        for g in range(1, max_gap + 1):
            z0 = z1 - g - 1
            if z0 < 0:
                break
            ends = ~has_next[z0]
            starts = ~has_prev[z1]
            ends[0] = starts[0] = False
            pairs = match_by_iou(window[z0], lab, n1, areas[z0], areas[z1], link_iou,
                                 ends, starts)
            for i, j in pairs:
                parent[find(offsets[z1] + j)] = find(offsets[z0] + i)
                has_next[z0][i] = True
                has_prev[z1][j] = True
                gap_raw.append((z0, i, z1, j))
        window.pop(z1 - max_gap - 1, None)

    total = offsets[-1]
    roots = np.array([find(a) for a in range(total + 1)], np.int64)
    zmin = np.full(total + 1, n_slices)
    zmax = np.full(total + 1, -1)
    for z in range(n_slices):
        ids = np.arange(offsets[z] + 1, offsets[z + 1] + 1)
        r = roots[ids[areas[z][1:] > 0]]
        np.minimum.at(zmin, r, z)
        np.maximum.at(zmax, r, z)
    extent = zmax - zmin + 1
    new_id = np.zeros(total + 1, np.int64)
    root_id: dict[int, int] = {}
    for a in range(1, total + 1):  # order of first appearance
        r = int(roots[a])
        if r not in root_id and extent[r] >= min_z_extent and zmax[r] >= 0:
            root_id[r] = len(root_id) + 1
        new_id[a] = root_id.get(r, 0)
    luts = [np.concatenate([[0], new_id[offsets[z] + 1 : offsets[z + 1] + 1]])
            for z in range(n_slices)]
    sums: dict[int, list[float]] = {}
    for a in range(1, total + 1):
        if new_id[a] and math.isfinite(node_score[a]):
            sums.setdefault(int(new_id[a]), []).append(node_score[a])
    scores = {k: float(np.mean(v)) for k, v in sums.items()}
    gap_links = []
    if fill_gaps:
        for z0, i, z1, j in gap_raw:
            oid = int(luts[z0][i])
            if oid:
                gap_links.append((z0, i, z1, j, oid))
    return LinkPlan(luts, gap_links, scores, len(root_id))


def _final_slices(plan: LinkPlan, load: Callable[[int], np.ndarray], n: int):
    """Yield the 3D-labelled slices of ``plan``, loading at most a few 2D slices at a time."""
    cache: dict[int, np.ndarray] = {}

    def get(z: int) -> np.ndarray:
        if z not in cache:
            if len(cache) > 8:
                cache.pop(next(iter(cache)))
            cache[z] = load(z)
        return cache[z]

    for z in range(n):
        out = plan.luts[z][get(z)]
        for z0, i, z1, j, oid in plan.gap_links:
            if z0 < z < z1:
                inter = (get(z0) == i) & (get(z1) == j)
                out[inter & (out == 0)] = oid
        yield out


#: Peak memory of propagation in ``auto`` per voxel of the stack (linked and propagated label
#: volumes and their relabelling): 17 bytes measured on a (48, 384, 384) stack, rounded up.
PROPAGATION_BYTES_PER_VOXEL = 20


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_propagation_memory(opened: OpenedImage) -> None:
    """Fail before any work when propagating this stack would not fit in memory."""
    shape = opened.label_shape
    need = int(np.prod(shape, dtype=np.int64)) * PROPAGATION_BYTES_PER_VOXEL
    free = _available_memory()
    if free is not None and need > free:
        raise ValueError(
            f"propagating the objects of this {' x '.join(map(str, shape))} stack needs about "
            f"{need / 1e9:.1f} GB of memory for its label volumes, more than the "
            f"{free / 1e9:.1f} GB available; use --no-propagate (linked 2D masks, constant "
            f"memory), or a machine with more memory"
        )


def _run_auto(job: Job, ctx: Context, model) -> dict:
    from napari_sam import __version__

    propagate = bool(ctx.params.get("propagate", PROPAGATE_DEFAULT))
    if propagate:
        opened = open_image(job.input, ctx)
        if not opened.is2d:
            _check_propagation_memory(opened)
        opened.stack.release()
    work = prepare_auto_work(job, ctx)
    resumed = len(list(work.glob("z*.npz")))
    bar = _Bar(ctx, f"{job.name}: segment everything")
    try:
        auto_slices(job, ctx, model, progress=bar, keep_embeddings=propagate)
    finally:
        bar.close()
    opened = open_image(job.input, ctx)
    n = len(opened.stack)
    link = {k: ctx.params.get(k, v) for k, v in LINK_DEFAULTS.items()}
    if opened.is2d:
        link["min_z_extent"] = 1
    elif propagate:
        return _auto_propagate(job, ctx, model, work, opened, link, resumed)
    plan = link_slices(lambda z: _load_slice(work, z), n, **link)
    max_id = plan.n_objects
    areas = np.zeros(max_id + 1, np.int64)
    zmin = np.full(max_id + 1, n)
    zmax = np.full(max_id + 1, -1)

    def slices():
        for z, out in enumerate(_final_slices(plan, lambda z: _load_slice(work, z)[0], n)):
            counts = np.bincount(out.ravel(), minlength=max_id + 1)
            areas[:] += counts[: max_id + 1]
            present = np.flatnonzero(counts[: max_id + 1])
            zmin[present] = np.minimum(zmin[present], z)
            zmax[present] = np.maximum(zmax[present], z)
            yield out

    meta = _label_metadata(job, ctx, model)
    if nio.write_kind(job.output) in ("tiff", "ome-tiff"):
        write_labels_stream(job.output, slices(), shape=opened.label_shape, max_id=max_id,
                            axes=opened.label_axes, pixel_size=opened.pixel_size,
                            unit=opened.unit or "um", metadata=meta)
    else:  # npy / zarr outputs are assembled in memory
        vol = np.stack(list(slices()))
        nio.write_labels(job.output, vol[0] if opened.is2d else vol, axes=opened.label_axes,
                         pixel_size=opened.pixel_size, unit=opened.unit or "um", metadata=meta,
                         overwrite=True)
    records = [
        {"id": oid, "slice_range": None if opened.is2d else [int(zmin[oid]), int(zmax[oid])],
         "area": int(areas[oid]), "score": plan.scores.get(oid)}
        for oid in range(1, max_id + 1) if areas[oid] > 0
    ]
    nio.write_sidecar(job.output, model=_model_record(ctx, model), version=__version__,
                      parameters=ctx.signature(), objects=records, input_path=job.input,
                      extra={"slices": n, "resumed_slices": resumed, "link": link})
    if ctx.preview:
        _preview_from_arrays(job, opened, lambda z: _preview_slice(plan, work, z), len(records))
    opened.stack.release()
    return {"objects": len(records)}


def _auto_propagate(job: Job, ctx: Context, model, work: Path, opened: OpenedImage,
                    link: dict, resumed: int) -> dict:
    """Stages 2 and 3 of ``auto`` on a stack with propagation (what ``segment_everything``
    does): link the saved slices (every object kept), propagate each linked object from the
    slice where it is largest, then drop objects spanning fewer than ``min_z_extent`` slices.
    The labels are assembled in memory, as for ``segment``."""
    from napari_sam.automatic import finite_mean, propagate_objects

    n = len(opened.stack)
    plan = link_slices(lambda z: _load_slice(work, z), n, **{**link, "min_z_extent": 1})
    linked = np.stack(list(_final_slices(plan, lambda z: _load_slice(work, z)[0], n)))
    extra = {"slices": n, "resumed_slices": resumed, "link": link}
    if plan.n_objects == 0:
        info = _finish_labels(job, ctx, model, opened, linked, {}, extra)
        opened.stack.release()
        return info
    emb = _stack_embeddings(job, ctx, model, opened)  # stored by stage 1 (or its blocks)
    axis_kind = "t" if opened.label_axes.startswith("T") else "z"
    bar = _Bar(ctx, f"{job.name}: propagate", 2 * n)

    saved_scores: dict[int, np.ndarray] = {}

    def seed_score(z: int, oid: int) -> float:  # the saved score of its 2D mask on slice z
        ids = np.flatnonzero(plan.luts[z] == oid)
        if not ids.size:
            return float("nan")
        if z not in saved_scores:  # read only the slice's scores, not its labels
            with np.load(_slice_file(work, z), allow_pickle=False) as d:
                saved_scores[z] = d["scores"]
        return float(saved_scores[z][ids[0]])

    try:
        labels, _, per_slice, stats = propagate_objects(
            emb, linked, int(link["min_z_extent"]), axis_kind, bar, seed_score
        )
    finally:
        bar.close()
    scores = {oid: finite_mean(v.values()) for oid, v in per_slice.items()}
    top = int(labels.max())
    labels = labels.astype(np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32)
    info = _finish_labels(job, ctx, model, opened, labels, scores, {**extra, "propagation": stats})
    opened.stack.release()
    return info


def _preview_slice(plan: LinkPlan, work: Path, z: int) -> np.ndarray:
    """Final labels of slice z (what was written), recomputed from the saved slices."""
    out = plan.luts[z][_load_slice(work, z)[0]]
    for z0, i, z1, j, oid in plan.gap_links:
        if z0 < z < z1:
            inter = (_load_slice(work, z0)[0] == i) & (_load_slice(work, z1)[0] == j)
            out[inter & (out == 0)] = oid
    return out


_RUNNERS: dict[str, Callable[[Job, Context, Any], dict]] = {
    "embed": _run_embed,
    "segment": _run_segment,
    "auto": _run_auto,
}


# ============================================================================ running


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, (ValueError, FileNotFoundError, FileExistsError, nio.ImageReadError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_job(job: Job, ctx: Context, *, wait: bool = False) -> JobResult:
    """Run one job in this process (the model comes from :func:`get_model`'s cache).

    Never raises for problems with the file or the computation: they become a ``"failed"``
    result. ``KeyboardInterrupt`` propagates (the output stays resumable).

    When another process holds the output's lock the result is ``"busy"`` (nothing done), or
    with ``wait=True`` the job waits for that process and then runs (usually finding the
    output complete and skipping it).
    """
    t0 = time.perf_counter()
    res = JobResult(str(job.input), str(job.output), "failed", pid=os.getpid())
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(job.output, wait=wait)
        with lock as locked:
            if not locked:
                pid = lock.holder()
                res.status = "busy"
                res.reason = ("busy: another napari-sam process"
                              + (f" (pid {pid})" if pid else "") + " is writing it")
                return res
            state = output_state(job.output, job.input, ctx.signature())
            if state == "complete" and not ctx.overwrite:
                res.status, res.reason = "skipped", "complete"
                sc = nio.read_sidecar(job.output) or {}
                res.objects = len(sc.get("objects") or []) if ctx.command != "embed" else (
                    (sc.get("extra") or {}).get("slices"))
                if ctx.preview and ctx.command != "embed" and not preview_path(job.output).exists():
                    _write_preview_for(job, ctx)
                return res
            if state == "foreign" and not ctx.overwrite:
                res.reason = (f"{job.output} exists and was not written by napari-sam; pass "
                              "--overwrite to replace it or choose another output folder")
                return res
            if state == "other-command" and not ctx.overwrite:
                sc = nio.read_sidecar(job.output) or {}
                other = (sc.get("parameters") or {}).get("command")
                res.reason = (f"{job.output} was written by `napari-sam {other}`; pass "
                              "--overwrite, --suffix or another output folder")
                return res
            res.details["previous_state"] = state
            _cleanup_tmp(job.output)
            _mark_partial(job, ctx)
            model, loaded = get_model(ctx.model, ctx.device)
            res.model_loaded = loaded
            info = _RUNNERS[ctx.command](job, ctx, model)
            res.objects = info.get("objects")
            res.details.update({k: v for k, v in info.items() if k != "objects"})
            res.status = "done"
            if not ctx.keep_work:
                nio.remove_path(_work_dir(job))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one bad file never stops the batch
        res.status = "failed"
        res.reason = _one_line(exc)
        if ctx.verbose:
            res.details["traceback"] = traceback.format_exc()
    finally:
        res.seconds = time.perf_counter() - t0
    return res


def _task(job: Job, ctx: Context) -> JobResult:
    """What a dask worker runs for one file (quiet: no progress bars on workers)."""
    return run_job(job, replace(ctx, quiet=True))


def _client_for(scheduler: str | None, workers: int | None, threads_per_worker: int = 1):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=threads_per_worker,
                           processes=True, dashboard_address=None)
    return Client(cluster), cluster


def run_jobs(
    jobs: Sequence[Job],
    ctx: Context,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    block_slices: int | None = None,
    on_result: Callable[[JobResult], None] | None = None,
    on_wait: Callable[[Job, int | None], None] | None = None,
) -> list[JobResult]:
    """Run every job serially, or on a dask.distributed cluster; return results in input order.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:8786``); the workers need
        napari-sam-stacks installed and the input and output folders at the same paths.
    workers : int, optional
        Start a ``LocalCluster`` with this many worker processes (one thread each).
    block_slices : int, optional
        On a cluster, split stacks with more slices than this into blocks of this many slices
        that run as separate tasks (``embed`` and ``auto``); default: whole files.
    on_result : callable(JobResult), optional
        Called as each job finishes (the CLI prints a line per file).
    on_wait : callable(Job, pid or None), optional
        Serial runs: called before waiting for another process that writes a job's output
        (such jobs are left for the end of the batch, then waited for). On a cluster such
        jobs come back ``"busy"`` (not ok) instead.
    """
    if scheduler is None and workers is None:
        return _run_serial(jobs, ctx, on_result, on_wait)
    return _run_distributed(jobs, ctx, scheduler=scheduler, workers=workers,
                            block_slices=block_slices, on_result=on_result)


def _run_serial(jobs, ctx, on_result, on_wait=None) -> list[JobResult]:
    """Run the jobs one after the other. An output that another process is writing is left
    for the end; then this process waits for it (``on_wait(job, pid)`` is called first) and
    runs the job, which then usually finds the output complete."""
    from tqdm.auto import tqdm

    results: list[JobResult | None] = [None] * len(jobs)
    bar = tqdm(total=len(jobs), desc="files", unit="file", disable=ctx.quiet or len(jobs) < 2,
               position=0, dynamic_ncols=True)
    deferred = []
    try:
        for i, job in enumerate(jobs):
            bar.set_postfix_str(job.name, refresh=True)
            res = run_job(job, ctx)
            if res.status == "busy":
                deferred.append(i)
                continue
            results[i] = res
            bar.update(1)
            if on_result is not None:
                on_result(res)
        for i in deferred:
            job = jobs[i]
            bar.set_postfix_str(f"waiting for {job.name}", refresh=True)
            if on_wait is not None:
                on_wait(job, OutputLock(job.output).holder())
            res = run_job(job, ctx, wait=True)
            if res.status == "skipped" and res.reason == "complete":
                res.details["written_by_another_process"] = True
            results[i] = res
            bar.update(1)
            if on_result is not None:
                on_result(res)
    finally:
        bar.close()
    return [r for r in results if r is not None]


# ============================================================================ dask.distributed


def _embed_prepare_task(job: Job, ctx: Context) -> list[float]:
    """Create the partial embedding store of a blocked ``embed`` job; returns contrast limits."""
    from napari_sam.embeddings import StackEmbeddings

    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")
    job.output.parent.mkdir(parents=True, exist_ok=True)
    emb = StackEmbeddings(opened.stack, model, store=partial, batch_size=ctx.batch_size,
                          device=ctx.device, cache_size=2)
    opened.stack.release()
    return list(emb.contrast_limits)


def _embed_block_task(job: Job, ctx: Context, limits: Sequence[float], start: int,
                      stop: int) -> dict[int, int]:
    """Encode slices [start, stop) into the shared store's feature chunks (one chunk per
    slice, so blocks never write the same chunk); returns ``{slice: pixel hash}`` for the
    final task, the only writer of the store's hash array."""
    import zarr

    from napari_sam.embeddings import StackEmbeddings, slice_hash

    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    partial = job.output.with_name(f".{job.output.name}.partial")
    group = zarr.open_group(str(partial), mode="r+")
    stored = np.asarray(group["slice_hash"][start:stop])
    emb = StackEmbeddings(opened.stack, model, batch_size=ctx.batch_size, device=ctx.device,
                          contrast_limits=tuple(limits), cache_size=max(2, ctx.batch_size))
    hashes = {}
    for z in range(start, stop):
        h = slice_hash(emb.slice_image(z))
        if int(stored[z - start]) == h:
            continue  # done by an earlier, interrupted run
        feats = emb[z].features
        group["features"][z] = feats.detach().cpu().numpy().astype(np.float16)
        hashes[z] = h
    opened.stack.release()
    return hashes


def _auto_prepare_task(job: Job, ctx: Context) -> str | None:
    """Create the embedding store that the blocks of a propagating ``auto`` job fill (the
    store the final task propagates from); None when there is nothing to keep (no
    propagation, a 2D image, or a complete ``--embeddings`` store to reuse)."""
    from napari_sam.embeddings import StackEmbeddings

    if not ctx.params.get("propagate", PROPAGATE_DEFAULT):
        return None
    model, _ = get_model(ctx.model, ctx.device)
    opened = open_image(job.input, ctx)
    try:
        if opened.is2d or _user_embeddings(job, ctx, model) is not None:
            return None
        store = _embed_store(job, ctx, model)
        StackEmbeddings(opened.stack, model, store=store, batch_size=ctx.batch_size,
                        device=ctx.device, cache_size=2)
    finally:
        opened.stack.release()
    return str(store)


def _auto_block_task(job: Job, ctx: Context, store: str | None, start: int,
                     stop: int) -> dict:
    """Segment slices [start, stop) of an ``auto`` job into its work folder, and write their
    embeddings into ``store`` (from :func:`_auto_prepare_task`) when there is one. Returns
    ``{"store": store, "hashes": {slice: pixel hash}}`` for the final task."""
    model, _ = get_model(ctx.model, ctx.device)
    hashes: dict[int, int] = {}
    auto_slices(job, ctx, model, range(start, stop),
                block_store=None if store is None else Path(store), hashes=hashes)
    return {"store": store, "hashes": hashes}


def _record_hashes(store: os.PathLike | str, blocks: Iterable[Mapping[int, int]]) -> None:
    """Write the slice hashes the block tasks return into ``store``'s hash array (one writer:
    the final task), which marks those slices' features as present."""
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    hashes = np.asarray(group["slice_hash"][:])
    for block in blocks:
        for z, h in block.items():
            hashes[int(z)] = h
    group["slice_hash"][:] = hashes


def _final_task(job: Job, ctx: Context, blocks: list | None = None,
                after: list | None = None) -> JobResult:
    """The per-file task: runs the whole job once its blocks (if any) are done.

    ``blocks``: results of ``_embed_block_task`` (slice hashes to record); ``after``: results
    of ``_auto_block_task`` (their slices are on disk; the hashes of the embeddings they
    stored are recorded here)."""
    if ctx.command == "embed" and blocks:
        _record_hashes(job.output.with_name(f".{job.output.name}.partial"), blocks)
    stored = [b for b in after or () if isinstance(b, dict) and b.get("store")]
    if ctx.command == "auto" and stored:
        _record_hashes(stored[0]["store"], [b["hashes"] for b in stored])
    return run_job(job, ctx)


def _n_slices(job: Job, ctx: Context) -> int:
    try:
        return len(open_image(job.input, ctx).stack)
    except Exception:  # the final task reports the problem
        return 0


def _run_distributed(jobs, ctx, *, scheduler, workers, block_slices, on_result):
    from distributed import as_completed
    from tqdm.auto import tqdm

    wctx = replace(ctx, quiet=True)
    client, cluster = _client_for(scheduler, workers)
    results: dict[int, JobResult] = {}
    bar = tqdm(total=len(jobs), desc="files", unit="file", disable=ctx.quiet, position=0,
               dynamic_ncols=True)
    try:
        futures = {}
        for i, job in enumerate(jobs):
            blocks = []
            n = 0
            if block_slices and ctx.command in ("auto", "embed"):
                state = output_state(job.output, job.input, ctx.signature())
                if ctx.overwrite or state not in ("complete", "foreign", "other-command"):
                    n = _n_slices(job, ctx)
            if block_slices and n > block_slices:
                spans = [(s, min(s + block_slices, n)) for s in range(0, n, block_slices)]
                if ctx.command == "auto":
                    prepare_auto_work(job, ctx)
                    store = client.submit(_auto_prepare_task, job, wctx, pure=False)
                    blocks = [client.submit(_auto_block_task, job, wctx, store, s, e, pure=False)
                              for s, e in spans]
                    fut = client.submit(_final_task, job, wctx, None, blocks, pure=False)
                else:
                    limits = client.submit(_embed_prepare_task, job, wctx, pure=False)
                    blocks = [client.submit(_embed_block_task, job, wctx, limits, s, e, pure=False)
                              for s, e in spans]
                    fut = client.submit(_final_task, job, wctx, blocks, None, pure=False)
            else:
                fut = client.submit(_final_task, job, wctx, None, None, pure=False)
            futures[fut] = i
        for fut in as_completed(list(futures)):
            i = futures[fut]
            job = jobs[i]
            try:
                res = fut.result()
            except Exception as exc:  # a worker died, or a block task failed
                res = JobResult(str(job.input), str(job.output), "failed",
                                reason=f"task failed on the cluster: {_one_line(exc)}")
            results[i] = res
            bar.update(1)
            if on_result is not None:
                on_result(res)
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return [results[i] for i in range(len(jobs))]

