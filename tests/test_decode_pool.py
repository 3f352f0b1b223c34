"""Batched CPU decodes in chunks on worker threads (:mod:`napari_sam.decode_pool`): the chunks,
the threads, and results that do not depend on the number of workers."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.batch.auto_runner import run_slices
from napari_sam.decode_pool import (
    CHUNK_TOKENS,
    chunk_slices,
    decode_workers,
    run_chunks,
    serial_decoding,
)


@pytest.mark.parametrize("n, tokens, size", [(0, 1024, 4), (1, 1024, 4), (10, 1024, 4),
                                             (7, 4096, 1), (5, 16384, 1), (9, 256, 16)])
def test_chunks_cover_the_batch_in_order_within_the_token_budget(n, tokens, size):
    chunks = chunk_slices(n, tokens)
    covered = [i for c in chunks for i in range(n)[c]]
    assert covered == list(range(n))
    assert all(1 <= c.stop - c.start <= size for c in chunks)
    assert all(c.stop - c.start == size for c in chunks[:-1])
    # a pure function of the batch: no thread count or load enters
    assert chunk_slices(n, tokens) == chunks
    assert CHUNK_TOKENS == 4096


def test_run_chunks_uses_worker_threads_of_one_torch_thread_in_order():
    seen, lock = {}, threading.Lock()

    def fn(c: slice):
        with lock:
            seen[c.start] = (threading.current_thread().name, torch.get_num_threads(),
                             torch.is_inference_mode_enabled(), decode_workers())
        return c.start

    chunks = [slice(i, i + 1) for i in range(8)]
    assert run_chunks(fn, chunks, workers=3) == list(range(8))
    assert all(name.startswith("napari-sam-decode") for name, *_ in seen.values())
    # one torch thread each, inference mode, and no nested pool from inside a worker
    assert {tuple(rest) for _, *rest in seen.values()} == {(1, True, 1)}


def test_run_chunks_with_one_worker_stays_in_the_calling_thread():
    names = run_chunks(lambda c: threading.current_thread().name,
                       [slice(0, 1), slice(1, 2)], workers=1)
    assert names == [threading.current_thread().name] * 2


def test_run_chunks_raises_a_chunk_error_after_every_chunk_finished():
    finished, lock = [], threading.Lock()

    def fn(c: slice):
        if c.start == 1:
            raise ValueError("chunk 1 is bad")
        with lock:
            finished.append(c.start)
        return c.start

    with pytest.raises(ValueError, match="chunk 1 is bad"):
        run_chunks(fn, [slice(i, i + 1) for i in range(6)], workers=2)
    assert sorted(finished) == [0, 2, 3, 4, 5]


def test_decode_workers_follow_the_thread_plan_and_serial_decoding(monkeypatch):
    monkeypatch.setattr("napari_sam.device.planned_workers", lambda: 4)
    assert decode_workers() == 4
    with serial_decoding():
        assert decode_workers() == 1
        with serial_decoding():
            assert decode_workers() == 1
        assert decode_workers() == 1
    assert decode_workers() == 4
    monkeypatch.setattr("napari_sam.device.planned_workers", lambda: None)
    assert decode_workers() == max(1, torch.get_num_threads())
    # never fewer workers than the caller's torch threads (chunks always at one thread)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        monkeypatch.setattr("napari_sam.device.planned_workers", lambda: 1)
        assert decode_workers() == 3
    finally:
        torch.set_num_threads(before)


def test_slice_workers_decode_serially():
    seen = []

    def segment(z, emb, image):
        seen.append(decode_workers())

    run_slices([0, 1, 2, 3], 2, lambda b: [(z, None, None) for z in b], segment, 2)
    assert seen == [1, 1, 1, 1]


# ------------------------------------------------------------------ the predictor
@pytest.fixture(scope="module")
def demo_stack():
    from napari_sam.synthetic import nuclei_3d

    sample = nuclei_3d(shape=(6, 128, 128), seed=3)
    return sample


def _prompts(labels: np.ndarray):
    """Boxes and centre points of every object of a (Y, X) label image, repeated to a batch
    of several chunks."""
    from napari_sam.volume.mask_prompts import box_from_mask, center_from_mask

    ids = [i for i in np.unique(labels) if i]
    boxes = np.stack([box_from_mask(labels == i) for i in ids])
    points = np.stack([center_from_mask(labels == i) for i in ids])[:, None]
    reps = max(1, -(-13 // len(ids)))
    return np.concatenate([boxes] * reps)[:13], np.concatenate([points] * reps)[:13]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predict_batch_gives_the_same_masks_with_any_number_of_workers(demo_stack, precision,
                                                                      monkeypatch):
    model = ns.load_model("demo")
    emb = ns.embed(demo_stack.image, model, precision=precision, compute=True)
    pred, z = emb.predictor, 3
    boxes, points = _prompts(demo_stack.labels[z])
    tokens = int(emb[z].features.shape[-1] * emb[z].features.shape[-2])
    assert len(chunk_slices(len(boxes), tokens)) >= 3  # the test batch spans several chunks
    low = pred.predict_batch(embedding=emb[z], boxes=boxes, multimask=False).logits[:, 0]
    kinds = {"boxes+masks": dict(boxes=boxes, mask_inputs=low, multimask=False),
             "points": dict(points=points, labels=np.ones(points.shape[:2], np.int64)),
             "boxes": dict(boxes=boxes, multimask=False)}
    first = {}
    for kind, kw in kinds.items():
        outs = []
        for workers in (1, 2, 4):
            monkeypatch.setattr("napari_sam.device.planned_workers", lambda w=workers: w)
            outs.append(pred.predict_batch(embedding=emb[z], **kw))
        for out in outs[1:]:
            assert torch.equal(out.logits, outs[0].logits), kind
            assert torch.equal(out.scores, outs[0].scores), kind
            assert torch.equal(out.masks, outs[0].masks), kind
        first[kind] = outs[0]
    # against one unchunked call of the model: float rounding only
    kw = kinds["boxes+masks"]
    with serial_decoding():
        monkeypatch.setattr("napari_sam.predictor.chunk_slices",
                            lambda n, t: chunk_slices(n, t, budget=10**9))
        whole = pred.predict_batch(embedding=emb[z], **kw)
    chunked = first["boxes+masks"]
    assert len(whole.logits) == len(chunked.logits) == 13
    tol = {"fp32": 1e-3, "bf16": 0.25}[precision]  # bf16: a few units in the last place
    assert float((whole.logits - chunked.logits).abs().max()) < tol
    assert float((whole.masks == chunked.masks).float().mean()) >= 0.999


def test_segment_volume_labels_do_not_depend_on_the_decode_workers(demo_stack, monkeypatch):
    from napari_sam.volume import prompts_from_labels, segment_volume

    emb = ns.embed(demo_stack.image, ns.load_model("demo"), compute=True)
    prompts = prompts_from_labels(demo_stack.labels)
    assert len(prompts) >= 5
    labels = []
    for workers in (1, 3):
        monkeypatch.setattr("napari_sam.device.planned_workers", lambda w=workers: w)
        labels.append(np.asarray(segment_volume(emb, prompts).labels))
    assert labels[0].max() >= 5
    np.testing.assert_array_equal(labels[0], labels[1])


def test_run_chunks_leaves_the_torch_threads_of_later_threads_alone():
    """Setting a pool thread's torch threads also sets what threads started later begin
    with; run_chunks sets the caller's count again (a GUI job thread started after a
    propagation embeds with the threads it had before)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        run_chunks(lambda c: torch.get_num_threads(), [slice(i, i + 1) for i in range(4)],
                   workers=2)
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_predict_batch_edge_batches(demo_stack, monkeypatch):
    """No prompt gives empty results (as one call does); prompts of different batch sizes
    fail as one call does (never cut to the first chunk); the caller's torch threads do not
    change the results."""
    emb = ns.embed(demo_stack.image, ns.load_model("demo"), compute=True)
    pred, z = emb.predictor, 3
    boxes, _ = _prompts(demo_stack.labels[z])
    empty = pred.predict_batch(embedding=emb[z], boxes=np.zeros((0, 4)), multimask=False)
    assert empty.logits.shape[0] == empty.scores.shape[0] == empty.masks.shape[0] == 0
    low = pred.predict_batch(embedding=emb[z], boxes=boxes[:1], multimask=False).logits[:, 0]
    monkeypatch.setattr("napari_sam.device.planned_workers", lambda: 3)
    with pytest.raises(RuntimeError):  # batch sizes that differ fail as one call does
        pred.predict_batch(embedding=emb[z], boxes=boxes, mask_inputs=low, multimask=False)
    # one worker at the caller's 2 torch threads == workers of one thread each
    low13 = pred.predict_batch(embedding=emb[z], boxes=boxes, multimask=False).logits[:, 0]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr("napari_sam.device.planned_workers", lambda: 1)
        a = pred.predict_batch(embedding=emb[z], boxes=boxes, mask_inputs=low13, multimask=False)
        monkeypatch.setattr("napari_sam.device.planned_workers", lambda: 2)
        b = pred.predict_batch(embedding=emb[z], boxes=boxes, mask_inputs=low13, multimask=False)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.masks, b.masks)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_run_chunks_works_in_a_forked_child():
    """A forked child has none of the parent's pool threads: it must start its own pool,
    not wait forever on threads that do not exist there."""
    chunks = [slice(i, i + 1) for i in range(4)]
    assert run_chunks(lambda c: c.start, chunks, workers=2) == [0, 1, 2, 3]  # parent's pool
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, never return into pytest
        try:
            out = run_chunks(lambda c: c.start * 10, chunks, workers=2)
            os.write(w, repr(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("run_chunks hung in a forked child")
    assert os.read(r, 1000).decode() == "[0, 10, 20, 30]"
    os.close(r)
