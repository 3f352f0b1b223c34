"""Annotation sessions: the file format, reading, writing, checking and replay (no Qt).

A session file records an annotation session so that it can be saved, resumed and replayed
(docs/sessions.md has the format with an example). It is JSON, versioned (:data:`VERSION`),
in napari order ((z, row, col) stack coordinates; boxes (row0, col0, row1, col1)):

* ``image``: path, name, content hash (sampled), shape (Z, Y, X), layer shape, channel axis and channel,
  RGB, dtype, contrast limits (the layer's and the embedding's); a movie's also
  ``time_points`` (T) and ``time_axis`` (its layer axis): then each operation has its
  ``time_point``, and ``labels`` and ``base`` are (T, Z, Y, X);
* ``model``: name or checkpoint path, model id, device and precision;
* ``settings``: propagation axis, overwrite, embedding store, tiling;
* ``operations``: every commit still in effect, in order (undone ones are gone): the prompts
  of each object, the candidate shown, the label it refined, the propagation prompts and
  options, and the label ids written;
* ``objects``: which label came from which operation and prompts;
* ``pending``: prompts not committed yet (restored into the prompt layers);
* ``labels`` (and ``base``): the committed labels as a TIFF beside the JSON
  (``<name>.labels-<hash>.tif``, content-addressed so a crash between writing the TIFF and the
  JSON leaves a consistent pair); ``base`` holds what the labels layer held before the first
  commit, when it was not empty; a movie's are one TIFF per time point, listed under
  ``time_points`` (version 2: a save writes only the time points whose TIFF is not there,
  :mod:`napari_sam.session_label_files`; version 1's single (T, Z, Y, X) TIFF is read too);
* ``trace``: the last propagation trace (:mod:`napari_sam.trace`).

Replay (:func:`replay`, in :mod:`napari_sam.session_replay` and re-exported here, as are
:class:`ReplayResult`, :func:`check_replayable` and :func:`recorded_tiling`) reruns the
operations in order from ``base`` with the GUI's own code
(:func:`napari_sam.annotation.decode_slice`, :func:`napari_sam.segment_volume`,
:func:`napari_sam.annotation.apply_objects`), so with the same model, device and precision
it writes the GUI's committed labels pixel for pixel; with another model or image it reruns
the prompts and :func:`compare` says per object what changed.

Reading checks a file's form with :func:`napari_sam.session_checks.check_record` (its
:class:`SessionError`, :data:`FORMAT`, :data:`VERSION`, :func:`check_image` (a session
against an image) and :func:`recorded_axes` are re-exported here).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import threading
import weakref
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_sam.session_checks import (
    FORMAT,
    PROMPT_KEYS,
    TIME_POINT_FILES_VERSION,
    VERSION,
    SessionError,
    check_image,
    check_model,
    check_record,
    model_unavailable,
    recorded_axes,
    session_error,
)
from napari_sam.session_label_files import (
    keep_tiff,
    own_tiffs,
    read_labels_file,
    write_labels_files,
)
from napari_sam.session_leftovers import mentioned_elsewhere, sweep_once, tiff_refs
from napari_sam.session_replay import (
    ReplayResult,
    check_replayable,
    op_contrast,
    recorded_contrast,
    recorded_tiling,
    replay,
)
from napari_sam.session_temporaries import (
    remove_dead_session_temporaries,
    session_tmp_name,
    sweep_folder_now_and_then,
)
from napari_sam.words import counted, for_count

__all__ = [
    "FORMAT", "VERSION", "Session", "SessionError", "check_image", "check_model",
    "check_session_path", "image_differences", "keep_aside", "kept_stem", "local_time",
    "model_unavailable", "recorded_axes",
    "recorded_tiling", "check_replayable", "ReplayResult", "compare", "image_hash", "image_hash_known",
    "image_hash_steps", "read_session", "replay",
    "session_file_for", "fit_file_name", "saved_session_file", "shortened_note", "slice_operation", "volume_operation", "write_session",
    "op_contrast", "recorded_contrast", "labels_shape", "time_points", "session_labels_hash",
]

#: Autosaved sessions live next to their image: ``stack.tif`` -> ``stack.tif.sam-session.json``.
SESSION_FILE_SUFFIX = ".sam-session.json"


@dataclass
class Session:
    """An annotation session (see the module docstring for the fields).

    ``labels`` and ``base`` are (Z, Y, X) integer arrays (a movie's: (T, Z, Y, X)), or None;
    the rest is JSON-ready.
    """

    image: dict
    model: dict
    settings: dict = field(default_factory=dict)
    operations: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)
    labels: np.ndarray | None = None
    base: np.ndarray | None = None
    trace: dict | None = None
    saved: str | None = None
    path: Path | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """(Z, Y, X) of the image's stack."""
        return tuple(int(s) for s in self.image["shape"])

    @property
    def time_points(self) -> int | None:
        """T of the movie the session was made on (None: an image that is not a movie)."""
        return time_points(self.image)

    def objects(self) -> dict[int, dict]:
        """Which label came from which prompts: ``{id: {"operation": i, "kind", "prompts"}}``
        (the last operation that wrote the id)."""
        out: dict[int, dict] = {}
        for i, op in enumerate(self.operations):
            for oid, prompts in operation_prompts(op).items():
                out[oid] = {"operation": i, "kind": op["kind"], "prompts": prompts}
        return out

    def summary(self) -> str:
        """E.g. "3 commits, labels 1-3, saved 2025-01-01 11:00:00" (a movie's "2 commits at
        time points 0, 4, label 1, ..."): the time in this computer's time zone (the file
        records UTC, which read as the local clock put a session saved a minute before a
        crash hours off)."""
        ids, n = sorted(self.objects()), len(self.operations)
        text = counted(n, "commit")
        times = sorted({int(op["time_point"]) for op in self.operations if "time_point" in op})
        if times:  # a movie's: "2 commits at time points 0, 4"
            text += f" at {'time points' if len(times) > 1 else 'time point'} " + ", ".join(
                map(str, times))
        if ids:
            text += f", {for_count(len(ids), 'label')} {ids[0]}" + (
                f"-{ids[-1]}" if len(ids) > 1 else "")
        return text + (f", saved {local_time(self.saved)}" if self.saved else "")


def time_points(image: Mapping) -> int | None:
    """T of a session's ``image`` record when it was a movie (``time_points``), else None."""
    t = image.get("time_points")
    return None if t is None else int(t)


def labels_shape(image: Mapping) -> tuple[int, ...]:
    """The shape of a session's labels and base from its ``image`` record: (Z, Y, X), a
    movie's (T, Z, Y, X)."""
    shape = tuple(int(s) for s in image["shape"])
    t = time_points(image)
    return shape if t is None else (t, *shape)


def local_time(saved) -> str:
    """``saved`` (ISO 8601 with its offset, as :func:`write_session` records it) in this
    computer's time zone, ``YYYY-mm-dd HH:MM:SS``; as it is when it cannot be read so."""
    try:
        when = _dt.datetime.fromisoformat(str(saved))
    except ValueError:
        return str(saved)
    if when.tzinfo is None:  # (no offset: written by hand; shown as it is)
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# ------------------------------------------------------------------------------ operations
def _prompt_record(z: int, points, labels, box) -> dict:
    rec: dict = {"slice": int(z)}
    pts = np.asarray(points if points is not None else np.zeros((0, 2)), float).reshape(-1, 2)
    if len(pts):
        rec["points"] = pts.tolist()
        rec["labels"] = [int(v) for v in np.asarray(labels).reshape(-1)]
    if box is not None:
        rec["box"] = [float(v) for v in np.asarray(box, float).reshape(4)]
    return rec


def slice_operation(z: int, previews, written: Sequence[tuple[int, int]], *, overwrite: bool,
                    mask_label: int, ids: Sequence[int]) -> dict:
    """The record of a commit of previews on one slice.

    Parameters
    ----------
    previews : list of napari_sam.annotation.ObjectPreview
        Every object decoded together (their prompts, candidate shown, mask prompt).
    written : list of (index into previews, id refined or 0)
        The objects the commit wrote, in order.
    mask_label : int
        The label whose mask was the mask prompt of previews decoded with one (0: none).
    ids : list of int
        The label ids written.
    """
    objects = []
    for p in previews:
        sp = p.prompt
        rec = _prompt_record(z, sp.points, sp.labels, sp.box)
        key = p.key if isinstance(p.key, str) else ":".join(str(k) for k in p.key)
        rec.update(key=key, candidate=int(p.index),
                   n_candidates=int(p.n_candidates), mask_prompt=bool(p.mask_prompt))
        objects.append(rec)
    edges = {"boundary": "edge"} if any(getattr(p, "edges", False) for p in previews) else {}
    return {"op": "commit", "kind": "slice", "slice": int(z), "overwrite": bool(overwrite),
            "mask_label": int(mask_label), "objects": objects, **edges,
            "written": [[int(i), int(r)] for i, r in written], "ids": [int(i) for i in ids]}


def volume_operation(prompts: Mapping[int, Sequence], options: Mapping,
                     written: Sequence[tuple[int, int]], *, overwrite: bool,
                     ids: Sequence[int]) -> dict:
    """The record of a commit of a propagation: ``prompts`` ``{i: [SlicePrompt]}`` and the
    ``options`` given to :func:`napari_sam.segment_volume` (``axis_kind`` included);
    ``written``: (object i, id refined or 0) in order."""
    recs = {str(i): [{**_prompt_record(sp.slice, sp.points, sp.labels, sp.box), **(
        {} if sp.candidate is None else {"candidate": int(sp.candidate)})} for sp in items]
            for i, items in prompts.items()}
    return {"op": "commit", "kind": "volume", "overwrite": bool(overwrite),
            "prompts": recs, "options": dict(options),
            "written": [[int(i), int(r)] for i, r in written], "ids": [int(i) for i in ids]}


def operation_prompts(op: Mapping) -> dict[int, list[dict]]:
    """``{label id: [slice prompts]}`` of an operation (the prompts that made each id)."""
    out: dict[int, list[dict]] = {}
    strip = ("key", "candidate", "n_candidates", "mask_prompt")
    for (idx, _), oid in zip(op["written"], op["ids"]):
        if op["kind"] == "slice":
            out[int(oid)] = [{k: v for k, v in op["objects"][idx].items() if k not in strip}]
        else:
            out[int(oid)] = [dict(p) for p in op["prompts"][str(idx)]]
    return out


# ------------------------------------------------------------------------------ image
def image_hash(stack, remember: bool = False) -> str:
    """A content hash of a (Z, Y, X[, C]) stack: BLAKE2 of its shape, dtype and up to 16
    evenly spaced slices (sampled, so a huge lazy stack is not read whole).

    ``remember``: keep the hash while the ``stack`` object lives, and give it back to every
    later call on that object without reading it again (the dock hashes a lazy image in a
    worker thread, so that the UI thread's look-up of its autosaved session reads nothing).
    """
    steps = image_hash_steps(stack, remember)
    while True:
        try:
            next(steps)
        except StopIteration as end:
            return end.value


def image_hash_steps(stack, remember: bool = False) -> Generator[tuple[int, int], None, str]:
    """:func:`image_hash` as a job: yields ``(slices read, slices to read)`` after each
    slice it reads and returns the hash. Closed between two slices (the dock closing while
    a worker hashes a remote zarr), it reads no more of them and remembers nothing."""
    import hashlib

    with _HASHES_GUARD:
        known = _known_hash(stack)
    if known is not None:
        return known
    h = hashlib.blake2b(digest_size=16)
    shape = tuple(int(s) for s in stack.shape)
    h.update(repr((shape, str(np.dtype(stack.dtype)))).encode())
    n = shape[0]
    todo = sorted({int(round(i * (n - 1) / 15)) for i in range(16)} if n > 16 else range(n))
    for done, z in enumerate(todo, 1):
        h.update(np.ascontiguousarray(np.asarray(stack[z])).tobytes())
        yield done, len(todo)
    digest = h.hexdigest()
    if remember:
        with _HASHES_GUARD, contextlib.suppress(TypeError):  # (not weakly referable: not kept)
            _REMEMBERED_HASHES[stack] = digest
    return digest


def image_hash_known(stack) -> bool:
    """Whether :func:`image_hash` of the ``stack`` object is remembered (read nothing)."""
    with _HASHES_GUARD:
        return _known_hash(stack) is not None


def _known_hash(stack) -> str | None:
    try:
        return _REMEMBERED_HASHES.get(stack)
    except TypeError:  # not weakly referable (nor hashable): never remembered
        return None


_REMEMBERED_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_HASHES_GUARD = threading.Lock()


#: The bytes a file name may have (most file systems: ext4, APFS, NTFS in UTF-16 units).
NAME_MAX = 255
#: The bytes the names made from a session file's ``<stem>.sam-session.json`` take beyond
#: its stem, at most: the hidden temporary file of its labels TIFF
#: (``.<stem>.sam-session.labels-<12 hex>.tif.<12 hex>.tmp``: 54) in an alternate
#: (``<stem>.session-20``: 11).
SESSION_NAME_EXTRA = 54 + 11


def fit_file_name(name: str, room: int = NAME_MAX - SESSION_NAME_EXTRA) -> str:
    """``name`` when it takes at most ``room`` bytes in a file name; else its start (whole
    characters) + ``~`` + the first 10 hex digits of the SHA-1 of the whole name + its
    suffix (``.tif``), in ``room`` bytes: the same name every time, another for another name.
    """
    if len(os.fsencode(name)) <= room:
        return name
    import hashlib

    suffix = Path(name).suffix if len(os.fsencode(Path(name).suffix)) <= 8 else ""
    tail = "~" + hashlib.sha1(os.fsencode(name)).hexdigest()[:10] + suffix
    keep = room - len(os.fsencode(tail))
    head = name[: len(name) - len(suffix)]
    while len(os.fsencode(head)) > keep:
        head = head[: -max(1, (len(os.fsencode(head)) - keep) // 4)]
    return head + tail


#: The bytes the names made from a session file ``<stem>.json`` saved under a name the user
#: gave take beyond that name, at most: the hidden temporary file of its labels TIFF
#: (``.<stem>.labels-<12 hex>.tif.<12 hex>.tmp``).
SAVED_NAME_EXTRA = 37


def saved_session_file(path: os.PathLike | str) -> Path:
    """Where *Save session* to ``path`` writes: ``path``, ``.json`` added unless its name
    ends so; a name too long for the names made from it (over 218 bytes, UTF-8: its labels'
    temporary file adds 37, and a file name may have 255) is shortened as
    :func:`fit_file_name` does (its start, a hash of the whole name, ``.json``)."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        path = path.with_name(path.name + ".json")
    return path.with_name(fit_file_name(path.name, NAME_MAX - SAVED_NAME_EXTRA))


def shortened_note(asked: os.PathLike | str, saved: Path) -> str:
    """" (...)" saying why the session file ``saved`` is not named as ``asked`` (what the
    user gave, :func:`saved_session_file`), or "" where only ``.json`` was added."""
    name = Path(asked).name
    if saved.name in (name, name + ".json"):
        return ""
    return (f" (the name given, {len(os.fsencode(name))} bytes, was too long: a session "
            f"file's name may have {NAME_MAX - SAVED_NAME_EXTRA} bytes, as the names of its "
            f"labels' files add {SAVED_NAME_EXTRA} and a file name may have {NAME_MAX}; it was "
            "shortened to its start and a hash of the whole name)")


def session_file_for(image_path: os.PathLike | str) -> Path:
    """Where a session is autosaved for an image file (next to it): ``<image file name>
    .sam-session.json``; an image name too long for the names made from it (over 190 bytes:
    the labels' temporary file adds 54 bytes, an alternate 11, and a name may have 255)
    is shortened, its start kept with a hash of it (:func:`fit_file_name`). A session
    autosaved before under the whole name (names of 191-201 bytes fitted then) is still
    found there, unless one was autosaved under the fitted name since."""
    p = Path(image_path)
    fitted = p.with_name(fit_file_name(p.name) + SESSION_FILE_SUFFIX)
    if fitted.name != p.name + SESSION_FILE_SUFFIX and not fitted.exists():
        whole = p.with_name(p.name + SESSION_FILE_SUFFIX)
        try:
            if whole.is_file():
                return whole
        except OSError:  # a name this file system cannot hold: never written
            pass
    return fitted


def session_labels_hash(labels: np.ndarray) -> str | list[str]:
    """What :func:`write_session` names and checks the TIFFs of
    ``labels`` (a session's labels or base) by: :func:`labels_hash` of a
    (Z, Y, X) array, a list of that of each time point of a movie's (T, Z, Y, X) (each time
    point has its own TIFF)."""
    if labels.ndim == 4:
        return [labels_hash(labels[t]) for t in range(labels.shape[0])]
    return labels_hash(labels)


def labels_hash(labels: np.ndarray) -> str:
    import hashlib

    a = np.ascontiguousarray(labels)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((a.shape, str(a.dtype))).encode())
    h.update(memoryview(a).cast("B"))  # (no copy: a.tobytes() copied the whole volume)
    return h.hexdigest()


# ------------------------------------------------------------------------------ writing
def to_dict(session: Session) -> dict:
    """The JSON record of a session, without the label arrays (see :func:`write_session`)."""
    objects = {str(k): v for k, v in session.objects().items()}
    return {"format": FORMAT, "version": VERSION, "saved": session.saved,
            "image": session.image, "model": session.model, "settings": session.settings,
            "operations": session.operations, "objects": objects,
            "pending": session.pending or {"points": [], "labels": [], "boxes": []},
            "trace": session.trace}


def write_session(session: Session, path: os.PathLike | str, *,
                  base_hash: str | Sequence[str] | None = None,
                  labels_hashes: Sequence[str] | None = None) -> Path:
    """Write ``session`` to ``path`` (JSON) and its labels beside it, atomically.

    The label TIFFs are written first (temporary name, then rename; named by their content),
    then the JSON (temporary name, then rename), then the TIFFs that the previous session
    file at ``path`` named and the new one does not are removed, unless another ``*.json``
    beside it mentions them (a copy of the session file the user made:
    :func:`napari_sam.session_leftovers.mentioned_elsewhere`; no other file: a user's
    ``<name>.labels-manual.tif`` stays): a crash at any point leaves the previous or the new
    session complete. When a write fails (a full disk), the TIFFs this call wrote are removed
    again: no session file names them. What an earlier write of ``path`` killed half-way left
    beside it (temporaries, TIFFs no session file names) is removed once the JSON is written,
    at the first write of ``path`` in this process
    (:func:`napari_sam.session_leftovers.sweep_once`); the hidden temporaries of a killed
    write of any session file in the folder, at the first write there in this process, then
    every 10 minutes (and at the dock's reads), once their writer is provably dead
    (:mod:`napari_sam.session_temporaries`).

    Parameters
    ----------
    session : Session
        What to write.
    path : path-like
        The JSON file (its name ends in ``.json``).
    base_hash : str, optional
        :func:`labels_hash` of ``session.base`` when the caller knows it (a base unchanged
        since it was hashed: the autosave writes the same base after every commit, and
        hashing 1 GB of it took about 2 s each time). It names the base's TIFF and is
        recorded to check it when read, so it must be the hash of exactly ``session.base``;
        a movie's: :func:`session_labels_hash` (one per time point).
    labels_hashes : list of str, optional
        A movie's :func:`session_labels_hash` of ``session.labels`` when the caller knows it
        (the same must-be-exact rule).

    A movie's labels and base ((T, Z, Y, X)) are written one TIFF per time point
    (``<name>.labels-<hash>.tif``, each named by its own content; the file's ``labels``
    names them in order under ``time_points``, and its ``version`` is
    :data:`~napari_sam.session_checks.TIME_POINT_FILES_VERSION`): a time point whose TIFF
    is there already is not written again, so an autosave after a commit at one time point
    writes that time point's TIFF and the JSON, not the whole movie.
    """
    from napari_sam import __version__
    from napari_sam import io as nio

    path = Path(path)
    check_session_path(session, path)
    session.saved = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = to_dict(session)
    record["napari_sam_version"] = __version__
    keep, made = set(), []
    try:
        for what, arr in (("labels", session.labels), ("base", session.base)):
            record[what] = None
            if arr is not None:
                record[what] = write_labels_files(path, what, np.asarray(arr), labels_hash, (
                    base_hash if what == "base" else labels_hashes), made)
                keep.update(r["path"] for r in tiff_refs(record[what]))
                if "time_points" in record[what]:  # (one TIFF per time point: version 2)
                    record["version"] = TIME_POINT_FILES_VERSION
        stale = own_tiffs(path) - keep
        nio.write_json_atomic(path, record, tmp=session_tmp_name(path))
    except BaseException:  # (a full disk): the TIFFs no session file names are not left
        for tiff in made:  # behind to fill it further
            with contextlib.suppress(OSError):  # (not hiding the error of the write)
                tiff.unlink()
        raise
    for name in stale - mentioned_elsewhere(path, stale):  # (not those a copy names)
        path.with_name(name).unlink(missing_ok=True)
    sweep_once(path, keep, kept_stem=kept_stem(path))  # what a killed write of it left
    sweep_folder_now_and_then(path.parent)  # and killed writes of any file there
    session.path = path
    return path


def check_session_path(session: Session, path: os.PathLike | str) -> None:
    """Refuse a path :func:`write_session` must not write: a name not ending ``.json``, the
    session's own image, or an existing file that is not a session (it would be replaced).

    Raises
    ------
    SessionError
        Naming the path and what to give instead.
    """
    path = Path(path)
    image = session.image.get("path") if isinstance(session.image, Mapping) else None
    if image and path.absolute() == Path(image).absolute():
        raise SessionError(f"not saving the session to {path}: that is the session's image "
                           "(it would be replaced); give a .json name, e.g. "
                           f"{session_file_for(path).name}")
    if path.suffix.lower() != ".json":
        raise SessionError(f"not saving the session to {path}: a session file's name ends in "
                           f".json; give e.g. {path.name}.json (or "
                           f"{session_file_for(path).name} beside an image)")
    if path.exists() and not _looks_like_session(path):
        raise SessionError(f"not saving the session to {path}: that file exists and is not a "
                           "napari-sam session (it would be replaced); pick another name or "
                           "move that file away first")


def _looks_like_session(path: Path) -> bool:
    """A session file, or one that was meant to be (a broken or truncated one names the
    format near its start): a save may replace it."""
    if is_session_file(path):
        return True
    try:
        with open(path, "rb") as f:
            return FORMAT.encode() in f.read(4096)
    except OSError:
        return False


#: The bytes the stem of a kept copy's ``<stem>.kept-<YYYYmmdd-HHMMSS>-99.json`` may have:
#: its TIFFs' temporary names (``<kept stem>.labels-<12 hex>.tif.part``) fit a file name.
KEPT_STEM_ROOM = NAME_MAX - len(".kept-YYYYmmdd-HHMMSS-99") - len(".labels-0123456789ab.tif.part")


def kept_stem(path: Path) -> str:
    """The stem of the kept-aside copies of the session file ``path``
    (``<stem>.kept-<stamp>.json``): its own, or, too long for the names of the copy's TIFFs
    (an alternate of a long image name), fitted (:func:`fit_file_name`), ``.sam-session``
    kept."""
    name = Path(path).name
    stem = name[: -len(".json")] if name.endswith(".json") else name
    if len(os.fsencode(stem)) > KEPT_STEM_ROOM:
        inner = SESSION_FILE_SUFFIX[: -len(".json")] if stem.endswith(
            SESSION_FILE_SUFFIX[: -len(".json")]) else ""
        stem = fit_file_name(stem[: len(stem) - len(inner)], KEPT_STEM_ROOM - len(inner)) + inner
    return stem


def _kept_name(path: Path, stamp: str) -> Path:
    """A free ``<stem>.kept-<stamp>[-n].json`` beside ``path`` (:func:`kept_stem`)."""
    stem = kept_stem(path)
    for n in range(100):
        kept = path.with_name(f"{stem}.kept-{stamp}{'' if not n else f'-{n}'}.json")
        if not kept.exists():
            return kept
    raise FileExistsError(f"too many kept copies of {path}")


def keep_aside(path: os.PathLike | str) -> Path:
    """Keep the session file at ``path`` (and its label TIFFs) under a new dated name beside
    it, ``<name>.kept-<YYYYmmdd-HHMMSS>.json`` with its own copies of the TIFFs, so that a
    save to ``path`` replaces nothing; returns the new path.

    The TIFF copies are written first, then the JSON (temporary name, then rename), so a
    crash leaves ``path`` as it was. The file is copied as it is (not checked; a file that
    is not JSON is copied byte for byte).
    """
    import shutil

    from napari_sam import io as nio

    path = Path(path)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    kept = _kept_name(path, stamp)
    try:
        record = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError:  # broken: kept byte for byte
        shutil.copy2(path, kept)
        return kept
    if not isinstance(record, dict):
        shutil.copy2(path, kept)
        return kept
    for what in ("labels", "base"):
        ref = record.get(what)
        if isinstance(ref, Mapping) and isinstance(ref.get("path"), str):
            record[what] = keep_tiff(path, kept, what, ref)
        elif isinstance(ref, Mapping) and isinstance(ref.get("time_points"), list):
            record[what] = dict(ref, time_points=[  # (a movie's: one TIFF per time point)
                keep_tiff(path, kept, what, r) if r in tiff_refs(ref) else r
                for r in ref["time_points"]])
    nio.write_json_atomic(kept, record)
    return kept


def image_differences(session: Session, *, content_hash: str | None, name: str | None,
                      what: str = "this image",
                      channels: tuple[int | None, int | None] | None = None) -> list[str]:
    """How the image a session is used with differs from the one it recorded: the channel
    segmented of its channel axis (``channels``: the (channel axis, channel) used now; then
    its pixels differ, and are not compared), its content hash (other pixels: another image,
    or the file changed) and its name. Empty when they match, or when the session or the
    image does not know them.

    Returns
    -------
    list of str
        One sentence per difference, e.g. "the session was made on 'a.tif' (content hash
        6cdb...), but this image has other pixels (hash 73a0...)".
    """
    rec, out = session.image, []
    made_on = rec.get("path") or rec.get("name") or "another image"
    was = (rec.get("channel_axis"), rec.get("channel"))
    if channels is not None and was[0] is not None and was[0] == channels[0] and (
            was[1] != channels[1]):
        from napari_sam.annotate.image_source import segmented_words

        shape = rec.get("layer_shape") or ()
        count = int(shape[was[0]]) if was[0] < len(shape) else 3
        words = functools.partial(segmented_words, was[0], n_channels=count)

        out.append(f"the session was made segmenting {words(was[1])} (channel axis {was[0]}), "
                   f"{what} is segmented as {words(channels[1])}: pick {words(was[1])} in the "
                   "dock's 'Channel' to go on as it was made")
    elif content_hash and rec.get("hash") and content_hash != rec["hash"]:
        out.append(f"the session was made on '{made_on}' (content hash {rec['hash'][:8]}...), "
                   f"but {what} has other pixels (hash {content_hash[:8]}...): another image, "
                   "or the file changed since")
    if name and rec.get("name") and name != rec["name"]:
        out.append(f"the session was made on an image named '{rec['name']}', {what} is named "
                   f"'{name}'")
    return out


# ------------------------------------------------------------------------------ reading
def read_session(path: os.PathLike | str, *, load_labels: bool = True,
                 sweep_temporaries: bool = False) -> Session:
    """Read and check a session file (its form; :func:`check_image` and :func:`check_model`
    check it against an image and the installed models). ``sweep_temporaries``: also remove
    the hidden temporaries of killed session writes in its folder
    (:func:`napari_sam.session_temporaries.remove_dead_session_temporaries`; the dock's load
    and offer to resume do; a plain read changes nothing in the folder).

    Raises
    ------
    SessionError
        Naming the file, the problem and the fix: not JSON, not a session, another format
        version, a malformed operation or prompt, a missing or changed labels TIFF.
    """
    p = Path(path)
    if not p.is_file():
        raise SessionError(f"session file {p} does not exist")
    if sweep_temporaries:
        remove_dead_session_temporaries(p.parent)  # what killed session writes left there
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        raise session_error(p.name, "is not UTF-8 text; is it a session file?") from None
    except ValueError as exc:
        raise session_error(p.name, f"is not valid JSON ({exc}); it may be truncated: use the "
                                    "autosaved copy or save the session again") from None
    check_record(data, p.name)
    shape = labels_shape(data["image"])
    session = Session(image=dict(data["image"]), model=dict(data["model"]),
                      settings=dict(data.get("settings") or {}),
                      operations=list(data["operations"]),
                      pending=dict(data.get("pending") or {}), trace=data.get("trace"),
                      saved=data.get("saved"), path=p)
    if load_labels:
        session.labels = read_labels_file(p, data.get("labels"), shape, "labels", labels_hash)
        session.base = read_labels_file(p, data.get("base"), shape, "base", labels_hash)
    return session


def is_session_file(path: os.PathLike | str) -> bool:
    """Whether ``path`` is a JSON file that says it is a session (a cheap look, no checks)."""
    p = Path(path)
    if p.suffix.lower() != ".json" or not p.is_file():
        return False
    try:
        data = json.loads(p.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(data, Mapping) and data.get("format") == FORMAT


def _slices_of(labels: np.ndarray, ids: Sequence[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {int(i): [] for i in ids}
    for z in range(labels.shape[0]):
        for v in np.unique(labels[z]):
            if int(v) in out:
                out[int(v)].append(z)
    return out


def compare(before: np.ndarray | None, after: np.ndarray | None) -> list[dict]:
    """Per object, what changed from ``before`` to ``after`` (both (Z, Y, X) labels; None,
    e.g. the labels of a session saved without any, is all zero: every object is new).

    Returns
    -------
    list of dict
        ``{"id", "status": "same" | "changed" | "new" | "gone", "iou", "area_before",
        "area_after", "slices_before": [first, last] or None, "slices_after"}`` by id.
    """
    if before is None and after is None:
        raise ValueError("compare: both labels are None; give at least one (Z, Y, X) array")
    before = np.zeros_like(after) if before is None else np.asarray(before)
    after = np.zeros_like(before) if after is None else np.asarray(after)
    a = np.asarray(before).astype(np.int64, copy=False).ravel()
    b = np.asarray(after).astype(np.int64, copy=False).ravel()
    n = int(max(a.max(initial=0), b.max(initial=0))) + 1
    area_a, area_b = np.bincount(a, minlength=n), np.bincount(b, minlength=n)
    inter = np.bincount(a[a == b], minlength=n)
    ids = [i for i in range(1, n) if area_a[i] or area_b[i]]
    sa = _slices_of(np.asarray(before), ids)
    sb = _slices_of(np.asarray(after), ids)
    out = []
    for i in ids:
        union = area_a[i] + area_b[i] - inter[i]
        iou = float(inter[i] / union) if union else 1.0
        status = ("new" if not area_a[i] else "gone" if not area_b[i]
                  else "same" if inter[i] == area_a[i] == area_b[i] else "changed")
        out.append({"id": i, "status": status, "iou": round(iou, 4),
                    "area_before": int(area_a[i]), "area_after": int(area_b[i]),
                    "slices_before": [sa[i][0], sa[i][-1]] if sa[i] else None,
                    "slices_after": [sb[i][0], sb[i][-1]] if sb[i] else None})
    return out


def describe_changes(changes: Sequence[Mapping]) -> list[str]:
    """One line per object that is not the same (for the CLI)."""
    lines = []
    for c in (c for c in changes if c["status"] != "same"):
        if c["status"] == "changed":
            lines.append(f"object {c['id']}: changed (IoU {c['iou']:.2f}, area "
                         f"{c['area_before']} -> {c['area_after']}, slices "
                         f"{c['slices_before']} -> {c['slices_after']})")
        else:
            lines.append(f"object {c['id']}: {c['status']}")
    return lines


def legacy_prompts(session: Session) -> dict[int, list[dict]]:
    """``{label id: [slice prompts]}`` in the CLI's prompts form (what made each label)."""
    return {oid: [{k: v for k, v in p.items() if k in PROMPT_KEYS} for p in rec["prompts"]]
            for oid, rec in session.objects().items()}
