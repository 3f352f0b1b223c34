"""The ``embed`` job: every slice's embedding into a resumable zarr store beside the outputs."""

from __future__ import annotations

import os

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.embedding_stores import announce_tiling, embed_progress_bar, stack_tiling
from napari_sam.batch.jobs import check_input_unchanged
from napari_sam.batch.label_writing import model_record, summary_info
from napari_sam.batch.reading import announce_colour_planes, open_image
from napari_sam.batch.saved_work import embeddings_record


def run_embed(job: Job, ctx: Context, model) -> dict:
    """Run an ``embed`` job: encode every slice (tiled per ``ctx.tiling``) into
    ``.<output>.partial``, rename it to the output, then write its output metadata. Returns
    ``{"objects": n_slices, "resume": what it read back of an interrupted run's store}``."""
    from napari_sam.tiled_stack import embed

    opened = open_image(job.input, ctx, check=False)  # (run_job checked it)
    announce_colour_planes(job, ctx, opened)
    partial = job.output.with_name(f".{job.output.name}.partial")
    tiling = stack_tiling(ctx, model, opened.stack.shape)
    emb = embed(opened.stack, model, store=partial, batch_size=ctx.batch_size,
                device=ctx.device, cache_size=2, cache_bytes=1, tiling=tiling)
    announce_tiling(job, ctx, emb)
    bar = embed_progress_bar(ctx, job, len(emb), tiling)
    try:
        emb.compute(progress=bar)
    finally:
        bar.close()
        opened.stack.release()
    n = len(emb)
    resume = embeddings_record(emb)  # (read back from an interrupted run's .partial store)
    group_attrs = {"contrast_limits": list(emb.contrast_limits), "axes": opened.label_axes,
                   "shape": list(opened.stack.shape)}
    import zarr

    zarr.open_group(str(partial), mode="a").attrs.update({"napari_sam": group_attrs})
    read = check_input_unchanged(job)  # (embeddings of data the input no longer holds: none)
    if job.output.exists():
        nio.remove_path(job.output)
    os.replace(partial, job.output)
    from napari_sam import __version__

    nio.write_output_metadata(
        job.output, model=model_record(ctx, model), version=__version__,
        parameters=ctx.signature(), objects=[], input_path=job.input, input_record=read,
        extra={"slices": n, "embedding_size": int(model.embedding_size),
               "contrast_limits": list(emb.contrast_limits), "image_shape": list(opened.stack.shape),
               "encoder_calls": emb.encoder_calls,
               "tiling": None if tiling is None else tiling.key(),
               **({"channel_not_used": opened.channel_note} if opened.channel_note else {}),
               **({"file_axes": opened.file_axes, "axes_overridden": opened.axes_note}
                  if opened.axes_note else {})},
    )
    info = {"objects": n, **summary_info(opened)}
    return info if resume is None else {**info, "resume": resume}


def blocks_earlier(partial, blocks) -> dict:
    """What an interrupted run had left of a blocked ``embed`` job (``--block-slices``), as
    its final task's ``earlier`` record: the job's line counts only the slices its blocks
    skipped (their embeddings were in the ``.partial`` store already), not those the blocks
    computed in this run, which the store holds by the time :func:`run_embed` reads it back
    (a first run said ``resumed: kept 5 of 5 slice embeddings an interrupted run
    finished``).

    Parameters
    ----------
    partial : os.PathLike or str
        The job's ``.<output>.partial`` store (its ``slice_hash`` array: one per slice).
    blocks : list of dict
        ``embed_block_task``'s results: ``"hashes"`` ``{slice: hash}`` of the slices each
        block computed.

    Returns
    -------
    dict
        A resume record (:mod:`napari_sam.batch.saved_work`) of ``"slice embedding"``.
    """
    import zarr

    n = int(zarr.open_group(str(partial), mode="r")["slice_hash"].shape[0])
    computed = {int(z) for b in blocks for z in (b.get("hashes") or {})}
    return {"unit": "slice embedding", "of": n, "kept": n - len(computed), "discarded": None}
