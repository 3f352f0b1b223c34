"""Replay of an annotation session: its operations rerun on a stack's embeddings
(:func:`replay`, :class:`ReplayResult`), with the checks made before any work
(:func:`check_replayable`, :func:`recorded_tiling`). The session file itself (format,
reading, writing) is :mod:`napari_sam.session`'s (``Session``), which re-exports these names
(``napari_sam.session.replay``); this module does not import it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from napari_sam.progress import ProgressArg, reports_progress
from napari_sam.session_checks import SessionError, check_image, tiling_of
from napari_sam.words import counted, for_count

__all__ = ["ReplayResult", "check_replayable", "checked_limits", "op_contrast",
           "recorded_contrast", "recorded_tiling", "replay"]


def _prompt_of(rec: Mapping):
    """The :class:`napari_sam.annotate.prompt_groups.DrawnPrompts` of a prompt record (what
    :func:`~napari_sam.annotation.decode_slice` takes)."""
    from napari_sam.annotate.prompt_groups import DrawnPrompts

    pts = np.asarray(rec.get("points", []), dtype=np.float64).reshape(-1, 2)
    lab = np.asarray(rec.get("labels", []), dtype=np.int64).reshape(-1)
    box = None if rec.get("box") is None else np.asarray(rec["box"], dtype=np.float64)
    return DrawnPrompts(pts, lab, box)


@dataclass
class ReplayResult:
    """What :func:`replay` made.

    Attributes
    ----------
    labels : numpy.ndarray (Z, Y, X)
        The labels after every operation.
    ids : list of list of int
        The ids each operation wrote.
    notes : list of str
        Operations whose ids differ from the recorded ones (another model or image).
    trace : dict
        The propagation trace of the volume operations (:mod:`napari_sam.trace`), objects
        under their committed ids.
    """

    labels: np.ndarray
    ids: list
    notes: list
    trace: dict

    def __repr__(self) -> str:  # one line, not the arrays (a notebook cell's last line)
        n, lab = len(self.ids), np.asarray(self.labels)
        written = len({int(i) for ids in self.ids for i in ids})
        notes = (f"{counted(len(self.notes), 'note')}: {self.notes[0]}"
                 + (" ..." if len(self.notes) > 1 else "")) if self.notes \
            else "every id as recorded"
        return (f"ReplayResult({counted(n, 'operation')}, {counted(written, 'label')} "
                f"written, labels {tuple(lab.shape)} {lab.dtype}; "
                f"{notes})")


def _slice_objects(op: Mapping, labels: np.ndarray, emb, predictor, stack) -> list:
    from napari_sam.annotation import ObjectMask, decode_slice, mask_prompt, slice_edges

    z = int(op["slice"])
    e = emb[z]
    on_slice, mask_inputs = [], {}
    for j, rec in enumerate(op["objects"]):
        on_slice.append((j, _prompt_of(rec)))
        if rec.get("mask_prompt"):  # the label refined, as the dock made its prompt
            mask_inputs[j] = mask_prompt(predictor, e, labels[z] == int(op["mask_label"]))
    edge = (op.get("boundary") == "edge" and stack is not None  # as the dock cut the masks
            and getattr(e, "tiling", None) is None)
    edges = slice_edges(predictor, stack, z, "edge") if edge else None
    previews = {p.key: p for p in decode_slice(predictor, e, z, on_slice, mask_inputs, edges)}
    objects = []
    for j, replaces in op["written"]:
        p = previews.get(int(j))
        if p is None:
            continue
        p.index = min(int(op["objects"][j].get("candidate", 0)), p.n_candidates - 1)
        objects.append(ObjectMask(p.mask, z, int(replaces)))
    return objects


def _volume_objects(op: Mapping, emb, progress) -> tuple[list, object]:
    from napari_sam.annotation import ObjectMask
    from napari_sam.volume import segment_volume

    prompts = {int(k): [replace(_prompt_of(rec).to_slice_prompt(int(rec["slice"])),
                                candidate=rec.get("candidate")) for rec in items]
               for k, items in op["prompts"].items()}
    res = segment_volume(emb, prompts, progress=progress, **dict(op.get("options") or {}))
    labels = np.asarray(res.labels)
    objects = [ObjectMask(labels == int(i), None, int(r)) for i, r in op["written"]]
    return objects, res


def check_replayable(session) -> None:
    """Refuse, before any work, a session that :func:`replay` cannot rerun.

    Replay reruns SAM 1 operations (clicks decoded on a slice, propagation by
    :func:`napari_sam.segment_volume`). A propagation with SAM 2 memory (options
    ``{"method": "sam2", ...}``, written by the GUI with a SAM 2.1 model) is not replayed.

    Raises
    ------
    SessionError
        Naming the first SAM 2 operation and what to do instead, or an operation whose
        ``contrast_limits`` are not [low, high].
    """
    for i, op in enumerate(session.operations):
        checked_limits(op.get("contrast_limits"), f"operation {i + 1}'s contrast_limits")
        if (op.get("options") or {}).get("method") == "sam2":
            raise SessionError(
                f"operation {i + 1} of this session propagated with SAM 2 memory (a SAM 2.1 "
                "model); replaying SAM 2 operations is not supported. The session's labels are "
                "kept in its file: open it in napari to continue it, or rerun the objects with "
                "'napari-sam segment STACK --prompts PROMPTS.csv --method sam2 --model MODEL'")


def recorded_tiling(session):
    """The :class:`napari_sam.tiling.Tiling` the session's clicks were decoded in (its
    ``settings["tiling"]``), or None: untiled, or a session written before tiling existed.
    Replay embeds the stack with it, so that every click is decoded as the dock did."""
    key = session.settings.get("tiling")
    name = session.path.name if session.path else "session"
    return tiling_of(key, name, session.shape) if key else None


def op_contrast(op: Mapping) -> tuple[float, float] | None:
    """The contrast limits (low, high) the model saw in the dock when operation ``op`` was
    made: the image layer's limits the user set ('Model sees the layer's contrast'), or None:
    the stack's own 0.5-99.5 percentiles (an operation without ``contrast_limits``)."""
    return checked_limits(op.get("contrast_limits"), "an operation's contrast_limits")


def checked_limits(limits, what: str) -> tuple[float, float] | None:
    """Recorded contrast ``limits`` as (low, high) floats, or None (None: the stack's
    percentiles).

    Raises
    ------
    SessionError
        Naming ``what`` when they are not two finite numbers with high > low.
    """
    if limits is None:
        return None
    try:
        lo, hi = (float(v) for v in limits)
    except (TypeError, ValueError):
        lo = hi = float("nan")
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise SessionError(f"{what} must be [low, high], two finite numbers with high > low, "
                           f"got {limits!r}: correct it in the session file (or remove it: "
                           "the stack's own percentiles)")
    return lo, hi


def recorded_contrast(session) -> tuple[float, float] | None:
    """The contrast limits the session's last operation was embedded with (:func:`op_contrast`;
    no operation: the limits the dock had when it saved), or None: the stack's own
    percentiles. Embed the stack with them (``napari_sam.embed(..., contrast_limits=...)``)
    to replay the session's masks; operations made under other limits (the contrast changed
    mid-session) are replayed with ``replay(..., embed=...)``."""
    if session.operations:
        return op_contrast(session.operations[-1])
    return checked_limits((session.image or {}).get("model_contrast_limits"),
                   "image.model_contrast_limits")


def _same_limits(a, b) -> bool:
    return (a is None) == (b is None) and (a is None or bool(np.allclose(a, b, rtol=1e-6)))


def _contrast_note(i: int, want, emb) -> str | None:
    """A note when operation ``i`` was made under the user's limits ``want`` and ``emb`` has
    other limits (an operation made under the percentiles is not checked: ``emb`` does not
    say whether its limits are its stack's percentiles)."""
    have = getattr(emb, "contrast_limits", None)
    if want is None or have is None or _same_limits(want, tuple(have)):
        return None
    return (f"operation {i + 1} was made with the model seeing contrast limits "
            f"{want[0]:g}-{want[1]:g}; these embeddings have {float(have[0]):g}-"
            f"{float(have[1]):g}, so its masks may differ (embed with contrast_limits="
            "session.recorded_contrast(s), or pass embed=)")


@reports_progress("replay", unit="operation")
def replay(session, emb, *, progress: ProgressArg = None, embed=None) -> ReplayResult:
    """Rerun a session's operations on a stack's embeddings.

    Parameters
    ----------
    session : napari_sam.session.Session
    emb : napari_sam.embeddings.StackEmbeddings or napari_sam.tiled_stack.TiledStackEmbeddings
        Embeddings of the (Z, Y, X) stack (:func:`napari_sam.embed`), with its predictor;
        tiled as the session was (:func:`recorded_tiling`) to decode every click as the dock
        did.
    progress : None, bool or callable(done, total)
        None or False: silent; True: a ``tqdm.auto`` bar; a callable: called after each
        operation (TypeError for anything else, before any work).
    embed : callable, optional
        ``embed(limits)``: embeddings of the same stack with the contrast limits ``limits``
        ((low, high), or None: the stack's percentiles), for the operations made under other
        limits than :func:`recorded_contrast`'s (``emb``'s); called once per such limits.
        Without it every operation is replayed on ``emb``, and one made under other limits
        of the user's gets a note.

    Returns
    -------
    ReplayResult
        Labels (Z, Y, X), starting from the session's ``base`` (else zeros), with the dtype
        of the session's labels (uint32 when it has none).

    Raises
    ------
    SessionError
        The session does not fit the stack (:func:`check_image`) or holds SAM 2 operations
        (:func:`check_replayable`).
    """
    from napari_sam.annotation import apply_objects
    from napari_sam.trace import propagation_trace

    check_replayable(session)
    shape = tuple(int(s) for s in emb.shape[:3])
    check_image(session, shape)
    dtype = session.labels.dtype if session.labels is not None else np.dtype(np.uint32)
    labels = (np.zeros(shape, dtype) if session.base is None
              else np.array(session.base, dtype=dtype, copy=True))
    main, predictor = emb, emb.predictor
    ids, notes, traced = [], [], []
    kept = {recorded_contrast(session): main}
    for i, op in enumerate(session.operations):
        want = op_contrast(op)
        if embed is not None and not any(_same_limits(want, k) for k in kept):
            kept[want] = embed(want)
        emb = next((e for k, e in kept.items() if _same_limits(want, k)), main)
        note = None if embed is not None else _contrast_note(i, want, emb)
        if note:
            notes.append(note)
        if op["kind"] == "slice":
            objects = _slice_objects(op, labels, emb, predictor, getattr(emb, "stack", None))
        else:
            objects, res = _volume_objects(op, emb, None)
            names = {int(k): int(v) for (k, _), v in zip(op["written"], op["ids"])}
            annotated = {int(k): [r["slice"] for r in items] for k, items in op["prompts"].items()}
            part = propagation_trace(res.labels, getattr(emb, "stack", None), res.scores,
                                     {k: v for k, v in res.stop_reasons.items() if k in names},
                                     annotated, ids=names)
            traced.extend(part["objects"])
        commit = apply_objects(labels, objects, overwrite=bool(op["overwrite"]))
        ids.append(list(commit.ids))
        if list(commit.ids) != [int(v) for v in op["ids"]]:
            notes.append(f"operation {i + 1} wrote {for_count(len(commit.ids), 'label')} "
                         f"{commit.ids}, the session "
                         f"recorded {op['ids']}")
        if progress is not None:
            progress(i + 1, len(session.operations))
    trace = {"format": 1, "n_slices": shape[0], "objects": traced}
    return ReplayResult(labels, ids, notes, trace)
