"""The ``segment --method sam2`` job: prompted objects carried through each stack by SAM 2.1's
memory (:func:`napari_sam.sam2_volume.segment_volume_sam2`), written like ``segment``'s
SAM 1 outputs (labels and output metadata with stop reasons, through
:func:`napari_sam.batch.label_writing.finish_propagation`).

SAM 2 needs no embedding store: each slice is encoded as the propagation reaches it, so a
job holds its labels, the memory bank (bounded) and the last slice's features. An
interrupted job leaves no output and is run again in full by the next run (complete
outputs are skipped).
"""

from __future__ import annotations

import sys

from napari_sam.batch.context import Context, Job
from napari_sam.batch.label_writing import finish_propagation, say_lost_objects
from napari_sam.batch.progress import JobProgressBar
from napari_sam.batch.reading import (
    OpenedImage,
    announce_colour_planes,
    announce_constant_prompt_slices,
)
from napari_sam.batch.saved_work import recomputed_in_full
from napari_sam.batch.segment_options import SAM2_KEYS  # noqa: F401 - its old home


def check_sam2_input(job: Job, opened: OpenedImage) -> None:
    """ValueError for an input SAM 2 propagation cannot take: one with channels."""
    shape = tuple(int(s) for s in opened.stack.shape)
    if len(shape) == 4:
        raise ValueError(
            f"segment --method sam2 needs single-channel slices, but {job.input.name} has "
            f"{shape[-1]} channels per slice (shape {shape}); choose one with --channel N "
            "(0-based), or use --method sam1, which embeds RGB slices")


def run_segment_sam2(job: Job, ctx: Context, model, opened: OpenedImage) -> dict:
    """Propagate ``job``'s prompts with SAM 2.1 and write the labels; ``{"objects": n,
    "resume": nothing kept}`` (:func:`~napari_sam.batch.saved_work.recomputed_in_full`)."""
    from napari_sam.models.registry import require_family
    from napari_sam.sam2_volume import segment_volume_sam2, unused_negative_notes

    require_family(model, "sam2", "segment --method sam2")
    check_sam2_input(job, opened)
    announce_colour_planes(job, ctx, opened)  # the file's notes, as SAM 1's segment says them
    constant = announce_constant_prompt_slices(job, ctx, opened)
    absent = ctx.params.get("stop_after_absent")
    bar = JobProgressBar(ctx, f"{job.name}: propagate (SAM 2)")
    try:
        res = segment_volume_sam2(opened.stack, job.prompts, model, progress=bar,
                                  stop_after_absent=None if absent in (None, 0, "off")
                                  else int(absent), warn_lost=False,
                                  warn_unused_negatives=False)
    finally:
        bar.close()
    # the notes SAM 2 would warn, asked for rather than caught: catching warnings would take
    # every warning of the process (other threads' too) while the job runs, and drop them
    notes = unused_negative_notes(job.prompts, tuple(int(s) for s in opened.stack.shape))
    if notes and not ctx.quiet:
        from tqdm.auto import tqdm

        for note in notes:
            tqdm.write(f"napari-sam: note: {job.name}: {note}", file=sys.stderr)
    say_lost_objects(job, ctx, res.lost)  # SAM 1's words (not the library's warning)
    info = finish_propagation(job, ctx, model, opened, res,
                              {"method": "sam2", "notes": notes,
                               **({"constant_prompt_slices": constant} if constant else {})})
    return {**info, "resume": recomputed_in_full(len(opened.stack))}
