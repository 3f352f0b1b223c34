"""What a session write killed half-way leaves beside a session file, and its removal.

:func:`napari_sam.session.write_session` writes the label TIFFs (each to a hidden temporary
name, then renamed), then the JSON (the same), then removes the TIFFs the file named before
and names no more. A napari killed during that (``kill -9``, the OOM killer, a power cut, a
segmentation fault) leaves the previous session whole, but also, beside it:

* ``.<stem>.labels-<12 hex>.tif.<12 hex>.tmp``: a label TIFF killed while written (a full
  copy of the labels: 1 GB for a 60 x 2048 x 2048 uint32 stack), and
  ``.<name>.json.<12 hex>.tmp``: the JSON killed while written;
* ``<stem>.labels-<12 hex>.tif``: a TIFF written whole whose JSON was never written (no
  session file names it), or one the JSON stopped naming whose removal was killed;
* ``<stem>.kept-<date>.labels-<12 hex>.tif.part``: a copy of a label TIFF killed while
  :func:`napari_sam.session.keep_aside` made it (the session it kept aside stays whole).

Before, none of them was ever removed (each crash during an autosave of large labels added
up to two hidden copies of the labels beside the image). :func:`sweep_once` removes them
at the first write of the same session file in a process (:func:`remove_leftovers`); a file
changed in the last :data:`LEFTOVER_AGE_S` seconds is kept (it may be another writer's,
still under way: two processes saving one file). Only names made by ``write_session`` for
this file are touched: a user's ``<stem>.labels-manual.tif`` and another session file's
TIFFs stay. A whole TIFF is removed only when no ``*.json`` in its folder names it: a user
who kept a version by renaming ``foo.json`` to ``foo-v1.json`` keeps its TIFF (before, the
next save to ``foo.json`` removed it), and when one ``*.json`` there cannot be read, no whole
TIFF is removed (it may be a session file that names it). Only a ``*.json`` whose first
:data:`MARKER_BYTES` bytes hold the session format's name (``"napari-sam-session"``, the
first key a session file is written with) is parsed: a 47 MiB COCO ``annotations.json``
beside the images was parsed in full at the first commit (1.5 s); any other keeps the TIFFs
whose names it mentions, found without parsing it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from napari_sam.session_checks import FORMAT

__all__ = ["LEFTOVER_AGE_S", "MARKER_BYTES", "leftovers", "mentioned_elsewhere",
           "named_by_session_files", "remove_leftovers", "session_text", "sweep_once",
           "tiff_refs"]

#: a leftover changed this recently (seconds) may be another live write's, and is kept
LEFTOVER_AGE_S = 120.0
#: how much of a ``*.json`` is read to tell a session file (its format's name) from another
MARKER_BYTES = 4096

_SWEPT: set[str] = set()  # the session files swept in this process (:func:`sweep_once`)
_WHOLE_TIFF = re.compile(r".*\.(?:labels|base)-[0-9a-f]{12}\.tif")  # (not .tmp, .part)


def _patterns(json_path: Path, kept_stem: str | None = None) -> list[re.Pattern]:
    name = json_path.name
    own = name[: -len(".json")] if name.endswith(".json") else name
    stem = re.escape(own)
    tiff = stem + r"\.(?:labels|base)-[0-9a-f]{12}\.tif"
    kept = re.escape(kept_stem if kept_stem is not None else own)
    kept_copy = kept + r"\.kept-\d{8}-\d{6}(?:-\d+)?\.(?:labels|base)-[0-9a-fx]{12}\.tif\.part"
    return [re.compile(tiff), re.compile(r"\." + tiff + r"\.[0-9a-f]{12}\.tmp"),
            re.compile(r"\." + re.escape(name) + r"\.[0-9a-f]{12}\.tmp"), re.compile(kept_copy)]


def named_by_session_files(folder: Path) -> set[str] | None:
    """The names of the files that the ``*.json`` files in ``folder`` name as their labels or
    base TIFF (``labels.path``, ``base.path``; a session file renamed or copied by the user
    still names its TIFFs), or None when one of them cannot be read or is not JSON (it may be
    a session file: nothing it might name is known to be free)."""
    named: set[str] = set()
    try:
        files = [p for p in Path(folder).iterdir() if p.name.lower().endswith(".json")]
    except OSError:
        return None
    for p in files:
        try:
            if not p.is_file():
                continue
            maybe, raw = session_text(p)
            if not maybe:  # (not parsed: a 47 MiB COCO annotations.json took 1.5 s)
                if _mentions_tiffs(raw):
                    return None
                continue
            data = json.loads(raw.decode("utf-8-sig"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, Mapping):
            continue
        for what in ("labels", "base"):
            for ref in tiff_refs(data.get(what)):
                target = Path(os.path.normpath(Path(folder) / ref["path"]))
                if target.parent == Path(os.path.normpath(folder)):
                    named.add(target.name)
    return named


def tiff_refs(ref) -> list[Mapping]:
    """The TIFF records (``{"path", "hash"}``) of a session file's ``labels`` or ``base``
    entry: the entry itself when it names one TIFF, a movie's one per time point when it
    names one per time point (``time_points``: version 2); those without a ``path`` string
    are left out."""
    if not isinstance(ref, Mapping):
        return []
    parts = ref.get("time_points") if "path" not in ref else [ref]
    return [r for r in (parts if isinstance(parts, list) else [])
            if isinstance(r, Mapping) and isinstance(r.get("path"), str)]


def session_text(path: os.PathLike | str) -> tuple[bool, bytes]:
    """Whether the file ``path`` may be a session file (its first :data:`MARKER_BYTES` bytes
    hold the format's name), and its bytes.

    Raises
    ------
    OSError
        When it cannot be read.
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    return FORMAT.encode() in raw[:MARKER_BYTES], raw


def _mentions_tiffs(raw: bytes) -> bool:
    return b".labels-" in raw or b".base-" in raw


def mentioned_elsewhere(json_path: Path, names: Iterable[str]) -> set[str]:
    """Which of ``names`` (label TIFFs ``<stem>.labels-<12 hex>.tif`` beside the session file
    ``json_path``) another ``*.json`` in its folder names (``labels.path``, ``base.path``): a
    copy the user made of the session file (``cp A.json B.json``) names the TIFFs ``A.json``
    named, and saving ``A.json`` again must not remove them. A ``*.json`` that cannot be
    parsed keeps every TIFF of a content (12 hex digits) it mentions anywhere; a folder or
    file that cannot be read keeps every name. Each file is read once while it is unchanged
    (:data:`_NAMED`): the autosave asks at every commit."""
    json_path, names = Path(json_path), set(names)
    if not names:
        return set()
    named: set[str] = set()
    try:
        with os.scandir(json_path.parent) as it:
            files = [e for e in it if e.name.lower().endswith(".json")
                     and e.name != json_path.name]
        for entry in files:
            if entry.is_file():
                named |= _named_by(entry)
    except OSError:
        return names
    return {n for n in names if n in named
            or ((m := _DIGEST.search(n)) is not None and f"?{m.group(1)}" in named)}


_DIGEST = re.compile(r"\.(?:labels|base)-([0-9a-f]{12})\.tif")
_NAMED: dict[str, tuple[tuple[int, int], frozenset[str]]] = {}  # path: (stat, names)
_NAMED_MAX = 10_000


def _named_by(entry: os.DirEntry) -> frozenset[str]:
    """The TIFFs beside it that the ``*.json`` ``entry`` names as ``labels`` or ``base``;
    of one that is not JSON, or no session file (:func:`session_text`: not parsed), ``?<12
    hex>`` for each TIFF content it mentions."""
    st = entry.stat()
    key = (st.st_mtime_ns, st.st_size)
    known = _NAMED.get(entry.path)
    if known is not None and known[0] == key:
        return known[1]
    maybe, raw = session_text(entry.path)
    found = (_tiffs_named(raw, os.path.dirname(entry.path)) if maybe
             else _tiffs_mentioned(raw) if _mentions_tiffs(raw) else frozenset())
    if len(_NAMED) >= _NAMED_MAX:  # (files seen in many folders over a long session)
        _NAMED.clear()
    _NAMED[entry.path] = (key, found)
    return found


def _tiffs_mentioned(raw: bytes) -> frozenset[str]:
    return frozenset("?" + d for d in _DIGEST.findall(raw.decode("utf-8", "replace")))


def _tiffs_named(raw: bytes, folder: str) -> frozenset[str]:
    folder = os.path.normpath(folder)
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except ValueError:  # (UnicodeDecodeError too): what it mentions is kept
        return _tiffs_mentioned(raw)
    refs = [r for w in ("labels", "base") for r in tiff_refs(data.get(w))] if isinstance(
        data, Mapping) else []
    return frozenset(
        os.path.basename(t) for r in refs
        if os.path.dirname(t := os.path.normpath(os.path.join(folder, r["path"]))) == folder)


def leftovers(json_path: Path, keep: Iterable[str] = (), *,
              older_than: float = LEFTOVER_AGE_S, kept_stem: str | None = None) -> list[Path]:
    """The files a killed write of the session file ``json_path`` left beside it (see the
    module docstring), leaving out the names in ``keep`` (the TIFFs the file names now),
    files changed less than ``older_than`` seconds ago, and whole TIFFs that a ``*.json``
    beside it names (:func:`named_by_session_files`: a session file the user renamed or
    copied; all of them when one ``*.json`` there cannot be read); sorted by name.
    ``kept_stem``: the stem of the kept-aside copies of ``json_path``
    (:func:`napari_sam.session.kept_stem`; default: its own stem)."""
    json_path = Path(json_path)
    keep, pats, now = set(keep), _patterns(json_path, kept_stem), time.time()
    out = []
    try:
        entries = list(json_path.parent.iterdir())
    except OSError:
        return []
    for p in entries:
        if p.name in keep or not any(pat.fullmatch(p.name) for pat in pats):
            continue
        try:
            if p.is_file() and now - p.stat().st_mtime >= older_than:
                out.append(p)
        except OSError:
            continue
    if any(_WHOLE_TIFF.fullmatch(p.name) for p in out):
        named = named_by_session_files(json_path.parent)
        out = [p for p in out if not _WHOLE_TIFF.fullmatch(p.name)
               or (named is not None and p.name not in named)]
    return sorted(out)


def remove_leftovers(json_path: Path, keep: Iterable[str] = (), *,
                     older_than: float = LEFTOVER_AGE_S,
                     kept_stem: str | None = None) -> list[Path]:
    """Remove :func:`leftovers` (best effort: a file that cannot be removed stays); returns
    the files removed."""
    gone = []
    for p in leftovers(json_path, keep, older_than=older_than, kept_stem=kept_stem):
        try:
            p.unlink()
        except OSError:
            continue
        gone.append(p)
    return gone


def sweep_once(json_path: Path, keep: Iterable[str] = (), *,
               kept_stem: str | None = None) -> list[Path]:
    """:func:`remove_leftovers` at the first write of ``json_path`` in this process only:
    listing the folder after every autosave took 0.1 s per write with 20,000 files beside
    it (on the UI thread for small labels), and a crash's leftovers are there before the
    process starts."""
    key = os.path.abspath(json_path)
    if key in _SWEPT:
        return []
    _SWEPT.add(key)
    return remove_leftovers(Path(json_path), keep, kept_stem=kept_stem)
