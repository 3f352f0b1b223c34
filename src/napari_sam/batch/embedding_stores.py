"""Where a labels job's embeddings live: a reusable ``--embeddings`` store, else the job's work
folder; computing a stack's embeddings there with a progress bar; and the tiling of stacks with
large slices (``--tiling``, :func:`napari_sam.embed`), said in one line per tiled file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import output_path
from napari_sam.batch.jobs import work_dir
from napari_sam.batch.progress import JobProgressBar
from napari_sam.batch.reading import OpenedImage
from napari_sam.preprocess import contrast_limits_name

logger = logging.getLogger("napari_sam.batch")


#: bytes of embeddings a job keeps in memory (tiled: all windows together, >= 2 slices each)
CACHE_BYTES = 256 << 20


def cache_size(model) -> int:
    """Embeddings kept in memory: at most ~256 MB of them, at least 4."""
    e = int(model.embedding_size)
    per = 256 * e * e * 4
    return int(max(4, min(64, (256 << 20) // per)))


def stack_tiling(ctx: Context, model, shape, tiling="ctx"):
    """The :class:`napari_sam.tiling.Tiling` a stack of ``shape`` (Z, Y, X[, C]) is embedded
    with (``tiling``, default ``ctx.tiling``), or None (untiled)."""
    from napari_sam.tiling import choose_tiling

    spec = ctx.tiling if isinstance(tiling, str) and tiling == "ctx" else tiling
    return choose_tiling(tuple(shape)[1:3], int(model.img_size), spec)


def tiling_note(tiling) -> str:
    """One line saying how slices are tiled, e.g. "tiling 4096 x 4096 slices in 441 windows
    of 256 px (halo 32)"."""
    h, w = tiling.image_shape
    return (f"tiling {h} x {w} slices in {len(tiling)} windows of {tiling.window} px "
            f"(halo {tiling.halo})")


def announce_tiling(job: Job, ctx: Context, emb) -> None:
    """The one-line note on stderr when ``emb`` is tiled (nothing when quiet)."""
    tiling = getattr(emb, "tiling", None)
    if tiling is None or ctx.quiet:
        return
    from tqdm.auto import tqdm

    tqdm.write(f"napari-sam: {job.name}: {tiling_note(tiling)}", file=sys.stderr)


def user_embeddings(job: Job, ctx: Context, model) -> Path | None:
    """The ``--embeddings DIR`` store of this input, when it can be reused as is.

    Only a complete store (per its sidecar) made from this very input file with this very model
    and the tiling this job uses is used; anything else would be rewritten by the embedding
    cache, so it is left alone.
    """
    if ctx.embeddings_dir is None:
        return None
    # in the subfolder ``embed`` mirrored this input into, as its labels are here
    store = output_path(job.input, ctx.embeddings_dir, "embed", subfolder=job.subfolder)
    meta = nio.read_output_metadata(store) or {}
    same_model = (meta.get("model") or {}).get("id") == getattr(model, "model_id", None)
    extra = meta.get("extra") or {}
    shape = extra.get("image_shape")
    if same_model and shape is not None:
        tiling = stack_tiling(ctx, model, shape)
        same_model = extra.get("tiling") == (None if tiling is None else tiling.key())
    if same_model and nio.is_complete(store, job.input):
        return store
    logger.warning("not reusing %s (missing, incomplete, or made from another input, model "
                   "or tiling)", store)
    return None


def embed_store(job: Job, ctx: Context, model) -> Path:
    """Embedding store of a labels job: a reusable ``--embeddings`` store, else its work folder
    (created here)."""
    store = user_embeddings(job, ctx, model)
    if store is None:
        store = work_dir(job) / "embeddings.zarr"
        store.parent.mkdir(parents=True, exist_ok=True)
    return store


def embed_progress_bar(ctx: Context, job: Job, slices: int, tiling) -> JobProgressBar:
    """The bar of an ``embed`` job: it counts slices, or tiles (slices x windows, what
    ``TiledStackEmbeddings.compute`` reports) when the stack is tiled."""
    if tiling is None:
        return JobProgressBar(ctx, f"{job.name}: embed", slices, unit="slice")
    return JobProgressBar(ctx, f"{job.name}: embed", slices * len(tiling), unit="tile")


def stack_embeddings(job: Job, ctx: Context, model, opened: OpenedImage, tiling="ctx",
                     note: bool = True, contrast_limits=None):
    """The stack's embeddings in the job's store (:func:`embed_store`), every slice computed
    (with a progress bar) or read back from the store; tiled per ``tiling`` (default
    ``ctx.tiling``; see :func:`napari_sam.embed`), said on stderr when ``note``. With
    ``contrast_limits`` (low, high; a session replayed with the layer's limits the dock's model
    saw) in a store of their own in the job's work folder: a store holds one contrast's, and
    the ``--embeddings`` store (the percentiles') is not rewritten."""
    from napari_sam.tiled_stack import embed

    if contrast_limits is None:
        store = embed_store(job, ctx, model)
    else:
        name = contrast_limits_name(float(v) for v in contrast_limits)
        store = work_dir(job) / f"embeddings-contrast-{name}.zarr"
        store.parent.mkdir(parents=True, exist_ok=True)
    emb = embed(opened.stack, model, store=store, batch_size=ctx.batch_size, device=ctx.device,
                cache_size=cache_size(model), cache_bytes=CACHE_BYTES,
                tiling=stack_tiling(ctx, model, opened.stack.shape, tiling),
                contrast_limits=contrast_limits)
    if note:
        announce_tiling(job, ctx, emb)
    bar = embed_progress_bar(ctx, job, len(emb), getattr(emb, "tiling", None))
    try:
        emb.compute(progress=bar)
    finally:
        bar.close()
    return emb
