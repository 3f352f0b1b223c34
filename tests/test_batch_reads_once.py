"""One batch job checks its input once and reads it once: ``napari-sam auto`` on one TIFF
checked it 4 times (``run_job``, then ``open_image`` three times: the propagation memory
check, the slices, the labels' header) and read it 3 times. The check stays before anything
reads the input (a FIFO would hang the run): tests/test_cli_paths.py and
tests/test_cli_bad_inputs.py keep the bad inputs' errors."""

from __future__ import annotations

import collections

import pytest
import tifffile

from cli_runner import cli


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


def _count_checks_and_reads(monkeypatch) -> collections.Counter:
    """Count the calls of the input check and of the image reader, per path, wherever the
    batch modules call them from."""
    import napari_sam.batch.job_checks as job_checks
    import napari_sam.batch.runners as runners
    from napari_sam import io as nio

    calls: collections.Counter = collections.Counter()
    check, read = job_checks.check_input_file, nio.read_image

    def counted_check(path):
        calls["check", str(path)] += 1
        return check(path)

    def counted_read(path, *args, **kwargs):
        calls["read", str(path)] += 1
        return read(path, *args, **kwargs)

    monkeypatch.setattr(job_checks, "check_input_file", counted_check)
    monkeypatch.setattr(runners, "check_input_file", counted_check)
    monkeypatch.setattr(nio, "read_image", counted_read)
    return calls


@pytest.mark.parametrize("extra", [[], ["--no-propagate"]], ids=["propagate", "no-propagate"])
def test_auto_checks_and_reads_its_input_once(tmp_path, tiny_model, capsys, monkeypatch, extra):
    from stacks import blob_stack

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, blob_stack(z=5), photometric="minisblack")
    calls = _count_checks_and_reads(monkeypatch)
    rc, so, err = cli(["auto", path, "-o", tmp_path / "out", "--model", tiny_model,
                       "--device", "cpu", "-q", *extra], capsys)
    assert rc == 0, so + err
    assert tifffile.imread(tmp_path / "out" / "x_labels.tif").shape == (5, 64, 64)
    assert dict(calls) == {("check", str(path)): 1, ("read", str(path)): 1}


@pytest.mark.parametrize("command", ["embed", "segment"])
def test_embed_and_segment_check_their_input_once_per_job(tmp_path, tiny_model, capsys,
                                                          monkeypatch, command):
    """``embed``: once and once (it checked twice). ``segment`` also checks the prompts
    against every input's header before any work (``batch.prompts.check_prompts``, which
    checks the file itself: it runs before the jobs): twice and twice (it checked 3 times)."""
    from stacks import blob_stack

    path = tmp_path / "x.tif"
    tifffile.imwrite(path, blob_stack(z=5), photometric="minisblack")
    argv = [command, path, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu",
            "-q"]
    if command == "segment":
        csv = tmp_path / "clicks.csv"
        csv.write_text("file,slice,row,col,label,object\nx.tif,1,20,20,1,1\n")
        argv += ["--prompts", csv]
    calls = _count_checks_and_reads(monkeypatch)
    rc, so, err = cli(argv, capsys)
    assert rc == 0, so + err
    times = 2 if command == "segment" else 1
    assert dict(calls) == {("check", str(path)): times, ("read", str(path)): times}


def _count_tile_reads(monkeypatch) -> collections.Counter:
    """Count the chunks (TIFF tiles) decoded through tifffile's zarr store, per chunk key."""
    import tifffile.zarr as tiff_zarr

    reads: collections.Counter = collections.Counter()
    get = tiff_zarr.ZarrTiffStore.get

    async def counted_get(self, key, prototype, byte_range=None):
        if not key.endswith((".json", ".zarray", ".zattrs", ".zgroup")):
            reads[key] += 1
        return await get(self, key, prototype, byte_range)

    monkeypatch.setattr(tiff_zarr.ZarrTiffStore, "get", counted_get)
    return reads


def test_segment_of_a_tiled_tiff_decodes_each_tile_once(tmp_path, tiny_model, capsys,
                                                        monkeypatch):
    """``segment`` of a compressed, tiled TIFF whose slices are tiled into the model's windows
    decoded the file's tiles once per overlapping window, again for the contrast limits, the
    propagation and once per object per slice for the trace (1384 tile reads of 192 tiles,
    12 per tile, on a 12 x 1024 x 1024 stack with 3 objects and the demo model). Each tile is
    now decoded once, and the labels are those of the same stack read from memory."""
    import numpy as np

    from stacks import blob_stack

    stack = np.kron(blob_stack(z=4, size=64), np.ones((1, 6, 6))).astype(np.uint16)  # 384 px
    tiled = tmp_path / "tiled.tif"
    tifffile.imwrite(tiled, stack, tile=(128, 128), compression="zlib",
                     photometric="minisblack")
    plain = tmp_path / "plain" / "tiled.tif"  # the same pixels, memory-mapped
    plain.parent.mkdir()
    tifffile.imwrite(plain, stack, photometric="minisblack")
    csv = tmp_path / "clicks.csv"
    csv.write_text("file,slice,row,col,label,object\ntiled.tif,1,120,120,1,1\n"
                   "tiled.tif,2,250,260,1,2\n")
    argv = ["--prompts", csv, "--model", tiny_model, "--device", "cpu", "-q"]
    reads = _count_tile_reads(monkeypatch)
    rc, so, err = cli(["segment", tiled, "-o", tmp_path / "out", *argv], capsys)
    assert rc == 0, so + err
    assert len(reads) == 4 * 3 * 3  # every tile of every slice was needed
    assert max(reads.values()) == 1, reads.most_common(3)
    rc, so, err = cli(["segment", plain, "-o", tmp_path / "out-plain", *argv], capsys)
    assert rc == 0, so + err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "tiled_labels.tif"),
                                  tifffile.imread(tmp_path / "out-plain" / "tiled_labels.tif"))


def test_the_trace_reads_each_image_slice_once_for_all_objects():
    """The propagation trace read slice z of the images once per object on it (and again for
    each look past an object's end): on a lazily read file, every tile once per object. It
    now reads each slice once, with the same contrasts and flags as from memory."""
    import numpy as np

    from napari_sam.trace import propagation_trace
    from stacks import blob_stack

    stack = blob_stack(z=6)
    labels = np.zeros(stack.shape, np.uint16)
    labels[:, 10:20, 10:20] = 1
    labels[1:4, 40:50, 40:50] = 2
    labels[2:, 30:36, 5:12] = 3
    reads: collections.Counter = collections.Counter()

    class Counted:
        shape, dtype = stack.shape, stack.dtype

        def __getitem__(self, z):
            reads[int(z)] += 1
            return stack[z]

    scores = {k: {z: 0.9 for z in range(6)} for k in (1, 2, 3)}
    reasons = {1: {"up": "edge", "down": "edge"}, 2: {"up": "iou", "down": "iou"},
               3: {"up": "edge", "down": "iou"}}
    trace = propagation_trace(labels, Counted(), scores, reasons, {1: [0], 2: [2], 3: [3]})
    assert dict(reads) == {z: 1 for z in range(6)}
    assert trace == propagation_trace(labels, stack, scores, reasons, {1: [0], 2: [2], 3: [3]})
    assert [o["slices"] for o in trace["objects"]] == [[0, 1, 2, 3, 4, 5], [1, 2, 3],
                                                       [2, 3, 4, 5]]
    assert all(c is not None for o in trace["objects"] for c in o["contrast"])
    lost = propagation_trace(labels, stack, scores, {**reasons, 4: {"up": "iou", "down": "iou"}})
    assert [o["id"] for o in lost["objects"]] == [1, 2, 3]  # 4 is in no slice (was IndexError)


def test_a_chunk_cache_reads_what_zarr_reads(tmp_path):
    """Every basic index of a :class:`ChunkCache` gives what the zarr array gives, whatever
    its chunks hold already; fancy indices are passed through."""
    import numpy as np
    import zarr

    from napari_sam.io.chunk_cache import ChunkCache, chunk_cached

    data = np.arange(5 * 70 * 90, dtype=np.uint16).reshape(5, 70, 90)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(2, 16, 32),
                            dtype=data.dtype)
    arr[:] = data
    cache = chunk_cached(arr, max_bytes=40_000)  # a few chunks: some are dropped
    assert isinstance(cache, ChunkCache) and chunk_cached(data) is data
    keys = [(1, slice(3, 60), slice(10, 85)), (0,), (slice(None), 5), (-1, -3, slice(2, 3)),
            (Ellipsis, slice(7, 40)), (2, slice(50, 20)), (slice(1, 4), slice(0, 70), 89),
            (np.int64(3), slice(None), slice(None)), ([0, 2], 4), (1, slice(0, 60, 2))]
    for key in keys * 2:
        np.testing.assert_array_equal(cache[key], data[key], err_msg=str(key))
    np.testing.assert_array_equal(np.asarray(cache), data)


def test_threads_reading_one_chunk_cache_at_once_get_what_zarr_gives(tmp_path):
    """``auto``'s slice workers share one input: reads from threads at once, the cache
    dropping chunks meanwhile, give the array's pixels."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import zarr

    from napari_sam.io.chunk_cache import ChunkCache

    data = np.random.default_rng(1).integers(0, 60000, (6, 200, 200), dtype=np.uint16)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(1, 32, 32),
                            dtype=data.dtype)
    arr[:] = data
    cache = ChunkCache(arr, max_bytes=60_000)
    rng = np.random.default_rng(2)
    keys = [(int(z), slice(int(r), int(r) + 90), slice(int(c), int(c) + 90))
            for z, r, c in zip(rng.integers(0, 6, 200), rng.integers(0, 110, 200),
                               rng.integers(0, 110, 200))]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda k: cache[k], keys))
    for key, arr_read in zip(keys, got):
        np.testing.assert_array_equal(arr_read, data[key])
    assert cache._bytes == sum(c.nbytes for c in cache._cache.values()) <= 60_000


def test_a_read_bigger_than_the_chunk_cache_holds_the_region_once(tmp_path):
    """A region of more than half the cache is read straight from zarr: its peak memory is
    zarr's own (about 1.4 x the region, measured with tracemalloc); put together through the
    cache it was 3 x (the block read, the chunks' copies for the cache, the region)."""
    import tracemalloc

    import numpy as np
    import zarr

    from napari_sam.io.chunk_cache import ChunkCache, chunk_cached

    data = np.random.default_rng(0).integers(0, 60000, (1024, 1024), dtype=np.uint16)
    arr = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(128, 128),
                            dtype=data.dtype)
    arr[:] = data
    cache = chunk_cached(arr, max_bytes=1 << 19)  # 512 KiB, a quarter of the 2 MiB image
    assert isinstance(cache, ChunkCache)
    peaks = {}
    for name, src in (("zarr", arr), ("cache", cache)):
        src[0:10, 0:10]  # zarr's metadata read before measuring
        tracemalloc.start()
        got = src[...]
        peaks[name] = tracemalloc.get_traced_memory()[1] / data.nbytes
        tracemalloc.stop()
        np.testing.assert_array_equal(got, data)
        del got
    assert peaks["cache"] < 1.6 and peaks["cache"] < peaks["zarr"] + 0.1, peaks
    np.testing.assert_array_equal(cache[3:200, 5:300], data[3:200, 5:300])  # small: cached
    assert cache.reads == 2 and cache._bytes <= 1 << 19
