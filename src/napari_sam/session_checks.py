"""Checking the form of a session file (:mod:`napari_sam.session`) before anything uses it.

:func:`check_record` takes the parsed JSON of a session file and raises :class:`SessionError`
naming the file, the entry (operation, object) and what it must be: the format and version,
the image shape, the model, the settings (their ``tiling``: :func:`tiling_of`), every
operation (slice and volume commits, their prompts, candidates, written ids and options) and
the pending prompts. :func:`check_image` checks a session's coordinates against an image
(:func:`recorded_axes`: the axes its layer had, for the hint when they differ).

:func:`model_unavailable` says why a session's model cannot be loaded here ("" when it can),
and :func:`check_model` refuses it with what to do. These, the format's constants
(:data:`FORMAT`, :data:`VERSION`) and :class:`SessionError` live here and are re-exported by
:mod:`napari_sam.session`, which imports this module (never the other way round).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Mapping, Sequence

__all__ = ["FORMAT", "PROMPT_KEYS", "TIME_POINT_FILES_VERSION", "VERSION", "SessionError",
           "check_image", "check_model", "check_record", "model_unavailable",
           "recorded_axes", "session_error", "tiling_of"]

FORMAT = "napari-sam-session"
VERSION = 1
#: The version of a file whose movie labels (or base) are one TIFF per time point (its
#: ``labels`` names them under ``time_points``); version 1, one (T, Z, Y, X) TIFF, is read too.
TIME_POINT_FILES_VERSION = 2
#: The keys of a slice prompt record (what the CLI's prompts form keeps of it).
PROMPT_KEYS = ("slice", "points", "labels", "box", "stop")


class SessionError(ValueError):
    """A session file that cannot be used; the message names the problem and the fix."""


def session_error(where: str, text: str) -> SessionError:
    """The :class:`SessionError` "session file <where>: <text>" (``where``: the file's name,
    with the operation and object when there is one)."""
    return SessionError(f"session file {where}: {text}")


def _number(value, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise session_error(where, f"{what} must be a finite number, got {value!r}")
    return float(value)


def _check_prompt(rec, where: str) -> None:
    """The form of one slice prompt record (coordinates are checked by
    :func:`napari_sam.session.check_image`)."""
    if not isinstance(rec, Mapping):
        raise session_error(where, f"a prompt must be an object, got {rec!r}")
    if not isinstance(rec.get("slice"), int) or rec["slice"] < 0:
        raise session_error(where, f"'slice' must be a whole number >= 0, got {rec.get('slice')!r}")
    pts = rec.get("points", [])
    if not isinstance(pts, list) or any(not isinstance(p, list) or len(p) != 2 for p in pts):
        raise session_error(where, f"'points' must be a list of [row, col] pairs, got {pts!r}")
    for p in pts:
        for v, what in zip(p, ("row", "col")):
            _number(v, what, where)
    labels = rec.get("labels", [])
    if not isinstance(labels, list) or len(labels) != len(pts) or any(
            v not in (0, 1) or isinstance(v, bool) for v in labels):
        raise session_error(where, "'labels' must hold one 1 (object) or 0 (background) per "
                                   f"point, got {labels!r}")
    box = rec.get("box")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise session_error(where, f"'box' must be [row0, col0, row1, col1], got {box!r}")
        b = [_number(v, "a box corner", where) for v in box]
        if b[2] < b[0] or b[3] < b[1]:
            raise session_error(where, f"box {b} is inverted (row0 <= row1 and col0 <= col1)")
    if not pts and box is None and not rec.get("stop"):
        raise session_error(where, "a prompt without points or a box")


def _whole(value, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_operation(op, i: int, name: str) -> None:
    where = f"{name}, operation {i + 1}"
    if not isinstance(op, Mapping) or op.get("kind") not in ("slice", "volume"):
        raise session_error(where, "each operation needs \"kind\": \"slice\" or \"volume\"")
    if not isinstance(op.get("overwrite"), bool):
        got = f"got {op['overwrite']!r}" if "overwrite" in op else "it is missing"
        raise session_error(where, f"'overwrite' must be true or false, {got}")
    written, ids = op.get("written"), op.get("ids")
    if not isinstance(written, list) or not isinstance(ids, list) or len(written) != len(ids) \
            or any(not isinstance(w, list) or len(w) != 2 or not all(map(_whole, w))
                   for w in written) or not all(_whole(v, 1) for v in ids):
        raise session_error(where, "'written' must list [object, refined id] pairs and 'ids' the "
                                   "label ids (>= 1) they wrote, one per object")
    (_check_slice_op if op["kind"] == "slice" else _check_volume_op)(op, where)


def _check_slice_op(op: Mapping, where: str) -> None:
    objs, z = op.get("objects"), op.get("slice")
    if not _whole(z) or not _whole(op.get("mask_label", 0)):
        raise session_error(where, "a slice commit needs its 'slice' and 'mask_label' (0: none) as "
                                   f"whole numbers >= 0, got {z!r} and {op.get('mask_label')!r}")
    if not isinstance(objs, list) or not objs:
        raise session_error(where, "a slice commit needs its 'objects'")
    for j, rec in enumerate(objs):
        at = f"{where}, object {j + 1}"
        if not isinstance(rec, Mapping):
            raise session_error(at, f"must be an object (its prompt, 'candidate', ...), got "
                                    f"{rec!r}")
        _check_prompt({k: v for k, v in rec.items() if k in PROMPT_KEYS}, at)
        if rec["slice"] != z:
            raise session_error(at, f"its prompt is on slice {rec['slice']}, the operation on "
                                    f"slice {z}; a slice commit's prompts are all on its "
                                    "'slice'")
        cand, n = rec.get("candidate", 0), rec.get("n_candidates")
        if not _whole(cand) or (n is not None and (not _whole(n, 1) or cand >= n)):
            raise session_error(at, "'candidate' must be a whole number >= 0 (the mask shown, "
                                    f"below 'n_candidates' {n!r}), got {cand!r}")
    if any(not w[0] < len(objs) for w in op["written"]):
        raise session_error(where, "'written' names an object the operation does not have")


def _check_candidate(rec: Mapping, items: list, where: str) -> None:
    """A volume commit's prompt ``rec`` (of the object's ``items``) with a ``candidate``
    (:func:`napari_sam.volume.annotations.candidate_problem`)."""
    cand = rec.get("candidate")
    if cand is None:
        return
    from napari_sam.volume.annotations import prompt_candidate_problem

    others = sum(r.get("slice") == rec["slice"] for r in items if isinstance(r, Mapping)) - 1
    problem = prompt_candidate_problem(cand, rec, others)
    if problem:
        raise session_error(f"{where}, slice {rec['slice']}", problem)


def _check_volume_op(op: Mapping, where: str) -> None:
    from napari_sam.sam2_volume import segment_volume_sam2
    from napari_sam.volume import segment_volume

    prompts, options = op.get("prompts"), op.get("options", {})
    if not isinstance(prompts, Mapping) or not prompts:
        raise session_error(where, "a volume commit needs its 'prompts'")
    for k, items in prompts.items():
        if not re.fullmatch(r"[1-9][0-9]*", k):
            raise session_error(where, f"object {k!r}: the keys of 'prompts' must be object ids, "
                                       "whole numbers >= 1 (\"1\", \"2\", ...)")
        if not isinstance(items, list) or not items:
            raise session_error(where, f"object {k}: expected a list of prompts")
        for rec in items:
            _check_prompt(rec, f"{where}, object {k}")
            _check_candidate(rec, items, f"{where}, object {k}")
    if any(str(w[0]) not in prompts for w in op["written"]):
        raise session_error(where, "'written' names an object the operation has no prompts for")
    if not isinstance(options, Mapping):
        raise session_error(where, "'options' must be an object")
    sam2 = options.get("method") == "sam2"  # keywords of the function the GUI propagated with
    func = segment_volume_sam2 if sam2 else segment_volume
    known = {k for k, p in inspect.signature(func).parameters.items() if p.kind == p.KEYWORD_ONLY
             and k not in ("progress", "predictor", "features")} | ({"method"} if sam2 else set())
    if set(options) - known or options.get("axis_kind", "z") not in ("z", "t"):
        raise session_error(where, f"'options' {dict(options)!r} are not options of "
                                   f"{func.__name__}: it takes {', '.join(sorted(known))} "
                                   "(axis_kind 'z' or 't')")


def _check_settings(data: Mapping, name: str) -> None:
    """``settings`` (an object; its ``tiling``) and ``model.precision`` (or null)."""
    precision = data["model"].get("precision")
    if precision not in (None, "fp32", "bf16", "fp16"):
        raise session_error(name, "'model.precision' must be 'fp32', 'bf16' or 'fp16' (or null), "
                                  f"got {precision!r}")
    settings = data.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise session_error(name, f"'settings' must be an object, got {settings!r}")
    if settings.get("tiling") is not None:
        tiling_of(settings["tiling"], name, data["image"]["shape"])


def tiling_of(key, name: str, shape: Sequence[int]):
    """The :class:`napari_sam.tiling.Tiling` of a ``settings["tiling"]`` for (Z, Y, X) shape."""
    from napari_sam.tiling import Tiling

    try:
        tiling = Tiling(tuple(int(v) for v in key["image_shape"]), int(key["window"]),
                        int(key["halo"]))
        if list(tiling.image_shape) != list(shape[1:]):
            raise ValueError(f"the image's slices are {list(shape[1:])}")
    except (KeyError, TypeError, ValueError) as err:
        raise session_error(name, f"'settings.tiling' {key!r} is not the tiling of the image's "
                                  f"slices ({err}); it must be {{\"image_shape\": [Y, X], "
                                  "\"window\", \"halo\"}: the file was changed by hand or is "
                                  "damaged") from None
    return tiling


def _check_pending(pending, name: str) -> None:
    if not isinstance(pending, Mapping):
        raise session_error(name, f"'pending' must be an object (points, labels, boxes), got "
                                  f"{pending!r}")
    pts, lab, boxes = (pending.get(k, []) for k in ("points", "labels", "boxes"))
    if not isinstance(pts, list) or any(not isinstance(p, list) or len(p) != 3 for p in pts) \
            or not isinstance(lab, list) or len(lab) != len(pts):
        raise session_error(name, "'pending.points' must be [z, row, col] triples with one label "
                                  "each")
    if not isinstance(boxes, list) or any(not isinstance(b, list) or len(b) != 5 for b in boxes):
        raise session_error(name, "'pending.boxes' must be [z, row0, col0, row1, col1] lists")
    for v in (v for p in pts + boxes for v in p):
        _number(v, "a pending prompt coordinate", name)
    for key, items in (("times", pts), ("box_times", boxes)):  # (a movie's)
        times = pending.get(key)
        if times is not None and (not isinstance(times, list) or len(times) != len(items)
                                  or not all(map(_whole, times))):
            raise session_error(name, f"'pending.{key}' must give the time point (a whole "
                                      "number >= 0) of each pending prompt")


def _check_times(image: Mapping, data: Mapping, name: str) -> None:
    """A movie's ``image.time_points`` (T >= 1), each operation's ``time_point`` and each
    pending prompt's (0 to T - 1); a session of any other image has none."""
    times, ops = image.get("time_points"), data.get("operations")
    if times is not None and not (isinstance(times, int) and _whole(times, 1)):
        raise session_error(name, "'image.time_points' must be the movie's number of time "
                                  f"points (a whole number >= 1), got {times!r}")
    pending = data.get("pending") if isinstance(data.get("pending"), Mapping) else {}
    late = [t for key in ("times", "box_times") if isinstance(pending.get(key), list)
            for t in pending[key] if times is None or (_whole(t) and t >= times)]
    if late:
        raise session_error(name, f"'pending' has a prompt at time point {late[0]}, but " + (
            f"the movie has {times} time points" if times else "the image is not a movie"))
    for i, op in enumerate(ops if isinstance(ops, list) else ()):
        t = op.get("time_point") if isinstance(op, Mapping) else None
        if t is None and times is None:
            continue
        if times is None or not (isinstance(t, int) and _whole(t) and t < times):
            need = (f"a 'time_point' from 0 to {times - 1} (the movie has {times})"
                    if times is not None else "no 'time_point' (the image is not a movie)")
            raise session_error(f"{name}, operation {i + 1}", f"needs {need}, got {t!r}")


def check_record(data, name: str) -> None:
    """Check the parsed JSON ``data`` of the session file ``name`` (its form, not its image).

    Raises
    ------
    SessionError
        Not a session, another format version, or a malformed entry: the message names the
        file, the entry and what it must be.
    """
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise session_error(name, f"not a napari-sam session (no \"format\": \"{FORMAT}\"); save "
                                  "one from the Segment Anything dock ('Save session')")
    version = data.get("version")
    if version not in (VERSION, TIME_POINT_FILES_VERSION):
        newer = isinstance(version, int) and version > TIME_POINT_FILES_VERSION
        raise session_error(name, f"format version {version!r}, but this napari-sam reads version "
                                  f"{VERSION} or {TIME_POINT_FILES_VERSION}" + (
                                      "; update napari-sam-stacks" if newer else
                                      "; save the session again from the dock"))
    image = data.get("image")
    shape = image.get("shape") if isinstance(image, Mapping) else None
    if not isinstance(shape, list) or len(shape) != 3 or any(
            not isinstance(s, int) or s < 1 for s in shape):
        raise session_error(name, "'image.shape' must be [Z, Y, X] (positive whole numbers)")
    _check_times(image, data, name)
    if not isinstance(data.get("model"), Mapping) or not data["model"].get("name"):
        raise session_error(name, "'model.name' is missing (a registry name or a checkpoint path)")
    _check_settings(data, name)
    ops = data.get("operations")
    if not isinstance(ops, list):
        raise session_error(name, "'operations' must be a list")
    for i, op in enumerate(ops):
        _check_operation(op, i, name)
    _check_pending({} if data.get("pending") is None else data["pending"], name)


def model_unavailable(session) -> str:
    """Why a session's model cannot be loaded here, or "" when it can.

    Parameters
    ----------
    session : napari_sam.session.Session
        A session read from its file (``model["name"]``, ``model["is_file"]``).

    Returns
    -------
    str
        "" for a registry name this version knows or an existing checkpoint file; else the
        reason, to follow "its model ... is": a registry name this version does not know (one
        of a newer version?) or a checkpoint file that is not there any more, with the names
        this version knows and what to do.
    """
    from pathlib import Path

    from napari_sam.models.registry import REGISTRY

    spec = str(session.model.get("name"))
    if spec in REGISTRY or Path(spec).is_file():
        return ""
    known = ", ".join(sorted(REGISTRY))
    if session.model.get("is_file") is False:  # a registry name
        return (f"no model name this version of napari-sam-stacks knows (it knows {known}; was "
                "the session made with a newer version? update napari-sam-stacks to use it)")
    return ("not there any more: no such checkpoint file (moved, renamed or deleted? put it "
            f"back at that path to use it) and no model name this version knows ({known})")


def check_model(session) -> str:
    """The model to load for ``session`` (as for :func:`model_unavailable`): its registry
    name or the path of an existing checkpoint file.

    Raises
    ------
    SessionError
        The model cannot be loaded here (:func:`model_unavailable` says why), with what to do.
    """
    spec = str(session.model.get("name"))
    reason = model_unavailable(session)
    if not reason:
        return spec
    raise session_error(session.path.name if session.path else "session",
                        f"unknown model {spec!r}: {reason}; or pick a model and load the "
                        "session again (the CLI: --model)")


# --------------------------------------------------------- checks against an image
def _all_prompts(session):
    """(where, prompt record) of every operation's and every pending prompt."""
    for i, op in enumerate(session.operations):
        if op["kind"] == "slice":
            for j, rec in enumerate(op["objects"]):
                yield f"operation {i + 1}, object {j + 1}", rec
        else:
            for k, items in op["prompts"].items():
                for rec in items:
                    yield f"operation {i + 1}, object {k}", rec
    pending = session.pending or {}
    for (z, r, c), lab in zip(pending.get("points", []), pending.get("labels", [])):
        yield "pending points", {"slice": int(round(z)), "points": [[r, c]], "labels": [lab]}
    for z, *box in pending.get("boxes", []):
        yield "pending boxes", {"slice": int(round(z)), "box": box}


def _outside_problem(rec: Mapping, n: int, h: int, w: int, what: str) -> str | None:
    """What of a prompt record lies outside a stack of n slices of h x w pixels, or None.

    A box is outside only when it misses the image (:func:`napari_sam.prompts.box_is_outside`);
    a box partly outside is kept, as the dock keeps it: a volume commit's is clipped to the
    image by :func:`napari_sam.segment_volume`, a slice commit's is decoded as drawn."""
    z = rec["slice"]
    if not 0 <= z < n:
        return f"slice {z} is outside {what} (slices 0-{n - 1})"
    for r, c in rec.get("points", []):
        if not (-0.5 <= r <= h - 0.5 and -0.5 <= c <= w - 0.5):
            return (f"point (row {r:g}, col {c:g}) on slice {z} lies outside {what} ({h} x {w} "
                    "pixels)")
    b = rec.get("box")
    if b is not None and (b[2] < 0 or b[3] < 0 or b[0] > h - 1 or b[1] > w - 1):
        return (f"box {b} on slice {z} lies outside {what} ({h} x {w} pixels; boxes are "
                "[row0, col0, row1, col1] in pixels and must overlap the image)")
    return None


def check_image(session, shape: Sequence[int], *, what: str = "this image",
                axes_hint: bool = True) -> list[str]:
    """Check a session (:class:`napari_sam.session.Session`) against an image's (Z, Y, X)
    stack shape.

    ``axes_hint``: where only the number of slices differs, say how to read the file with
    the session's axes (``--axes`` of the command line, ``read_image``); the dock, whose
    user opened the image in napari, passes False.

    Returns
    -------
    list of str
        Notes (none yet; kept for callers that print them).

    Raises
    ------
    SessionError
        The shape differs, or a prompt lies outside the image or on a slice it does not have
        (naming the operation and object, or the pending prompt, and the fix: correct or
        remove it in the session file). A box partly outside the image is accepted, as the
        dock accepts it: replay clips a volume commit's box to the image (in
        :func:`napari_sam.segment_volume`) and decodes a slice commit's as drawn.
    """
    shape = tuple(int(s) for s in shape)
    name = session.path.name if session.path else "session"
    if shape != session.shape:
        src = session.image.get("path") or session.image.get("name") or "another image"
        axes = recorded_axes(session)
        hint = "" if axes is None or shape[1:] != session.shape[1:] or not axes_hint else (
            f" (if it is the same file read with other axes, e.g. {session.shape[0]} slices "
            f"read as colour channels because the file does not name its axes, give the axes "
            f"the session's layer had: --axes {axes} on the command line, axes='{axes}' to "
            "napari_sam.io.read_image)")
        def said(zyx):  # a 2D image as (Y, X)
            return f"(Y, X) {zyx[1:]}" if zyx[0] == 1 else f"(Z, Y, X) {zyx}"
        raise session_error(name, f"made for an image of {said(session.shape)} ({src}), but "
                                  f"{what} is {said(shape)}{hint}; open the image it was made for")
    for where, rec in _all_prompts(session):
        problem = _outside_problem(rec, *shape, what)
        if problem is None:
            continue
        fix = ("remove it from 'pending' in the session file (it was never committed)"
               if where.startswith("pending") else
               "correct this prompt in the session file (pixels of the image, napari order), "
               "then replay or load the session again")
        raise session_error(name, f"{where}: {problem}; {fix}")
    return []


def recorded_axes(session) -> str | None:
    """The axes of the image layer the session was made on, when they follow from the
    record: ``"ZYX"`` (``"YX"``) for a layer of (Z, Y, X) (or (Y, X)) without a channel axis
    and not RGB; None otherwise (a channel axis or RGB: the file's own axes are needed)."""
    rec = session.image
    layer = rec.get("layer_shape")
    if rec.get("rgb") or rec.get("channel_axis") is not None or not isinstance(layer, list):
        return None
    if len(layer) == 3 and tuple(layer) == session.shape:
        return "ZYX"
    if len(layer) == 2 and (1, *layer) == session.shape:
        return "YX"
    return None
