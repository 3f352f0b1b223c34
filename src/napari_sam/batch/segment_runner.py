"""The ``segment`` job: prompted objects propagated through each stack
(:func:`napari_sam.volume.segment_volume`; with ``method="sam2"`` SAM 2.1's memory,
:mod:`napari_sam.batch.sam2_runner`), or a napari session replayed; and the table of its
parameters (:data:`SEGMENT_OPTIONS`), the one list the command line is built from.

The path of a job: :func:`run_segment` opens the input (:mod:`napari_sam.io` readers),
computes its embeddings (:mod:`napari_sam.embeddings`), propagates (:mod:`napari_sam.volume`)
and, once that returns, writes the labels and their output metadata (:mod:`napari_sam.io`
writers, through :func:`napari_sam.batch.label_writing.finish_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_sam.batch.context import Context, Job
from napari_sam.batch.embedding_stores import stack_embeddings
from napari_sam.batch.label_writing import finish_labels, finish_propagation
from napari_sam.batch.progress import ProgressBar
from napari_sam.batch.reading import open_image
from napari_sam.batch.sam2_runner import run_segment_sam2


@dataclass(frozen=True)
class SegmentOption:
    """One keyword of :func:`napari_sam.volume.segment_volume` that a ``segment`` job passes on.

    Attributes
    ----------
    name : str
        The keyword (and the key in :attr:`Context.params <napari_sam.batch.Context>`).
    flag : str or None
        The ``napari-sam segment`` option, or None when only Python callers set it.
    kind : str
        How the command line parses it: ``"choice"`` (one of ``choices``), ``"fraction"`` (a
        number in [0, 1]), ``"fraction_or_off"`` (the same, or ``off``: the rule disabled),
        ``"nonneg_int"`` (a whole number >= 0).
    default : object
        The command line's default (None: ``segment_volume``'s own default applies).
    choices : tuple of str
    metavar, help : str or None
        The option's help on the command line.
    """

    name: str
    flag: str | None = None
    kind: str = "choice"
    default: Any = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    help: str | None = None


#: The parameters of ``segment`` jobs, in the order the command line lists them: the one list
#: the CLI builds its options from and :func:`run_segment` passes to ``segment_volume``.
SEGMENT_OPTIONS = (
    SegmentOption("mode", "--mode", "choice", "auto",
                  choices=("auto", "box", "box+mask", "points", "center"),
                  help="how each slice is prompted from the previous mask"),
    SegmentOption("axis_kind", "--axis-kind", "choice", None, choices=("z", "t"),
                  help="what the stack axis is (default: t for TYX inputs, else z)"),
    SegmentOption("iou_threshold", "--iou-threshold", "fraction", 0.5, metavar="F",
                  help="stop when the IoU with the previous slice's mask drops below F"),
    SegmentOption("min_area", "--min-area", "nonneg_int", 5, metavar="PX",
                  help="stop when the mask gets smaller than PX pixels"),
    SegmentOption("fade_fraction", "--fade-fraction", "fraction_or_off", None, metavar="F|off",
                  help="stop where the object's contrast with its surroundings falls below F "
                       "times its strongest contrast on its prompted slices (default: 0.5 "
                       "along z, off along t)"),
    SegmentOption("rebound_fraction", "--rebound-fraction", "fraction_or_off", None,
                  metavar="F|off",
                  help="stop where the object's contrast, having dimmed by more than F times "
                       "its contrast on its prompted slices, rises again by as much: the mask "
                       "ran into the next object (default: 0.05 along z, off along t)"),
    SegmentOption("claimed_fraction", "--claimed-fraction", "fraction_or_off", 0.5,
                  metavar="F|off",
                  help="stop where more than F of the mask lies on another object that is "
                       "fewer slices from its own prompt"),
    SegmentOption("max_slices", "--max-slices", "nonneg_int", None, metavar="N",
                  help="propagate at most N slices from each prompted slice"),
    SegmentOption("area_factor"),
    SegmentOption("min_score"),
    SegmentOption("motion"),
)
#: Keys of ``Context.params`` that ``segment`` passes to ``segment_volume``.
SEGMENT_KEYS = tuple(o.name for o in SEGMENT_OPTIONS)

#: ``segment``'s choice of propagation and SAM 2's own options (read by
#: :mod:`napari_sam.batch.sam2_runner`, not passed to ``segment_volume``).
SAM2_OPTIONS = (
    SegmentOption("method", "--method", "choice", None, choices=("sam1", "sam2"),
                  help="sam1: re-prompt each slice from the last mask, with the stop rules "
                       "above (SAM 1 models); sam2: carry objects through the stack with SAM "
                       "2.1's memory (SAM 2.1 models); default: the model's own"),
    SegmentOption("stop_after_absent", "--stop-after-absent", "nonneg_int", 2, metavar="N",
                  help="sam2: end an object's run after N slices in a row on which SAM 2 "
                       "finds it absent (0: track it to the ends of the stack)"),
)


def run_segment(job: Job, ctx: Context, model) -> dict:
    """Run a ``segment`` job: open the input, compute its embeddings, propagate the prompts
    (``segment_volume``), then write the labels and their output metadata. A session file
    is replayed instead (:func:`_replay_session`). Returns ``{"objects": n}``."""
    from napari_sam.volume import segment_volume

    if not job.prompts:
        raise ValueError(
            "no prompts for this file in the prompts file (add rows with its name in the 'file' "
            "column, or rows without a file that apply to every input)"
        )
    if getattr(job.prompts, "session", None) is not None:
        return _replay_session(job, ctx, model, job.prompts.session)
    method = ctx.params.get("method") or getattr(model, "family", "sam1")
    if method == "sam2":
        return run_segment_sam2(job, ctx, model, open_image(job.input, ctx))
    from napari_sam.models.registry import require_family

    require_family(model, "sam1", "segment --method sam1")
    opened = open_image(job.input, ctx)
    params = {k: v for k, v in ctx.params.items() if k in SEGMENT_KEYS and v is not None}
    params.update({k: None for k, v in params.items() if v == "off"})  # a rule disabled
    if "axis_kind" not in params:  # a time series propagates along t
        params["axis_kind"] = "t" if opened.label_axes.startswith("T") else "z"
    emb = stack_embeddings(job, ctx, model, opened)
    bar = ProgressBar(ctx, f"{job.name}: propagate", 2 * len(emb))
    try:
        res = segment_volume(emb, job.prompts, progress=bar, **params)
    finally:
        bar.close()
    return finish_propagation(job, ctx, model, opened, res,
                              {"decoder_calls": int(res.decoder_calls)})


def _replay_session(job: Job, ctx: Context, model, sess) -> dict:
    """``segment --prompts session.json``: replay the session's operations (the GUI's
    commits, in order) on this input; the sidecar says per object what changed from the
    session's labels, and holds the propagation trace."""
    from napari_sam import session as S

    S.check_replayable(sess)  # before any embedding is computed
    opened = open_image(job.input, ctx)
    # tiled as the dock was when the clicks were made (untiled for older sessions)
    emb = stack_embeddings(job, ctx, model, opened, tiling=S.recorded_tiling(sess))
    bar = ProgressBar(ctx, f"{job.name}: replay", len(sess.operations), unit="commit")
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
    info = finish_labels(job, ctx, model, opened, res.labels, None, extra)
    opened.stack.release()
    return info
