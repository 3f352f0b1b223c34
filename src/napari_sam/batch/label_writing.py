"""Writing a finished labels output: the label file (:mod:`napari_sam.io` writers), its output
metadata (model, parameters, objects) and, when asked, its preview."""

from __future__ import annotations

import sys
from collections.abc import Mapping

import numpy as np

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.jobs import check_input_unchanged
from napari_sam.batch.preview import preview_from_arrays
from napari_sam.batch.reading import OpenedImage
from napari_sam.words import for_count


def label_metadata(job: Job, ctx: Context, model) -> dict:
    """What a label file records about how it was made (stored in the file itself)."""
    from napari_sam import __version__

    return {
        "command": ctx.command,
        "model": ctx.model,
        "model_id": getattr(model, "model_id", None),
        "version": __version__,
        "input": job.input.name,
        "parameters": ctx.params,
    }


def model_record(ctx: Context, model) -> dict:
    """The model entry of the output metadata: name, id, whether it is the bundled demo
    model (also when loaded from its file by path; a checkpoint trained from it is not), and
    the precision the encoder and decoder ran in here (``--precision``, or what ``"auto"``
    chose on this machine and device)."""
    from napari_sam.device import precision_name, resolve_device, resolve_precision

    model_id = str(getattr(model, "model_id", ""))
    try:
        precision = precision_name(resolve_precision(ctx.precision, resolve_device(ctx.device)))
    except ValueError:  # not this machine's device (the run itself said so)
        precision = None
    if getattr(model, "family", "sam1") == "sam2":
        precision = "fp32"  # SAM 2.1 propagation runs in float32 whatever --precision says
    return {"name": ctx.model, "id": model_id or None,
            "is_demo": bool(getattr(model, "is_demo", False)), "precision": precision}


def default_points_per_batch(ctx: Context) -> int | None:
    """The points ``auto`` decodes per batch without ``--points-per-batch``: 64 on the CPU,
    256 on a GPU (what :mod:`napari_sam.automatic.crops` picks for its predictor's device);
    None where ``ctx.device`` is not this machine's."""
    from napari_sam.device import resolve_device

    try:
        return 64 if resolve_device(ctx.device).type == "cpu" else 256
    except ValueError:
        return None


def parameters_in_effect(ctx: Context, model, opened: OpenedImage) -> dict:
    """The ``auto`` values a run used where its parameters record a default: the filtering
    thresholds the model recommends (None given), the grid ``"auto"`` resolved for the slice
    size (the window's size where slices are tiled), the points decoded per batch (64 on
    the CPU, 256 on a GPU) and the rescue margin (off for stacks of several slices). Empty
    for other commands.

    Stored under ``parameters_in_effect`` in the output metadata, beside ``parameters`` (the
    resume signature, which stays as given)."""
    from napari_sam.automatic import auto_points_per_side, recommended_thresholds, rescue_margin_for
    from napari_sam.automatic.params import AutomaticParams

    if ctx.command != "auto":
        return {}
    params = ctx.params
    shape = tuple(opened.label_shape)
    n_slices = 1 if opened.is2d else int(shape[0])
    out = {k: (v if params.get(k) is None else params[k])
           for k, v in recommended_thresholds(model).items()}
    side = params.get("points_per_side", "auto")
    if side == "auto":  # per window where slices are tiled
        from napari_sam.batch.embedding_stores import stack_tiling

        tiling = stack_tiling(ctx, model, (n_slices, *shape[-2:]))
        h, w = shape[-2:]  # windows are the window's size, or the image's where it is smaller
        size = (h, w) if tiling is None else (min(h, tiling.window), min(w, tiling.window))
        side = auto_points_per_side(size)
    out["points_per_side"] = side
    out["points_per_batch"] = params.get("points_per_batch") or default_points_per_batch(ctx)
    margin = params.get("rescue_margin")
    out["rescue_margin"] = rescue_margin_for(
        AutomaticParams.rescue_margin if margin is None else margin, n_slices)
    return out


def axes_record(ctx: Context, opened: OpenedImage) -> dict:
    """How the input was read, for the output metadata: ``{"axes": "TYX", "axes_from":
    "metadata"}`` (the labels' axes; "metadata", "guessed" from the shape, or "--axes"):
    a stack read as ``ZYX`` was propagated along z, a ``TYX`` one along t; with
    ``"channel_not_used"`` (the note) where ``--channel`` was given and the file has none,
    and ``"file_axes"`` (the axes its metadata names) with ``"axes_overridden"`` (the note)
    where ``--axes`` reads it otherwise."""
    source = ("--axes" if ctx.axes is not None else
              "guessed" if opened.axes_guessed else "metadata")
    record = {"axes": opened.label_axes, "axes_from": source}
    if opened.channel_note:  # --channel N given, the file has no channel axis
        record["channel_not_used"] = opened.channel_note
    if opened.axes_note:  # --axes given, the file's metadata names other axes
        record.update(file_axes=opened.file_axes, axes_overridden=opened.axes_note)
    return record


def summary_info(opened: OpenedImage, *notes: str) -> dict:
    """What a runner returns besides ``"objects"`` for the batch's summary: ``{"note": ...}``
    (:attr:`~napari_sam.batch.reading.OpenedImage.summary_note`, then ``notes``), or {}.
    Handed on as it is known, so that the summary needs no read of the output metadata."""
    text = "; ".join(n for n in (opened.summary_note, *notes) if n)
    return {"note": text} if text else {}


def finish_labels(job: Job, ctx: Context, model, opened: OpenedImage, labels: np.ndarray,
                   scores: Mapping[int, float] | None, extra: Mapping | None = None) -> dict:
    """Write a labels output held in memory, its sidecar and preview (nothing when the input
    changed while it was read: :func:`~napari_sam.batch.jobs.check_input_unchanged`)."""
    from napari_sam import __version__

    read = check_input_unchanged(job)

    labels = labels[0] if opened.is2d and labels.ndim == 3 else labels
    nio.write_labels(job.output, labels, axes=opened.label_axes, pixel_size=opened.pixel_size,
                     unit=opened.unit or "um", metadata=label_metadata(job, ctx, model),
                     overwrite=True, time_interval=opened.time_interval)
    objects = nio.label_objects_summary(labels, scores)
    nio.write_output_metadata(job.output, model=model_record(ctx, model), version=__version__,
                      parameters=ctx.signature(), objects=objects, input_path=job.input,
                      input_record=read, extra={**axes_record(ctx, opened), **(extra or {})},
                      parameters_in_effect=parameters_in_effect(ctx, model, opened))
    if ctx.preview:
        if opened.is2d:
            preview_from_arrays(job, opened, lambda z: labels, len(objects))
        else:
            preview_from_arrays(job, opened, lambda z: labels[z], len(objects))
    return {"objects": len(objects), **summary_info(opened)}


def say_lost_objects(job: Job, ctx: Context, lost: dict[int, str]) -> None:
    """Say on stderr (unless quiet) which objects given prompts are not in the labels and
    why (:func:`napari_sam.volume.result.lost_notes`), one line per reason: what SAM 1 and
    SAM 2 propagation both say instead of a Python warning."""
    from napari_sam.volume.result import lost_notes

    if ctx.quiet:
        return
    from tqdm.auto import tqdm

    for note in lost_notes(lost):
        tqdm.write(f"napari-sam: note: {job.name}: {note}", file=sys.stderr)


def finish_propagation(job: Job, ctx: Context, model, opened: OpenedImage, res,
                       extra: dict) -> dict:
    """Write the labels of a propagation ``res`` (a :class:`napari_sam.volume.VolumeResult`
    of SAM 1 or SAM 2) with ``extra`` in their output metadata, plus the objects given
    prompts that are not in the labels (``"lost"``: {id: why}, {} when none) and, for a
    stack, each object's stop reasons and its propagation trace (what ``napari-sam report``
    plots); release the stack.
    Returns :func:`finish_labels`' info, its note naming the lost objects."""
    from napari_sam.trace import propagation_trace

    lost = {str(k): v for k, v in sorted(res.lost.items())}
    extra = {**extra, "lost": lost}
    scores = {oid: float(np.mean(list(s.values()))) for oid, s in res.scores.items() if s}
    if not opened.is2d:  # a 2D image has no propagation to report ("edge" both ways)
        extra = {**extra, "stop_reasons": {str(k): v for k, v in res.stop_reasons.items()}}
        annotated = {oid: [e["slice"] for e in items if not e.get("stop")]
                     for oid, items in job.prompts.items()}
        extra["trace"] = propagation_trace(res.labels, opened.stack, res.scores,
                                           res.stop_reasons, annotated)
    info = finish_labels(job, ctx, model, opened, np.asarray(res.labels), scores, extra)
    opened.stack.release()
    if lost:  # said in the summary; the file's line said why (the runners' notes)
        ids = ", ".join(lost)
        info.update(summary_info(opened, f"{for_count(len(lost), 'object')} {ids} "
                                         f"{for_count(len(lost), 'is', 'are')} "
                                         "not in the labels (\"lost\" in its sidecar says why)"))
    return info
