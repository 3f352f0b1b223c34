"""Where a labels job's embeddings live: a reusable ``--embeddings`` store, else the job's work
folder; and computing a stack's embeddings there with a progress bar."""

from __future__ import annotations

import logging
from pathlib import Path

from napari_sam import io as nio
from napari_sam.batch.context import Context, Job
from napari_sam.batch.inputs import stem_of
from napari_sam.batch.jobs import work_dir
from napari_sam.batch.progress import ProgressBar
from napari_sam.batch.reading import OpenedImage

logger = logging.getLogger("napari_sam.batch")


def cache_size(model) -> int:
    """Embeddings kept in memory: at most ~256 MB of them, at least 4."""
    e = int(model.embedding_size)
    per = 256 * e * e * 4
    return int(max(4, min(64, (256 << 20) // per)))


def user_embeddings(job: Job, ctx: Context, model) -> Path | None:
    """The ``--embeddings DIR`` store of this input, when it can be reused as is.

    Only a complete store (per its sidecar) made from this very input file with this very model
    is used; anything else would be rewritten by the embedding cache, so it is left alone.
    """
    if ctx.embeddings_dir is None:
        return None
    store = Path(ctx.embeddings_dir) / f"{stem_of(job.input)}.zarr"
    meta = nio.read_output_metadata(store) or {}
    same_model = (meta.get("model") or {}).get("id") == getattr(model, "model_id", None)
    if same_model and nio.is_complete(store, job.input):
        return store
    logger.warning("not reusing %s (missing, incomplete, or made from another input or model)",
                   store)
    return None


def embed_store(job: Job, ctx: Context, model) -> Path:
    """Embedding store of a labels job: a reusable ``--embeddings`` store, else its work folder
    (created here)."""
    store = user_embeddings(job, ctx, model)
    if store is None:
        store = work_dir(job) / "embeddings.zarr"
        store.parent.mkdir(parents=True, exist_ok=True)
    return store


def stack_embeddings(job: Job, ctx: Context, model, opened: OpenedImage):
    """The stack's embeddings in the job's store (:func:`embed_store`), every slice computed
    (with a progress bar) or read back from the store."""
    from napari_sam.embeddings import embed

    store = embed_store(job, ctx, model)
    emb = embed(opened.stack, model, store=store, batch_size=ctx.batch_size, device=ctx.device,
                cache_size=cache_size(model))
    bar = ProgressBar(ctx, f"{job.name}: embed", len(emb))
    try:
        emb.compute(progress=bar)
    finally:
        bar.close()
    return emb
