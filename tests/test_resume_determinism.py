"""An interrupted run resumed gives the same labels as one uninterrupted run (a QA review,
session 26: after Ctrl-C and a rerun, ``auto`` changed 29 of 57 objects). The cause: on the
CPU the encoder's float rounding depended on how its threads split the batch, and a resumed
run encodes the slices left in other batches (a slice alone, or in the middle of three).

These tests run with 2 torch threads and bfloat16, as the CLI does on this kind of machine
(the CLI tests' fixture pins one thread and float32, where the effect does not show)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam import synthetic as syn


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo():
    import napari_sam as ns

    return ns.load_model("demo")


def _features(emb, n):
    return [emb[z].features.clone() for z in range(n)]


def test_a_slice_embeds_the_same_in_any_batch_order_and_thread_count(demo, two_threads,
                                                                      tmp_path):
    from napari_sam.embeddings import embed

    stack = syn.nuclei_3d((8, 96, 96), seed=3).image
    whole = embed(stack, demo, precision="bf16", device="cpu", compute=True)  # batches of 4
    ref = _features(whole, 8)
    # the pieces a resumed run asks for: a batch of three, then a lone slice, then the rest
    store = tmp_path / "emb.zarr"
    part = embed(stack, demo, precision="bf16", device="cpu", store=store)
    part.compute([0, 1, 2])
    part.compute([5])
    resumed = embed(stack, demo, precision="bf16", device="cpu", store=store)
    resumed.compute()
    for z, (a, b) in enumerate(zip(ref, _features(resumed, 8))):
        assert torch.equal(a, b), (z, float((a - b).abs().max()))
    calls = []
    real = torch.set_num_threads
    for threads in (1, 3):
        real(threads)
        other = embed(stack, demo, precision="bf16", device="cpu",
                      store=tmp_path / f"other{threads}.zarr")
        torch.set_num_threads = lambda n: calls.append(n) or real(n)  # noqa: B023
        try:
            other.compute([4, 5, 6])
            other.compute([7])  # padded to one slice per thread
        finally:
            torch.set_num_threads = real
        for z in (4, 5, 6, 7):
            assert torch.equal(other[z].features, ref[z]), (threads, z)
    assert calls == [] and torch.get_num_threads() == 3  # torch's threads never changed


def test_auto_interrupted_and_resumed_writes_the_same_labels(demo, two_threads, tmp_path,
                                                             monkeypatch, capsys):
    import json

    import tifffile

    from napari_sam import embeddings as E
    from napari_sam import io as nio
    from napari_sam.cli import main
    from napari_sam.device import PRECISION_ENV

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "model-cache"))
    monkeypatch.setenv(PRECISION_ENV, "bf16")
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "nuclei.tif", syn.nuclei_3d((10, 96, 96), seed=4).image)
    args = ["auto", str(data / "nuclei.tif"), "--model", "demo", "--threads", "2",
            "--precision", "bf16", "-q", "--batch-size", "4"]
    assert main([*args, "-o", str(tmp_path / "once")]) == 0
    once = tifffile.imread(tmp_path / "once" / "nuclei_labels.tif")

    real = E.StackEmbeddings._write_store
    written = []

    def stop_after_three(self, z, emb, hsh):
        if len(written) == 3:  # slices 0-2 are in the store, 3 is not
            raise KeyboardInterrupt
        written.append(z)
        return real(self, z, emb, hsh)

    monkeypatch.setattr(E.StackEmbeddings, "_write_store", stop_after_three)
    assert main([*args, "-o", str(tmp_path / "twice")]) == 130
    monkeypatch.setattr(E.StackEmbeddings, "_write_store", real)
    assert main([*args, "-o", str(tmp_path / "twice")]) == 0
    twice = tifffile.imread(tmp_path / "twice" / "nuclei_labels.tif")
    capsys.readouterr()
    assert np.array_equal(once, twice), int((once != twice).sum())
    assert once.max() > 0
    # and the same propagation trace (what `napari-sam report` plots), one entry per object
    traces = [json.loads(nio.output_metadata_path(tmp_path / d / "nuclei_labels.tif")
                         .read_text())["extra"]["trace"] for d in ("once", "twice")]
    assert traces[0] == traces[1]
    assert [o["id"] for o in traces[0]["objects"]] == sorted(set(np.unique(once)) - {0})


def test_whole_slices_pad_the_rest_or_give_it_one_thread_per_slice(two_threads):
    """The rest of a batch: padded with copies up to the thread count while that stays within
    ``max_batch`` (torch's thread count untouched), else encoded with one thread per slice
    and the thread count put back, also after an error."""
    from types import SimpleNamespace

    from napari_sam.embeddings import encode_whole_slices

    seen = []

    def encode_rgb(rgbs):
        seen.append(([int(r[0, 0, 0]) for r in rgbs], torch.get_num_threads()))
        if any(int(r[0, 0, 0]) == 99 for r in rgbs):
            raise RuntimeError("out of memory")
        return [int(r[0, 0, 0]) for r in rgbs]

    pred = SimpleNamespace(device=torch.device("cpu"), encode_rgb=encode_rgb)
    rgbs = [np.full((4, 4, 3), v, np.uint8) for v in (1, 2, 3, 4)]
    torch.set_num_threads(3)
    assert encode_whole_slices(pred, rgbs, max_batch=4) == [1, 2, 3, 4]
    assert seen == [([1, 2, 3], 3), ([4, 4, 4], 3)]
    seen.clear()
    assert encode_whole_slices(pred, rgbs, max_batch=2) == [1, 2, 3, 4]
    assert seen == [([1, 2, 3], 3), ([4], 1)] and torch.get_num_threads() == 3
    with pytest.raises(RuntimeError):
        encode_whole_slices(pred, [*rgbs[:3], np.full((4, 4, 3), 99, np.uint8)], max_batch=2)
    assert torch.get_num_threads() == 3


def test_cluster_blocks_interrupted_and_resumed_give_an_uninterrupted_runs_labels(
        demo, two_threads, tmp_path, monkeypatch):
    """The blocks of a cluster run (``--workers N --block-slices K``; helper sweep, session
    27: Ctrl-C and a rerun changed 2-3 voxels of a file). A resumed block encoded the slices
    left in other batches (a lone slice), in memory, without whole slices per thread, and the
    store it fills is what the final task propagates from; and the slices the interrupted
    block had finished were encoded again by the final task (their hashes were lost with the
    block's result), which changed 13 voxels of this stack."""
    import json
    from dataclasses import replace
    from pathlib import Path

    import tifffile

    from napari_sam import batch
    from napari_sam import io as nio
    from napari_sam.batch import auto_runner, distributed
    from napari_sam.device import PRECISION_ENV
    from napari_sam.embeddings import StackEmbeddings

    monkeypatch.setenv(PRECISION_ENV, "bf16")
    inp = tmp_path / "nuclei.tif"
    tifffile.imwrite(inp, syn.nuclei_3d((8, 96, 96), seed=4).image)

    def run(name, stop_after=None):
        ctx = batch.Context(command="auto", model="demo", out_dir=tmp_path / name,
                            device="cpu", quiet=True, batch_size=4)
        (job,) = batch.make_jobs([inp], ctx)
        batch.prepare_auto_work(job, ctx)
        store = distributed.auto_prepare_task(job, ctx)
        if stop_after is not None:  # slices 0..stop_after-1 saved, then Ctrl-C
            real = auto_runner._save_slice
            saved = []

            def save_then_stop(work, z, labels, scores):
                if len(saved) == stop_after:
                    raise KeyboardInterrupt
                saved.append(z)
                real(work, z, labels, scores)

            monkeypatch.setattr(auto_runner, "_save_slice", save_then_stop)
            with pytest.raises(KeyboardInterrupt):
                distributed.auto_block_task(job, ctx, store, 0, 8)
            monkeypatch.setattr(auto_runner, "_save_slice", real)
            batch.prepare_auto_work(job, ctx)  # the rerun: same command, same store
            store = distributed.auto_prepare_task(job, ctx)
        block = distributed.auto_block_task(job, ctx, store, 0, 8)
        assert distributed.final_task(job, ctx, None, [block]).status == "done"
        emb = StackEmbeddings(batch.open_image(inp, replace(ctx)).stack, demo, store=Path(store),
                              device="cpu", precision="bf16")
        return tifffile.imread(job.output), [emb[z].features.clone() for z in range(8)]

    once, feats_once = run("once")
    twice, feats_twice = run("twice", stop_after=7)  # slice 7 left: a lone slice on the rerun
    for z, (a, b) in enumerate(zip(feats_once, feats_twice)):
        assert torch.equal(a, b), (z, float((a - b).abs().max()))
    assert np.array_equal(once, twice), int((once != twice).sum())
    assert once.max() > 0
    # and the same propagation trace (what `napari-sam report` plots), one entry per object
    traces = [json.loads(nio.output_metadata_path(tmp_path / d / "nuclei_labels.tif")
                         .read_text())["extra"]["trace"] for d in ("once", "twice")]
    assert traces[0] == traces[1]
    assert [o["id"] for o in traces[0]["objects"]] == sorted(set(np.unique(once)) - {0})
