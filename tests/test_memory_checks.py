"""The dock's jobs are measured against the memory free here before they start
(napari_sam.annotate.memory_checks): under a cgroup's limit (a cluster job, a container) an
allocation that does not fit is not refused, the kernel kills napari with the user's labels.
The limit is faked through napari_sam.memory's readers (``memory_room``)."""

from __future__ import annotations

import numpy as np

from napari_sam.annotate.memory_checks import (
    LABELS_BYTES_PER_PIXEL,
    MIN_TILES_CACHE_BYTES,
    embedding_bytes,
    embedding_problem,
    propagation_problem,
    segment_everything_problem,
    tiles_cache_bytes,
)

STACK = (300, 1024, 1024)  # a tall uint16 stack (0.6 GB), 315 M voxels


def test_segment_everything_on_a_tall_stack_is_refused_with_numbers_and_ways(memory_room):
    """300 x 1024 x 1024 under 2 GB free: the whole stack propagated (8.0 GB) is refused,
    naming the linked-only size (5.5 GB) and the other ways (was: started, and the kernel
    killed napari); one slice fits (its new labels layer of the whole stack is zeros the
    system maps when touched: 0.3 GB measured, not the 1.3 GB of uint32 it would hold)."""
    memory_room(2_000_000_000)
    assert segment_everything_problem(STACK, True, True) == (
        "Not started: Segment everything on the whole 300 x 1024 x 1024 stack, its objects "
        "propagated, needs about 8.0 GB of memory, more than the 2.0 GB free here (or under "
        "napari's memory limit): out of memory, the system could close napari. Instead: untick 'Propagate objects through the stack' (the "
        "slices' objects linked only: about 5.5 GB); pick 'current slice' in 'Where' to "
        "segment the slices you need; crop the stack (a smaller region, fewer slices), or "
        "segment it outside napari with napari-sam auto --no-propagate (docs/cli.md: its "
        "memory stays the same for any number of slices); or close other programs and "
        "images. Nothing was changed: your labels and prompts are kept.")
    linked = segment_everything_problem(STACK, True, False)
    assert linked.startswith("Not started: Segment everything on the whole 300 x 1024 x 1024 "
                             "stack needs about 5.5 GB of memory, more than the 2.0 GB free")
    assert segment_everything_problem(STACK, False, True) is None
    memory_room(400_000_000)  # one slice: its masks and working memory (0.5 GB)
    assert segment_everything_problem(STACK, False, True).startswith(
        "Not started: Segment everything on a slice of this 300 x 1024 x 1024 stack needs "
        "about 517 MB of memory, more than the 400 MB free")


def test_segment_everything_on_small_slices_counts_a_small_working_memory(memory_room):
    """Its 0.5 GB working memory was measured on 768 x 768 slices: a 5 x 64 x 64 stack with
    450 MB free was refused for "about 500 MB", and told to crop a 64 x 64 image."""
    memory_room(450 * 10**6)
    assert segment_everything_problem((5, 64, 64), False, True) is None
    assert segment_everything_problem((5, 64, 64), True, True) is None
    memory_room(40 * 10**6)  # below the least working memory counted (50 MB)
    assert segment_everything_problem((5, 64, 64), False, True) == (
        "Not started: Segment everything on a slice of this 5 x 64 x 64 stack needs about "
        "50 MB of memory, more than the 40 MB free here (or under napari's memory limit): out "
        "of memory, the system could close napari. Instead: close other programs and images. "
        "Nothing was changed: your labels and prompts are kept.")


def test_propagation_counts_the_embeddings_it_will_keep(memory_room):
    memory_room(1_000_000_000)
    assert propagation_problem(STACK, "Propagating 1 object") is None  # 0.6 GB of labels
    problem = propagation_problem(STACK, "Propagating 1 object", embedding=1 << 30)
    assert problem.startswith("Not started: Propagating 1 object through this 300 x 1024 x "
                              "1024 stack needs about 1.7 GB of memory, more than the 1.0 GB")
    assert "crop the stack (a smaller region, fewer slices) and propagate there" in problem


def test_tiles_of_a_large_image_count_every_tile_and_a_store_bounds_them(memory_room,
                                                                        tiny_sam, tmp_path):
    """A 2000 x 2000 image in tiles keeps every tile's embedding in memory (float32, 256 x 16
    x 16 for the tiny model); with an embedding store at most ``cache_bytes``, which is half
    the memory free where that is less than 1 GiB."""
    from napari_sam.tiled_stack import DEFAULT_CACHE_BYTES, TiledStackEmbeddings

    image = np.zeros((1, 2000, 2000), np.uint8)
    memory_room(10_000_000_000)
    assert tiles_cache_bytes() == DEFAULT_CACHE_BYTES
    memory_room(300_000_000)
    assert tiles_cache_bytes() == 150_000_000
    memory_room(10_000_000)
    assert tiles_cache_bytes() == MIN_TILES_CACHE_BYTES
    emb = TiledStackEmbeddings(image, tiny_sam, True, device="cpu", contrast_limits=(0, 1),
                               cache_bytes=MIN_TILES_CACHE_BYTES)
    per_tile = 256 * 16 * 16 * 4
    assert embedding_bytes(emb, [0], store=False) == len(emb.tiling) * per_tile
    assert embedding_bytes(emb, [0], store=True) == min(len(emb.tiling) * per_tile,
                                                        MIN_TILES_CACHE_BYTES)
    labels = 2000 * 2000 * LABELS_BYTES_PER_PIXEL  # room left for the first commit
    memory_room(len(emb.tiling) * per_tile + labels - 1)
    problem = embedding_problem(emb, [0], store=False)
    assert problem.startswith(f"Not started: Embedding this 2000 x 2000 image in "
                              f"{len(emb.tiling)} tiles (kept in memory, with room for its "
                              "labels) needs about 72 MB of memory, more than the 72 MB"), problem
    memory_room(len(emb.tiling) * per_tile + labels)
    assert embedding_problem(emb, [0], store=False) is None
    assert ("Instead: set an 'Embedding store' (a folder on disk: the tiles' embeddings go "
            "there and at most 67 MB of them stay in memory); untick 'Tile large images'"
            ) in problem


def test_embeddings_held_already_are_not_counted_again(tiny_sam, tmp_path):
    """With a store a tiled image keeps at most ``cache_bytes`` of tiles: once they are held,
    embedding the slice's other tiles (a click's background job reading them back from the
    store) needs no more (was: counted again, so under 1 GB free the background job after a
    click on an 8000 x 8000 image was refused, "needs about 1.7 GB")."""
    from napari_sam.tiled_stack import TiledStackEmbeddings

    image = np.random.default_rng(0).integers(0, 255, (1, 1000, 1000), dtype=np.uint8)
    per_tile = 256 * 16 * 16 * 4
    emb = TiledStackEmbeddings(image, tiny_sam, True, device="cpu", store=tmp_path / "e.zarr",
                               cache_bytes=10 * per_tile)
    assert embedding_bytes(emb, [0], store=True) == 10 * per_tile
    emb.compute([0])
    assert 0 < emb.bytes_in_memory <= 10 * per_tile < len(emb.tiling) * per_tile
    assert emb.missing([0]) == [0]  # tiles only in the store
    assert embedding_bytes(emb, [0], store=True) == 10 * per_tile - emb.bytes_in_memory


def test_memory_nearly_used_up_is_sized_in_kb_not_0_0_mb(memory_room):
    """Under a cgroup's limit with 40 kB left the refusal said "more than the 0.0 MB free
    here", as if nothing were free because nothing were measured."""
    memory_room(40_000)
    assert segment_everything_problem((5, 64, 64), False, True).startswith(
        "Not started: Segment everything on a slice of this 5 x 64 x 64 stack needs about "
        "50 MB of memory, more than the 40.0 kB free here (or under napari's memory limit)")
