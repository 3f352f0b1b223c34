"""The ``segment`` job: prompted objects propagated through each stack
(:func:`napari_sam.volume.segment_volume`; with ``method="sam2"`` SAM 2.1's memory,
:mod:`napari_sam.batch.sam2_runner`), or a napari session replayed; and the table of its
parameters (:data:`~napari_sam.batch.segment_options.SEGMENT_OPTIONS`, in its own module so
that the command line is built from it without loading torch).

The path of a job: :func:`run_segment` opens the input (:mod:`napari_sam.io` readers),
computes its embeddings (:mod:`napari_sam.embeddings`), propagates (:mod:`napari_sam.volume`)
and, once that returns, writes the labels and their output metadata (:mod:`napari_sam.io`
writers, through :func:`napari_sam.batch.label_writing.finish_labels`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from napari_sam.batch.context import Context, Job
from napari_sam.batch.embedding_stores import stack_embeddings
from napari_sam.batch.jobs import work_dir
from napari_sam.batch.label_writing import finish_labels, finish_propagation, say_lost_objects
from napari_sam.batch.progress import JobProgressBar, ObjectSliceBar
from napari_sam.batch.reading import (
    announce_colour_planes,
    announce_constant_prompt_slices,
    open_image,
    open_session_image,
)
from napari_sam.batch.sam2_runner import run_segment_sam2
from napari_sam.batch.saved_work import saved_embeddings
from napari_sam.batch.segment_options import (  # noqa: F401 - the names' old home
    SAM2_OPTIONS,
    SEGMENT_KEYS,
    SEGMENT_OPTIONS,
    SegmentOption,
)


def run_segment(job: Job, ctx: Context, model) -> dict:
    """Run a ``segment`` job: open the input, compute its embeddings, propagate the prompts
    (``segment_volume``), then write the labels and their output metadata. A session file
    is replayed instead (:func:`_replay_session`). Returns ``{"objects": n}``."""
    from napari_sam.volume import segment_volume
    if not job.prompts:
        # a movie's prompts may all be at later time points (none at t=0, which
        # runners.run_command gives the first run): opening it raises MovieOfVolumes, so
        # each time point runs with its own
        open_image(job.input, ctx, check=False)
        raise ValueError(
            "no prompts for this file in the prompts file (add rows with its name in the 'file' "
            "column, or rows without a file that apply to every input)"
        )
    if getattr(job.prompts, "session", None) is not None:
        return _replay_session(job, ctx, model, job.prompts.session)
    method = ctx.params.get("method") or getattr(model, "family", "sam1")
    if method == "sam2":
        return run_segment_sam2(job, ctx, model, open_image(job.input, ctx, check=False))
    from napari_sam.models.registry import require_family

    require_family(model, "sam1", "segment --method sam1")
    opened = open_image(job.input, ctx, check=False)  # (run_job checked it)
    announce_colour_planes(job, ctx, opened)
    constant = announce_constant_prompt_slices(job, ctx, opened)
    params = {k: v for k, v in ctx.params.items() if k in SEGMENT_KEYS and v is not None}
    params.update({k: None for k, v in params.items() if v == "off"})  # a rule disabled
    if "axis_kind" not in params:  # a time series propagates along t
        params["axis_kind"] = "t" if opened.label_axes.startswith("T") else "z"
    emb = stack_embeddings(job, ctx, model, opened)
    resume = saved_embeddings(emb, work_dir(job))  # what an interrupted run computed
    bar = ObjectSliceBar(ctx, f"{job.name}: propagate", len(emb))
    try:
        # lost objects are said below as notes, not as Python warnings
        res = segment_volume(emb, job.prompts, progress=bar, warn_lost=False, **params)
    finally:
        bar.close()
    say_lost_objects(job, ctx, res.lost)
    extra = {"decoder_calls": int(res.decoder_calls)}
    if constant:
        extra["constant_prompt_slices"] = constant
    if getattr(emb, "tiling", None) is not None:
        _say_low_scores(job, ctx, res, emb.tiling.window)
    info = finish_propagation(job, ctx, model, opened, res, extra)
    return info if resume is None else {**info, "resume": resume}


def _say_low_scores(job: Job, ctx: Context, res, window: int) -> None:
    """On a tiled image, say (unless quiet) which clicked objects' masks score low on their
    prompted slice: a click deep inside an object larger than a tile gives a sliver (the
    tiles around it see no edge), as the dock says after such a click."""
    from napari_sam.annotate.slice_preview import LOW_SCORE

    low = []
    for oid, items in sorted(job.prompts.items()):
        if any(e.get("box") is not None for e in items):
            continue
        clicked = {int(e["slice"]) for e in items if e.get("points")}
        scores = [res.scores.get(oid, {}).get(z) for z in sorted(clicked)]
        worst = min((s for s in scores if s is not None), default=None)
        if worst is not None and worst < LOW_SCORE:
            low.append(f"{oid} ({worst:.2f})")
    if low and not ctx.quiet:
        from tqdm.auto import tqdm

        what = (f"the mask of object {low[0]} scores" if len(low) == 1 else
                f"the masks of objects {', '.join(low)} score")
        tqdm.write(f"napari-sam: note: {job.name}: {what} low on the clicked slice in a tiled "
                   f"image (windows of {window} px): an object larger than a tile gives a "
                   "sliver there; give a box over all of it instead (a box larger than a tile "
                   "is decoded zoomed out)", file=sys.stderr)


def _replay_session(job: Job, ctx: Context, model, sess) -> dict:
    """``segment --prompts session.json``: replay the session's operations (the GUI's
    commits, in order) on this input; the sidecar says per object what changed from the
    session's labels, and holds the propagation trace. Its embeddings are kept in the work
    folder as a prompts file's are: a rerun after an interrupted replay reads them back and
    its line says so (``resumed: kept 3 of 6 slice embeddings ...``), its ``"resume"``
    record (:func:`~napari_sam.batch.saved_work.saved_embeddings`)."""
    from napari_sam import session as S

    S.check_replayable(sess)  # before any embedding is computed
    opened = open_session_image(job, ctx, sess)  # (a movie: MovieOfVolumes, per time point)
    if sess.time_points is not None:  # a movie's session on one volume
        opened.stack.release()
        raise ValueError(
            f"{sess.path.name if sess.path else 'the session'} is the session of a movie of "
            f"{sess.time_points} time points, and {job.input.name} is not a movie; replay it "
            "on the movie it was made on (a TZYX file)")
    # tiled as the dock was when the clicks were made (untiled for older sessions), and with
    # the contrast limits its model saw (the layer's, once the user set them)
    tiling = S.recorded_tiling(sess)
    emb = stack_embeddings(job, ctx, model, opened, tiling=tiling,
                           contrast_limits=S.recorded_contrast(sess))
    resume = saved_embeddings(emb, work_dir(job))  # what an interrupted replay computed

    def embed(limits):  # operations made under other limits (the contrast changed meanwhile)
        return stack_embeddings(job, ctx, model, opened, tiling=tiling, note=False,
                                contrast_limits=limits)

    bar = JobProgressBar(ctx, f"{job.name}: replay", len(sess.operations), unit="commit")
    try:
        res = S.replay(sess, emb, progress=bar, embed=embed)
    finally:
        bar.close()
    extra: dict[str, Any] = {"session": str(sess.path), "trace": res.trace,
                             "replay_notes": res.notes}
    same_image = getattr(job.prompts, "same_image", None)  # (a movie's time point: its hash)
    if same_image is None:
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

            if lines:
                lines.append(_why_changed(same_image, same_model, _run_differences(
                    sess, emb.predictor, emb)))
            for line in lines or ["every object as in the session"]:
                tqdm.write(f"  {job.name}: {line}", file=sys.stderr)
    info = finish_labels(job, ctx, model, opened, res.labels, None, extra)
    opened.stack.release()
    return info if resume is None else {**info, "resume": resume}


def _run_differences(sess, predictor, emb=None) -> list[str]:
    """How the replay's device, precision and contrast limits (``emb``'s, the model's input)
    differ from those the session recorded (float rounding moves a few pixels:
    docs/sessions.md; other limits move edges)."""
    out = []
    recorded = sess.image.get("embedding_contrast_limits")
    used = getattr(emb, "contrast_limits", None)
    if recorded and used is not None and not np.allclose(recorded, used, rtol=1e-6):
        out.append(f"the model seeing contrast limits {float(used[0]):g}-{float(used[1]):g} "
                   f"(the session's: {float(recorded[0]):g}-{float(recorded[1]):g})")
    recorded = sess.model.get("precision")
    used = getattr(predictor, "precision", None)
    if recorded and used and str(recorded) != str(used):
        out.append(f"precision {used} (the session's: {recorded})")
    recorded = str(sess.model.get("device") or "").split(":")[0]
    used = str(getattr(predictor, "device", "") or "").split(":")[0]
    if recorded and used and recorded != used:
        out.append(f"device {used} (the session's: {recorded})")
    return out


def _why_changed(same_image: bool, same_model: bool, run: list[str]) -> str:
    """What a replay's changed objects most likely come from: another image or model, the
    device, precision or contrast limits (``run``, :func:`_run_differences`), else hand
    painting."""
    if same_image and same_model and not run:
        return ("(the same image, model, device and precision: a changed object is most "
                "likely one corrected by hand in napari, with the brush or eraser; painting "
                "is not replayed)")
    other = [w for w, differs in (("another image", not same_image),
                                  ("another model", not same_model)) if differs]
    return ("(replayed with " + "; ".join(other + run) + ": the model decodes its prompts "
            "anew; corrections painted by hand are not replayed either)")
