"""Tiled stack embeddings (napari_sam.tiled_stack): windows, contrast, laziness, store, memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.embeddings import StackEmbeddings, stack_intensity_limits
from napari_sam.predictor import Predictor
from napari_sam.tiled_stack import TiledStackEmbeddings, WindowView
from napari_sam.tiling import TiledEmbedding, Tiling, encode_tiled


def big_stack(z=3, shape=(400, 300), seed=0):
    """A stack whose slices tile in 2 x 2 windows of 256 px; the right part is dark, so
    per-window contrast limits would differ from the whole stack's."""
    rng = np.random.default_rng(seed)
    stack = rng.normal(300, 20, (z, *shape))
    stack[:, :, 200:] -= 250
    for i in range(z):
        stack[i, 50 + 10 * i:90 + 10 * i, 60:100] += 900
        stack[i, 300:330, 240:280] += 400
    return np.clip(stack, 0, None).astype(np.uint16)


class Recording:
    """An array that records how it is indexed (a stand-in for a lazy zarr/dask array)."""

    def __init__(self, arr):
        self.arr, self.shape, self.dtype, self.keys = arr, arr.shape, arr.dtype, []

    def __getitem__(self, key):
        self.keys.append(key)
        return self.arr[key]


def test_auto_tiles_only_slices_larger_than_one_and_a_half_inputs(tiny_sam):
    small = ns.embed(np.zeros((2, 300, 384), np.uint8), tiny_sam, device="cpu")
    assert type(small) is StackEmbeddings  # 384 = 1.5 x 256: not tiled
    big = ns.embed(big_stack(), tiny_sam, device="cpu")
    assert isinstance(big, TiledStackEmbeddings)
    assert big.tiling == Tiling((400, 300), 256, 32) and len(big.tiling) == 4
    assert big.shape == (3, 400, 300) and len(big) == 3
    off = ns.embed(big_stack(), tiny_sam, device="cpu", tiling=None)
    assert type(off) is StackEmbeddings
    forced = ns.embed(np.zeros((2, 100, 120), np.uint8), tiny_sam, device="cpu", tiling=True)
    assert isinstance(forced, TiledStackEmbeddings) and len(forced.tiling) == 1
    assert ns.embed(big_stack(), tiny_sam, device="cpu", tiling=(200, 40)).tiling.window == 200


def test_each_window_is_the_crop_embedded_with_the_whole_stacks_contrast(tiny_sam):
    stack = big_stack()
    emb = ns.embed(stack, tiny_sam, device="cpu")
    whole = stack_intensity_limits(stack)
    assert emb.contrast_limits == pytest.approx(whole)
    got = emb[1]
    assert isinstance(got, TiledEmbedding) and got.tiling == emb.tiling
    ref = encode_tiled(Predictor(tiny_sam, device="cpu"), stack[1], emb.tiling,
                       contrast_limits=whole)
    for win, a, b in zip(emb.tiling.windows, got.embeddings, ref.embeddings):
        assert tuple(a.original_size) == win.shape
        # stack embeddings are float16-rounded (as their store keeps them)
        torch.testing.assert_close(a.features, b.features.half().float(), atol=1e-4, rtol=1e-3)
    # per-window limits would differ: the dark right windows are not stretched on their own
    right = emb.tiling.windows[1]
    assert stack_intensity_limits(stack[:, right.slices[0], right.slices[1]]) != \
        pytest.approx(whole)


def test_windows_read_only_their_crop_of_one_slice(tiny_sam):
    rec = Recording(big_stack())
    emb = ns.embed(rec, tiny_sam, device="cpu", contrast_limits=(0, 1200))
    emb[2]
    assert rec.keys, "nothing read"
    outers = {w.outer for w in emb.tiling.windows}
    for key in rec.keys:
        assert isinstance(key, tuple) and key[0] == 2
        assert (key[1].start, key[2].start, key[1].stop, key[2].stop) in outers
    assert len(rec.keys) == len(emb.tiling)  # one read per window, no whole slice


def test_rgb_and_lazy_stacks_give_the_same_windows(tiny_sam):
    zarr = pytest.importorskip("zarr")
    stack = big_stack(z=2)
    rgb = np.repeat(stack[..., None], 3, axis=-1)
    z = zarr.create_array(store={}, shape=rgb.shape, chunks=(1, 128, 128, 3), dtype=rgb.dtype)
    z[:] = rgb
    view = WindowView(z, Tiling((400, 300), 256, 32).windows[3])
    assert view.shape == (2, 256, 256, 3)
    np.testing.assert_array_equal(view[1], rgb[1, 144:400, 44:300])
    eager = ns.embed(rgb, tiny_sam, device="cpu", contrast_limits=(0, 1200))[1]
    lazy = ns.embed(z, tiny_sam, device="cpu", contrast_limits=(0, 1200))[1]
    for a, b in zip(eager.embeddings, lazy.embeddings):
        torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=0)
    da = pytest.importorskip("dask.array")
    dask = ns.embed(da.from_array(rgb, chunks=(1, 100, 100, 3)), tiny_sam, device="cpu",
                    contrast_limits=(0, 1200))[1]
    for a, b in zip(eager.embeddings, dask.embeddings):
        torch.testing.assert_close(a.features, b.features, atol=1e-5, rtol=0)


def _encoder_calls_per_chunk(n: int) -> int:
    """Encoder calls for a chunk of ``n`` slices of a store: whole slices per thread
    (:func:`napari_sam.embeddings.encode_whole_slices`), a multiple of the thread count at
    once, then the rest."""
    t = torch.get_num_threads()
    return int(n - n % t > 0) + int(n % t > 0)


def test_store_reuses_every_window_and_keys_on_the_tiling(tiny_sam, tmp_path):
    import zarr

    stack = big_stack()
    store = tmp_path / "emb.zarr"
    first = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True)
    # 4 windows, one chunk of 3 slices each
    assert first.encoder_calls == 4 * _encoder_calls_per_chunk(3)
    group = zarr.open_group(str(store), mode="r")
    assert sorted(k for k, _ in group["tiles"].members()) == ["r0_c0", "r0_c1", "r1_c0",
                                                              "r1_c1"]
    again = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True)
    assert again.encoder_calls == 0
    torch.testing.assert_close(again[2].embeddings[3].features, first[2].embeddings[3].features,
                               atol=2e-2, rtol=1e-2)
    # another tiling, or none, is not reused (and each replaces the other)
    other = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True, tiling=(256, 64))
    assert other.encoder_calls > 0
    flat = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True, tiling=None)
    assert type(flat) is StackEmbeddings and flat.encoder_calls > 0
    assert "tiles" not in zarr.open_group(str(store), mode="r")
    tiled = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True)
    assert tiled.encoder_calls == 4 * _encoder_calls_per_chunk(3)
    flat = ns.embed(stack, tiny_sam, device="cpu", store=store, compute=True, tiling=None)
    assert flat.encoder_calls > 0


def test_a_foreign_zarr_group_is_refused_and_left_alone(tiny_sam, tmp_path):
    import zarr

    path = tmp_path / "data.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("raw", shape=(3, 400, 300), dtype="uint16")
    with pytest.raises(ValueError, match="did not create"):
        ns.embed(big_stack(), tiny_sam, device="cpu", store=path)
    assert sorted(k for k, _ in zarr.open_group(str(path), mode="r").members()) == ["raw"]


def test_compute_reports_slices_times_windows_and_stops_when_asked(tiny_sam, tmp_path):
    stack = big_stack(z=5)
    emb = ns.embed(stack, tiny_sam, device="cpu", batch_size=2, store=tmp_path / "e.zarr")
    seen = []
    emb.compute(progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (20, 20) and all(t == 20 for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    again = ns.embed(stack, tiny_sam, device="cpu", batch_size=2, store=tmp_path / "f.zarr")
    calls = []
    again.compute(should_stop=lambda: len(calls) >= 3, progress=lambda d, t: calls.append(d))
    assert calls == [2, 4, 6] and again.encoder_calls == 3 and again.stopped
    assert not emb.stopped


def test_memory_stays_bounded_and_the_bound_follows_the_model():
    demo = ns.load_model("demo")
    lazy = np.broadcast_to(np.zeros((1, 1, 1), np.uint16), (32, 4096, 4096))
    emb = ns.embed(lazy, demo, device="cpu", contrast_limits=(0, 1))
    assert len(emb.tiling) == 441 and emb.window_cache == 2
    held = len(emb.tiling) * emb.window_cache * 256 * 32 * 32 * 4
    assert held <= 1 << 30 < len(emb.tiling) * 32 * 256 * 32 * 32 * 4


def test_each_window_keeps_at_most_its_cache(tiny_sam):
    stack = big_stack(z=6)
    emb = TiledStackEmbeddings(stack, tiny_sam, True, device="cpu", batch_size=2,
                               cache_bytes=1)
    assert emb.window_cache == 2
    emb.compute()
    for i in range(len(emb.tiling)):
        assert len(emb.window_stack(i)._memory) <= 2
    assert isinstance(emb[0], TiledEmbedding)  # evicted slices are recomputed


def test_with_a_store_all_windows_together_keep_to_cache_bytes(tiny_sam, tmp_path):
    """A large 2D image embedded into a store (what `napari-sam embed` does, cache_bytes=1):
    only the window under way stays in memory, the others are in the store (was: every
    window kept its slice: 2.9 GB of RSS for an 8000 x 8000 image, 1764 windows of the demo
    model, whose store holds 0.6 GB); a bound of 3 windows' bytes keeps 3."""
    image = big_stack(z=1, shape=(700, 700))
    emb = ns.embed(image, tiny_sam, device="cpu", store=tmp_path / "e.zarr", cache_bytes=1)
    emb.compute()
    n = len(emb.tiling)
    held = [emb.window_stack(i).in_memory for i in range(n)]
    assert n >= 9 and held == [0] * (n - 1) + [1]
    e = int(tiny_sam.embedding_size)
    three = ns.embed(image, tiny_sam, device="cpu", store=tmp_path / "f.zarr",
                     cache_bytes=3 * 256 * e * e * 4)
    three.compute()
    assert sum(three.window_stack(i).in_memory for i in range(n)) == 3
    ref = ns.embed(image, tiny_sam, device="cpu")  # in memory, no store: nothing forgotten
    ref.compute()
    assert sum(ref.window_stack(i).in_memory for i in range(n)) == n
    for a, b in zip(emb[0].embeddings, ref[0].embeddings):  # read back = computed
        torch.testing.assert_close(a.features, b.features)


def test_untiled_choice_is_refused_by_the_tiled_class(tiny_sam):
    with pytest.raises(ValueError, match="does not tile"):
        TiledStackEmbeddings(np.zeros((2, 64, 64), np.uint8), tiny_sam, "auto", device="cpu")
