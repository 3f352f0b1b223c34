"""Whether a job of the annotation session fits in the memory free here, checked before it
starts (a :class:`~napari_sam.annotate.errors.UserError` that says so with numbers and what to
do, instead of the job being started).

Under a memory limit (a cluster job's cgroup, a container) an allocation that does not fit is
not refused with a ``MemoryError``: the kernel's out-of-memory killer ends the whole process,
napari with the user's unsaved labels. So each job that can hold much memory is measured
first against :func:`napari_sam.memory.available_memory` (the machine's free memory, the room
under the process's cgroup limit and under ``ulimit -v``):

- embedding slices whose embeddings stay in memory (:func:`embedding_problem`): a large 2D
  image in tiles keeps every tile's embedding (an 8000 x 8000 image and the demo model: 1764
  tiles of 1 MiB), unless an embedding store keeps them on disk;
- propagating objects (:func:`propagation_problem`): the propagated label volume and the
  preview drawn from it, besides the embeddings the propagation reaches;
- segment everything (:func:`segment_everything_problem`): on a stack, the slices' label
  volumes linked (and, propagated, the objects' volumes); on one slice of a stack, that
  slice's masks (the new labels layer of the whole stack is zeros the system gives when
  touched: Session 42 measured 0.3 GB for a slice of a 300 x 1024 x 1024 stack, not 1.3 GB).

The bytes per voxel are measured (docs/benchmarks.md, Session 42); they are rounded up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_sam import memory
from napari_sam.words import size_words

__all__ = ["LABELS_BYTES_PER_PIXEL", "PROPAGATION_BYTES_PER_VOXEL", "SEGMENT_EVERYTHING_BYTES",
           "SEGMENT_EVERYTHING_BYTES_PER_PIXEL", "SEGMENT_EVERYTHING_BYTES_PER_VOXEL",
           "MIN_TILES_CACHE_BYTES", "embedding_bytes", "embedding_problem", "memory_problem",
           "propagation_problem", "segment_everything_problem", "tiles_cache_bytes"]

#: Peak bytes per voxel of the stack above what the dock held before, of a propagation
#: (the result's label volume, the preview drawn from it; Session 42: 1.2 measured for one
#: object, uint8 labels), besides the embeddings it computes.
PROPAGATION_BYTES_PER_VOXEL = 2
#: Peak bytes per voxel of segment everything on a whole stack, with and without the
#: propagation of the linked objects, and per pixel of the slice on one slice of a stack;
#: Session 42 measured 13.4 linked and 15.5 propagated (30 objects; the CLI's ``auto``
#: counts 24 for many), and a working memory of 0.4-0.5 GB.
SEGMENT_EVERYTHING_BYTES_PER_VOXEL = {"propagated": 24, "linked": 16, "slice": 16}
SEGMENT_EVERYTHING_BYTES = 500_000_000
#: That working memory scales with the slice: 0.4-0.5 GB was measured on 768 x 768 slices
#: (about 850 bytes per pixel); a small slice's is counted so, at least 50 MB, at most
#: :data:`SEGMENT_EVERYTHING_BYTES` (a 64 x 64 stack was refused for "500 MB" with 450 MB free)
SEGMENT_EVERYTHING_BYTES_PER_PIXEL = 850
#: Peak bytes per pixel of a slice at the first commit into a new labels layer (its uint32
#: data, what napari makes of a 2D layer to show it, the commit's masks; Session 42: 0.6 GB
#: for an 8000 x 8000 image): left free by an embedding, so that clicks can be committed.
LABELS_BYTES_PER_PIXEL = 10
#: The least :func:`tiles_cache_bytes` gives (two slices of 8 tiles of SAM ViT-B).
MIN_TILES_CACHE_BYTES = 64 << 20
#: Bytes of one slice's embedding kept in memory per embedding cell (256 float32 channels).
_CELL_BYTES = 256 * 4


def _gb(n: int) -> str:
    """``n`` bytes in words: "1.8 GB", "51 MB" (no tenths from 10 MB), "0.2 MB", "40.0 kB"
    (:func:`~napari_sam.words.size_words`; was "0.0 MB" under 50 kB)."""
    return f"{n / 1e6:.0f} MB" if 1e7 <= n < 1e9 else size_words(n)


def tiles_cache_bytes() -> int:
    """The bytes of tile embeddings a tiled image keeps in memory
    (:class:`napari_sam.tiled_stack.TiledStackEmbeddings`' ``cache_bytes``): its default
    (1 GiB), or half the memory free now where that is less (at least
    :data:`MIN_TILES_CACHE_BYTES`), so that an embedding store keeps the rest on disk."""
    from napari_sam.tiled_stack import DEFAULT_CACHE_BYTES

    free = memory.available_memory()
    if free is None:
        return DEFAULT_CACHE_BYTES
    return int(min(DEFAULT_CACHE_BYTES, max(MIN_TILES_CACHE_BYTES, free // 2)))


def memory_problem(need: int, what: str, remedies: Sequence[str]) -> str | None:
    """The refusal of a job that needs about ``need`` bytes more than is free now, else None
    (also where the free memory cannot be read: not Linux).

    Parameters
    ----------
    need : int
        Bytes the job will hold at its peak, above what the process holds now.
    what : str
        The job, e.g. "Segment everything on the whole 300 x 1024 x 1024 stack".
    remedies : sequence of str
        What the user can do instead, most helpful first.
    """
    free = memory.available_memory()
    if free is None or need <= free:
        return None
    ways = "; ".join([*remedies, "or close other programs and images"] if remedies else
                     ["close other programs and images"])
    return (f"Not started: {what} needs about {_gb(need)} of memory, more than the "
            f"{_gb(free)} free here (or under napari's memory limit): out of memory, the system "
            f"could close napari. Instead: {ways}. Nothing was changed: your labels and "
            "prompts are kept.")


def _shape_words(shape: Sequence[int]) -> str:
    return " x ".join(str(int(s)) for s in shape)


def embedding_bytes(emb, indices: Sequence[int], store: bool) -> int:
    """Bytes the embeddings ``emb`` will hold in memory once the slices ``indices`` (not
    embedded yet) are, beyond what they hold now: each slice (each tile of it, tiled) in
    float32, up to the number of slices kept in memory; with an embedding ``store`` a tiled
    image keeps at most its ``cache_bytes`` in all. SAM 2's slice embeddings count nothing
    here (they are small and few)."""
    model = getattr(emb, "model", None)
    size = getattr(model, "embedding_size", None)
    if size is None or not len(indices):
        return 0
    per_cell = int(size) ** 2 * _CELL_BYTES
    tiling = getattr(emb, "tiling", None)
    if tiling is None:
        held = int(emb.in_memory)
        return (min(held + len(indices), int(emb.cache_size)) - held) * per_cell
    held, most = int(emb.bytes_in_memory), int(emb.window_cache) * len(tiling) * per_cell
    after = min(held + len(indices) * len(tiling) * per_cell, max(held, most))  # (the LRUs)
    if store:
        after = min(after, max(held, int(emb.cache_bytes)))
    return after - held


def embedding_problem(emb, indices: Sequence[int], store: bool) -> str | None:
    """Why embedding the slices ``indices`` of ``emb`` would not fit in memory with room
    left for the first commit's labels (:data:`LABELS_BYTES_PER_PIXEL` of a slice; None: it
    fits); see :func:`embedding_bytes`."""
    need = embedding_bytes(emb, indices, store)
    if not need:
        return None
    tiling = getattr(emb, "tiling", None)
    shape = tuple(int(s) for s in emb.shape)
    need += shape[1] * shape[2] * LABELS_BYTES_PER_PIXEL
    image = (_shape_words(shape[1:3]) + " image" if shape[0] == 1 else
             f"{len(indices)} of the {shape[0]} slices of this {_shape_words(shape[1:3])} "
             "stack")
    remedies = []
    if tiling is not None:
        what = (f"Embedding this {image} in {len(tiling)} tiles (kept in memory, with room "
                "for its labels)")
        if not store:
            remedies.append("set an 'Embedding store' (a folder on disk: the tiles' embeddings "
                            f"go there and at most {_gb(int(emb.cache_bytes))} of them stay "
                            "in memory)")
        remedies.append("untick 'Tile large images' (the image embedded whole, shrunk to the "
                        "model input)")
    else:
        what = f"Embedding {image}"
        remedies.append("compute fewer slices (click on the slices you annotate)")
    remedies.append("crop the image (a smaller region, fewer slices)")
    return memory_problem(need, what, remedies)


def propagation_problem(shape: Sequence[int], what: str, embedding: int = 0) -> str | None:
    """Why propagating objects through a stack of ``shape`` (Z, Y, X) would not fit in
    memory (None: it fits); ``embedding``: bytes of the embeddings it will compute and keep
    (:func:`embedding_bytes`)."""
    voxels = int(np.prod([int(s) for s in shape], dtype=np.int64))
    need = voxels * PROPAGATION_BYTES_PER_VOXEL + int(embedding)
    return memory_problem(
        need, f"{what} through this {_shape_words(shape)} stack",
        ["crop the stack (a smaller region, fewer slices) and propagate there",
         "commit what is shown first (its labels are then kept) and free the memory other "
         "layers hold (remove the layers you do not need)"])


def segment_everything_problem(shape: Sequence[int], whole_stack: bool,
                               propagate: bool, embedding: int = 0) -> str | None:
    """Why Segment everything on a stack of ``shape`` (Z, Y, X) would not fit in memory
    (None: it fits): on the ``whole_stack`` (its objects ``propagate``-d or only linked)
    or on one slice (its masks and labels); ``embedding``: bytes of the
    embeddings it will compute and keep (:func:`embedding_bytes`)."""
    shape = [int(s) for s in shape]
    voxels = int(np.prod(shape, dtype=np.int64))
    working = min(SEGMENT_EVERYTHING_BYTES,
                  max(50_000_000, SEGMENT_EVERYTHING_BYTES_PER_PIXEL * shape[1] * shape[2]))
    if not whole_stack:
        key, what = "slice", f"Segment everything on a slice of this {_shape_words(shape)} stack"
        voxels = shape[1] * shape[2]  # (the layer of the stack: untouched zeros, no memory)
        remedies = ["crop the image (a smaller region)"] if working == SEGMENT_EVERYTHING_BYTES else []
    else:
        key = "propagated" if propagate else "linked"
        what = (f"Segment everything on the whole {_shape_words(shape)} stack"
                + (", its objects propagated," if propagate else ""))
        remedies = ["pick 'current slice' in 'Where' to segment the slices you need"]
        if propagate:
            linked = (voxels * SEGMENT_EVERYTHING_BYTES_PER_VOXEL["linked"] + working
                      + int(embedding))
            remedies.insert(0, "untick 'Propagate objects through the stack' (the slices' "
                               f"objects linked only: about {_gb(linked)})")
        remedies.append("crop the stack (a smaller region, fewer slices), or segment it "
                        "outside napari with napari-sam auto --no-propagate (docs/cli.md: "
                        "its memory stays the same for any number of slices)")
    need = voxels * SEGMENT_EVERYTHING_BYTES_PER_VOXEL[key] + working + int(embedding)
    return memory_problem(need, what, remedies)
