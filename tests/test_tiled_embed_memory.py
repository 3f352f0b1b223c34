"""``napari_sam.embed`` of a large image tiled into windows, without ``store=``: every window
keeps its embedding in memory (a 2D image's windows all), so memory grew with the image until
the process was killed (a 4096 x 4096 image with the demo model: 441 windows, +337 MiB peak
RSS; 16 times that at 16384 x 16384). It is now refused before any work when the embeddings
would not fit in the memory available, with what to do; with a store the windows are kept to
``cache_bytes``. The estimate is 1.5 x the features' float32 bytes (the process grows so on the
CPU; the bare features were ~35 % under); embeddings on a CUDA device are weighed against the
GPU's free memory, not the host's."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.words import size_words


def test_a_tiled_image_whose_windows_do_not_fit_in_memory_is_refused_without_a_store(
        tiny_sam, tmp_path, monkeypatch):
    import napari_sam.memory as memory

    image = (np.random.default_rng(0).random((1, 1024, 1024)) * 255).astype(np.uint8)
    emb = ns.embed(image, tiny_sam, device="cpu")
    n = len(emb.tiling)
    need = n * emb._window_bytes * 3 // 2  # the features' bytes and the 1.5 x margin
    monkeypatch.setattr(memory, "available_memory", lambda: need - 1)
    with pytest.raises(ValueError) as info:
        emb.compute()
    assert str(info.value) == (
        f"embedding 1 slice of 1024 x 1024 px in {n} windows without a store keeps every "
        f"window's embedding in memory: about {size_words(need)}, more than the "
        f"{size_words(need - 1)} available here; give them a store on disk: "
        "store='embeddings.zarr' to napari_sam.embed, or a folder.zarr in the dock's 'Embedding "
        "store' box (the windows are written there and read back when used, so memory stays "
        "under cache_bytes, 1.1 GB), or do not tile (tiling=None; in the dock: 'Tile large "
        "images' unticked; one shrunk embedding per slice)")
    assert emb.encoder_calls == 0 and emb.missing([0]) == [0]  # refused before any work
    with pytest.raises(ValueError, match="store='embeddings.zarr' to napari_sam.embed"):
        ns.embed(image, tiny_sam, device="cpu", compute=True)
    with pytest.raises(ValueError) as info:  # emb[0] holds every window, store or not
        emb[0]
    assert str(info.value) == (
        f"emb[0] holds the embeddings of all {n} windows of slice 0 at once: about "
        f"{size_words(need)}, more than the {size_words(need - 1)} available here; "
        "napari_sam.segment_everything(image, model) of the 2D image itself embeds it window "
        "by window, and emb.slice_on_demand(z) encodes only the windows a prompt needs")
    assert emb.encoder_calls == 0
    stored = ns.embed(image, tiny_sam, device="cpu", store=tmp_path / "e.zarr",
                      cache_bytes=need // 4, compute=True)  # a store: kept to cache_bytes
    held = sum(ws.in_memory for ws in stored._windows.values())
    assert 0 < held * stored._window_bytes <= need // 4 + stored._window_bytes
    features = n * emb._window_bytes  # room for the bare features: not for what the
    monkeypatch.setattr(memory, "available_memory", lambda: features)  # process grows by
    with pytest.raises(ValueError, match=f"about {size_words(need)}, more than the"):
        emb.compute()
    monkeypatch.setattr(memory, "available_memory", lambda: need)  # it fits: as before
    emb.compute()
    assert emb.missing([0]) == []
    monkeypatch.setattr(memory, "available_memory", lambda: 1)  # all in memory: nothing new
    assert len(emb[0].embeddings) == n


@pytest.mark.parametrize("gpu_free, host_free, refused", [
    (10, 1 << 40, True),   # the GPU is full: refused, however much RAM the host has
    (1 << 40, 10, False),  # the GPU has room: the host's RAM does not matter (was refused)
])
def test_embeddings_on_a_cuda_device_are_weighed_against_its_free_memory(
        tiny_sam, monkeypatch, gpu_free, host_free, refused):
    """Tiled embeddings computed on CUDA stay on the GPU: the refusal compares them with
    ``torch.cuda.mem_get_info()``'s free bytes (it compared them with the host's RAM, and
    refused a GPU with room on a small host, or let a full GPU run out of memory)."""
    import torch

    import napari_sam.memory as memory

    image = (np.random.default_rng(0).random((1, 1024, 1024)) * 255).astype(np.uint8)
    emb = ns.embed(image, tiny_sam, device="cpu")
    monkeypatch.setattr(emb.predictor, "device", torch.device("cuda", 0))  # as if on a GPU
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (gpu_free, 1 << 41))
    monkeypatch.setattr(memory, "available_memory", lambda: host_free)
    need = len(emb.tiling) * emb._window_bytes * 3 // 2
    if refused:
        with pytest.raises(ValueError) as info:
            emb.compute()
        assert (f"about {size_words(need)}, more than the {size_words(gpu_free)} free on "
                "cuda:0; give them a store on disk") in str(info.value)
    else:  # checked, then stopped before encoding anything (there is no GPU here)
        assert emb.compute(should_stop=lambda: True).stopped
    assert emb.encoder_calls == 0
    monkeypatch.setattr(emb.predictor, "device", torch.device("cpu"))  # the host's on CPU
    monkeypatch.setattr(memory, "available_memory", lambda: need - 1)
    with pytest.raises(ValueError, match=f"more than the {size_words(need - 1)} available"):
        emb.compute()


def test_a_gpu_picked_by_auto_is_weighed_on_torch_before_2_5(tiny_sam, monkeypatch):
    """``device='auto'`` (and ``'cuda'``) on a GPU is ``torch.device('cuda')``, with no index;
    before torch 2.5 ``torch.cuda.mem_get_info`` raised ValueError for it ("Expected a
    torch.device with a specified index"), so the GPU's free memory read as unknown and
    nothing was refused: the embeddings ran out of GPU memory instead."""
    import torch

    image = (np.random.default_rng(0).random((1, 1024, 1024)) * 255).astype(np.uint8)
    emb = ns.embed(image, tiny_sam, device="cpu")
    monkeypatch.setattr(emb.predictor, "device", torch.device("cuda"))  # what auto gives

    def mem_get_info(device=None):  # torch 2.1-2.4: an index, or the current device's
        if isinstance(device, torch.device) and device.index is None:
            raise ValueError(f"Expected a torch.device with a specified index or an integer, "
                             f"but got:{device}")
        return 10, 1 << 41

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    need = len(emb.tiling) * emb._window_bytes * 3 // 2
    with pytest.raises(ValueError) as info:
        emb.compute()
    assert (f"about {size_words(need)}, more than the 10 bytes free on cuda:0; give "
            "them a store on disk") in str(info.value)
    assert emb.encoder_calls == 0


@pytest.mark.parametrize("gpu_free, said", [
    (9_000_000, "9.0 MB"), (40_000, "40.0 kB"), (0, "0 bytes")])
def test_a_nearly_full_gpu_is_sized_in_mb_kb_or_bytes(tiny_sam, monkeypatch, gpu_free, said):
    """A GPU with under 50 MB free was "the 0.0 GB free on cuda:0" (and the tiny model's
    10 MB of windows "about 0.0 GB"): as if nothing were asked, of nothing; small sizes read
    in MB, kB or bytes."""
    import torch

    image = (np.random.default_rng(0).random((1, 1024, 1024)) * 255).astype(np.uint8)
    emb = ns.embed(image, tiny_sam, device="cpu", cache_bytes=1 << 20)
    monkeypatch.setattr(emb.predictor, "device", torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (gpu_free, 1 << 41))
    assert len(emb.tiling) * emb._window_bytes * 3 // 2 == 9_830_400
    with pytest.raises(ValueError) as info:
        emb.compute()
    assert (f"in memory: about 9.8 MB, more than the {said} free on cuda:0; give them a store "
            "on disk") in str(info.value)
    assert "so memory stays under cache_bytes, 1.0 MB)" in str(info.value)
