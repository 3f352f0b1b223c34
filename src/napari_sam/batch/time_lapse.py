"""Movies of volumes (``TZYX``, ``TZCYX`` with ``--channel``) in ``auto`` and ``segment``: each
time point is segmented as its own volume, by the command's own runner, into a label file of
the work folder (``<work>/time_points/t000003_labels.tif`` with its sidecar), then the time
points are put together into one ``TZYX`` label file (:func:`run_time_lapse`).

Objects are not tracked between time points: each time point's labels come from its own
volume. ``auto`` numbers them on from the time point before (ids unique in the whole movie:
an id never names objects at two time points); ``segment`` keeps the prompts' object ids at
every time point (the user's ids: the same id at two time points is the user's choice). The
run says so in a note and the output metadata records it (``extra.time_lapse``). A dock's
session of the movie (``segment --prompts session.json``) replays each time point's own
commits on it (:func:`session_at`); a session of another image is refused
(:func:`refuse_other_session`).

Resuming: a time point's label file and sidecar are written once it is complete, and its
signature (:meth:`~napari_sam.batch.context.Context.signature` with ``time_point``, for
``segment`` its own prompts) tells whether a rerun can keep it, so an interrupted run over a
long movie goes on at the time point it reached (``auto`` also within it: the slices saved
in that time point's own work folder).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Mapping

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.jobs import check_input_unchanged, mark_partial, output_verdict, work_dir
from napari_sam.batch.label_writing import axes_record, label_metadata, model_record, summary_info
from napari_sam.batch.preview import preview_from_arrays
from napari_sam.batch.reading import open_image
from napari_sam.batch.rerun_reason import change_reason

#: How each command numbers the objects of a movie's time points (the note's words).
ID_WORDS = {
    "auto": ("numbered on from the time point before, so that no id names objects at two "
             "time points"),
    "segment": "the prompts' object ids at every time point",
}


def prompts_at(prompts: Mapping[int, list] | None, t: int) -> dict[int, list[dict]] | None:
    """The prompts of time point ``t`` (their ``time`` key removed), ``{object id: [slice
    prompt, ...]}`` without objects that have none there; None for None (``auto``)."""
    if prompts is None:
        return None
    out: dict[int, list[dict]] = {}
    for oid, items in prompts.items():
        mine = [{k: v for k, v in e.items() if k != "time"} for e in items
                if int(e.get("time", 0)) == t]
        if mine:
            out[int(oid)] = mine
    return out


class SessionAt(dict):
    """The prompts of one time point of a movie's session (``{object id: [prompt, ...]}``:
    what the time point's signature holds); ``session`` is that time point's session to
    replay (:func:`session_at`); ``base``, at a time point without commits, the labels the
    session's labels layer held there before its first commit (None: none); ``same_image``,
    whether the movie replayed is the one the session was made on (:func:`movie_hash`; its
    ``image.hash`` is the whole movie's, never one time point's; None: not known)."""

    session = None
    base = None
    same_image = None


class MovieSlices:
    """Read-only ``[i] -> (Y, X[, C])`` of the T * Z slices of a movie input, slice ``z`` of
    time point ``t`` at ``t * Z + z`` (as the dock's
    :class:`~napari_sam.annotate.movie_sessions.MovieFrames`), each time point opened once
    when first read; :meth:`release` closes them."""

    def __init__(self, job: Job, ctx: Context, n: int):
        self._job, self._ctx, self._open = job, ctx, {}
        first = self._stack(0)
        self._z = int(first.shape[0])
        self.shape, self.dtype = (n * self._z, *first.shape[1:]), first.dtype

    def _stack(self, t: int):
        if t not in self._open:
            self._open[t] = open_image(self._job.input, dataclasses.replace(
                self._ctx, time_point=t), check=False).stack
        return self._open[t]

    def __getitem__(self, i) -> np.ndarray:
        t, z = divmod(int(i), self._z)
        return np.asarray(self._stack(t)[z])

    def release(self) -> None:
        for stack in self._open.values():
            stack.release()


def movie_hash(job: Job, ctx: Context, n: int) -> str:
    """:func:`napari_sam.session.image_hash` of the movie ``job.input`` of ``n`` time points
    as the dock hashes a movie (:class:`MovieSlices`: up to 16 slices read): what a movie's
    session records as its ``image.hash``."""
    from napari_sam import session as S

    slices = MovieSlices(job, ctx, n)
    try:
        return S.image_hash(slices)
    finally:
        slices.release()


def session_at(session, t: int) -> SessionAt:
    """Time point ``t`` of a movie's session (:class:`napari_sam.session.Session` recording
    ``time_points``) as the session of one volume: its operations committed at ``t`` (in
    order), its labels and base at ``t``; empty (no operation there: the time point is not
    segmented, its labels are its base, else 0) when it has none."""
    from napari_sam import session as S

    ops = [op for op in session.operations if op.get("time_point") == t]
    out = SessionAt()
    if not ops:
        out.base = None if session.base is None or not session.base[t].any() else (
            session.base[t])
        return out
    image = {k: v for k, v in session.image.items()  # (the limits: the time point shown's)
             if k not in ("time_points", "time_axis", "embedding_contrast_limits")}
    out.session = dataclasses.replace(
        session, image=image, operations=ops,
        labels=None if session.labels is None else session.labels[t],
        base=None if session.base is None else session.base[t])
    out.update({int(k): v for k, v in S.legacy_prompts(out.session).items()})
    return out


def refuse_other_session(session, name: str, n: int) -> None:
    """Raise ``ValueError`` when the ``session`` (None: not one) replayed on the movie
    ``name`` of ``n`` time points was not made on a movie of ``n`` time points."""
    if session is None or session.time_points == n:
        return
    made = (f"a session of one volume (made on {session.image.get('name') or 'an image'})"
            if session.time_points is None else
            f"the session of a movie of {session.time_points} time points")
    raise ValueError(
        f"{session.path.name if session.path else 'the session'} is {made}, and {name} is a "
        f"movie of {n} time points; replay it on the image it was made on, or prompt this "
        "movie with a prompts file with a 't' column")


def session_channel(ctx: Context, session) -> Context:
    """``ctx`` reading the channel the ``session``'s dock segmented alone (its
    ``image.channel``) where no ``--channel`` is given, as each time point's replay reads it
    (:func:`~napari_sam.batch.reading.open_session_image`): the movie's label file is put
    together from the same reading (a TZCYX movie was refused there: "Pick one channel")."""
    channel = None if session is None else session.image.get("channel")
    if ctx.channel is None and isinstance(channel, int) and not isinstance(channel, bool):
        return dataclasses.replace(ctx, channel=channel)
    return ctx


def time_point_job(job: Job, ctx: Context, t: int, n: int, same_image: bool | None = None
                   ) -> tuple[Job, Context]:
    """The job and context of time point ``t`` of ``n``: its label file in the work folder,
    its own prompts (a session's: ``same_image``, whether the movie is the session's,
    :attr:`SessionAt.same_image`), its time point in the signature; no preview, no user's
    embedding store (made for a whole file), TIFF output."""
    folder = work_dir(job) / "time_points"
    session = getattr(job.prompts, "session", None)
    prompts = prompts_at(job.prompts, t) if session is None else session_at(session, t)
    if session is not None:
        prompts.same_image = same_image
    sub = Job(job.input, folder / f"t{t:06d}_labels.tif", prompts,
              job.subfolder, part=f"t={t} of {n}")
    sub_ctx = dataclasses.replace(ctx, time_point=t, preview=False, embeddings_dir=None,
                                  fmt="tif", suffix="_labels", prompts_key=None)
    return sub, sub_ctx.for_job(sub)


def run_time_lapse(job: Job, ctx: Context, model, runner: Callable[[Job, Context, object], dict],
                   n: int) -> dict:
    """Run ``runner`` (the command's runner of one input) on each of the ``n`` time points of
    ``job``'s movie, keeping the time points a run before finished with the same settings,
    then write the ``TZYX`` labels, their output metadata and preview. Returns the runner's
    kind of info: ``{"objects": total over the time points, "note": ..., "resume": ...}``,
    the last what it kept of an interrupted run or why it discarded it (a record of
    :mod:`napari_sam.batch.saved_work` counting time points; the input replaced since: its
    finished time points discarded, said, not "resumed")."""
    session = getattr(job.prompts, "session", None)
    refuse_other_session(session, job.input.name, n)
    ctx = session_channel(ctx, session)  # (the movie's labels are read as its time points)
    same = None if session is None else movie_hash(job, ctx, n) == session.image.get("hash")
    kept, ran = [], 0
    record = {"unit": "time point", "of": n, "kept": 0, "discarded": None}
    why, dropped = "", 0  # what changed since an interrupted run; its time points thrown away
    for t in range(n):
        sub, sub_ctx = time_point_job(job, ctx, t, n, same)
        if sub.prompts is not None and not sub.prompts:
            record["unprompted"] = record.get("unprompted", 0) + 1
            continue  # segment: no prompt at this time point, its labels stay 0
        verdict = output_verdict(sub.output, job.input, sub_ctx.signature())
        if verdict.state == "complete":
            kept.append(t)
            continue
        if verdict.state == "changed":  # a time point made from other data or settings
            why, dropped = why or change_reason(verdict), dropped + 1
        if kept and not ran:
            _say(ctx, f"{job.name}: {'time points' if len(kept) > 1 else 'time point'} "
                      f"{_span(kept)} kept from the run before (the same settings and "
                      f"prompts); going on at time point {t} of {n}")
        mark_partial(sub, sub_ctx)
        inner = runner(sub, sub_ctx, model).get("resume") or {}
        if inner.get("discarded") and not why:  # its slices, of other data or settings
            why = inner["discarded"]["why"]
            record["discarded"] = {**inner["discarded"], "unit": inner.get("unit", "slice")}
        if not ran and inner.get("kept"):
            record["within"] = {"at": f"time point {t}", "kept": inner["kept"],
                                "of": inner.get("of"), "unit": inner.get("unit", "slice")}
        ran += 1
    record["kept"] = len(kept)
    if dropped:
        record["discarded"] = {"why": why, "count": dropped}
    return {**_write_movie(job, ctx, model, n), "resume": record}


def _span(ts: list[int]) -> str:
    return f"{ts[0]}-{ts[-1]}" if len(ts) > 1 and ts[-1] - ts[0] == len(ts) - 1 else \
        ", ".join(map(str, ts))


def _say(ctx: Context, line: str) -> None:
    if not ctx.quiet:
        from tqdm.auto import tqdm

        tqdm.write(f"napari-sam: note: {line}", file=sys.stderr)


def _parts(job: Job, ctx: Context, n: int) -> list[dict]:
    """What each time point holds: its label file (None: no prompt there), its objects from
    its sidecar, and the offset its ids get in the movie's labels (``auto``: the largest id
    of the time points before; ``segment``: 0)."""
    parts, offset = [], 0
    for t in range(n):
        sub, _ = time_point_job(job, ctx, t, n)
        prompted = sub.prompts is None or bool(sub.prompts)  # segment: prompts at t
        meta = nio.read_output_metadata(sub.output) if prompted else None
        objects = list((meta or {}).get("objects") or [])
        top = max((int(o["id"]) for o in objects), default=0)
        parts.append({"t": t, "path": sub.output if meta else None, "objects": objects,
                      "base": getattr(sub.prompts, "base", None),  # (a session's, unprompted)
                      "offset": offset, "extra": (meta or {}).get("extra") or {},
                      "in_effect": (meta or {}).get("parameters_in_effect") or {}})
        if ctx.command == "auto":
            offset += top
    return parts


def _volumes(parts: list[dict], shape: tuple[int, ...]):
    """Each time point's (Z, Y, X) labels in the movie's ids, read one at a time."""
    for part in parts:
        if part["path"] is None:  # (a session's time point without commits: its base)
            base = part.get("base")
            yield np.zeros(shape[1:], np.uint32) if base is None else base.astype(np.uint32)
            continue
        vol = np.asarray(nio.read_image(part["path"]).data).astype(np.uint32)
        if part["offset"]:
            vol[vol > 0] += np.uint32(part["offset"])
        yield vol


def _write_movie(job: Job, ctx: Context, model, n: int) -> dict:
    """Put the time points' label files together into ``job.output`` (``TZYX``, the input's
    voxel size), with its output metadata and preview."""
    from napari_sam import __version__

    read = check_input_unchanged(job)
    first = open_image(job.input, dataclasses.replace(ctx, time_point=0), check=False)
    zyx = tuple(int(s) for s in first.label_shape)
    shape = (n, *zyx)
    parts = _parts(job, ctx, n)
    objects = [{**o, "id": int(o["id"]) + p["offset"], "time_point": p["t"]}
               for p in parts for o in p["objects"]]
    max_id = max((o["id"] for o in objects), default=0)
    meta = {**label_metadata(job, ctx, model), "time_points": n}
    unit = first.unit or "um"
    if nio.write_kind(job.output) in ("tiff", "ome-tiff"):
        pages = (page for vol in _volumes(parts, shape) for page in vol)
        nio.write_labels_stream(job.output, pages, shape=shape, max_id=max_id, axes="TZYX",
                                pixel_size=first.pixel_size, unit=unit, metadata=meta,
                                time_interval=first.time_interval)
    else:  # npy / zarr outputs are assembled in memory
        nio.write_labels(job.output, np.stack(list(_volumes(parts, shape))), axes="TZYX",
                         pixel_size=first.pixel_size, unit=unit, metadata=meta,
                         overwrite=True, time_interval=first.time_interval)
    record = _time_lapse_record(ctx, parts)
    axes = {**axes_record(ctx, first), "axes": "TZYX"}
    nio.write_output_metadata(
        job.output, model=model_record(ctx, model), version=__version__,
        parameters=ctx.signature(), objects=objects, input_path=job.input, input_record=read,
        extra={**axes, "time_lapse": record},
        parameters_in_effect=next((p["in_effect"] for p in parts if p["in_effect"]), None))
    note = (f"{n} time points, each segmented as its own volume: objects are not tracked "
            f"between time points (ids: {ID_WORDS[ctx.command]})")
    _say(ctx, f"{job.name}: {note}")
    if ctx.preview and parts[0]["path"] is not None:
        vol0 = next(_volumes(parts[:1], shape))
        preview_from_arrays(job, first, lambda z: vol0[z], len(parts[0]["objects"]))
    first.stack.release()
    return {"objects": len(objects),
            **summary_info(first, f"{n} time points, each its own volume: not tracked")}


def _time_lapse_record(ctx: Context, parts: list[dict]) -> dict:
    """``extra.time_lapse`` of a movie's output metadata: how ids are numbered, and per time
    point its objects, id offset, and what its own run recorded (lost objects, slices
    resumed, stop reasons, its propagation trace under the movie's ids: what ``napari-sam
    report`` plots per time point)."""
    keep = ("lost", "slices", "resumed_slices", "channel_not_used", "axes_overridden",
            "decoder_calls", "constant_prompt_slices", "stop_reasons")
    return {
        "time_points": len(parts),
        "tracked": False,
        "ids": "offset" if ctx.command == "auto" else "as prompted",
        "per_time_point": [
            {"t": p["t"], "objects": len(p["objects"]), "id_offset": p["offset"],
             "prompted": p["path"] is not None or ctx.command == "auto",
             **{k: p["extra"][k] for k in keep if k in p["extra"]},
             **_offset_trace(p["extra"].get("trace"), p["offset"])}
            for p in parts],
    }


def _offset_trace(trace, offset: int) -> dict:
    """``{"trace": trace}`` with its objects' ids as the movie's labels hold them (a time
    point's own ids plus ``offset``); {} without a trace."""
    if not trace:
        return {}
    objects = [{**o, "id": int(o["id"]) + offset} for o in trace.get("objects") or ()]
    return {"trace": {**trace, "objects": objects}}
