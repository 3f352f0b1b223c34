"""The up and down sweeps of segment_volume at once (napari_sam.volume.sweeps): the same
results as one after the other, progress and cancel from the calling thread, errors of
either sweep, and the torch threads left as they were."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import torch

import napari_sam as ns
from napari_sam.volume import SlicePrompt, prompts_from_labels, segment_volume

HELPER = "napari-sam down sweep"


@pytest.fixture(scope="module")
def stack_emb():
    from napari_sam.synthetic import nuclei_3d

    sample = nuclei_3d(shape=(12, 128, 128), seed=5)
    return sample, ns.embed(sample.image, ns.load_model("demo"), compute=True)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The tests run at one torch thread, so that the thread plan alone says how many
    workers decode (and the threads of a plain decode are the same in every run)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _workers(monkeypatch, n: int) -> None:
    """Decode workers as a thread plan of ``n`` would give (1: the sweeps run in turn)."""
    monkeypatch.setattr("napari_sam.device.planned_workers", lambda: n)


def _threads_seen(pred):
    """Wrap ``pred.predict_batch`` to record the name of each thread that decodes."""
    seen, original = [], pred.predict_batch

    def predict_batch(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return original(*args, **kwargs)

    pred.predict_batch = predict_batch
    return seen, original


def _run(emb, prompts, monkeypatch, workers, **kw):
    """segment_volume with a fresh predictor (a used one may hold click caches, whose
    decoder rounds differently from the plain one); returns (result, decoding threads)."""
    _workers(monkeypatch, workers)
    pred = ns.Predictor(emb.predictor.model, precision=emb.predictor.precision)
    seen, _ = _threads_seen(pred)
    try:
        return segment_volume(emb, prompts, predictor=pred, **kw), seen
    finally:
        monkeypatch.undo()


def _prompts(sample, clicks: bool):
    """Each nucleus seeded on its widest slice: by its mask, or by a click at its centre."""
    prompts = prompts_from_labels(sample.labels)
    if not clicks:
        return prompts
    from napari_sam.volume.mask_prompts import center_from_mask

    out = {}
    for i, p in prompts.items():
        z = p.slice if isinstance(p, SlicePrompt) else p[0].slice
        out[i] = SlicePrompt(z, points=[center_from_mask(sample.labels[z] == i)])
    return out


@pytest.mark.parametrize("clicks, mode", [(False, "auto"), (True, "auto"), (True, "box")])
def test_sweeps_at_once_give_the_results_of_one_after_the_other(stack_emb, monkeypatch,
                                                                clicks, mode):
    sample, emb = stack_emb
    prompts = _prompts(sample, clicks)
    assert len(prompts) >= 5
    one, seen_one = _run(emb, prompts, monkeypatch, 1, mode=mode)
    both, seen_both = _run(emb, prompts, monkeypatch, 2, mode=mode)
    assert HELPER not in seen_one
    assert HELPER in seen_both and threading.current_thread().name in seen_both
    np.testing.assert_array_equal(one.labels, both.labels)
    assert one.labels.max() >= 5
    assert one.scores == both.scores
    assert one.stop_reasons == both.stop_reasons
    assert one.slice_range == both.slice_range
    assert one.decoder_calls == both.decoder_calls
    np.testing.assert_array_equal(one.calls_per_slice, both.calls_per_slice)
    assert not any(t.name == HELPER for t in threading.enumerate())


def test_progress_comes_from_the_calling_thread_once_per_slice(stack_emb, monkeypatch):
    sample, emb = stack_emb
    calls = []
    res, seen = _run(emb, prompts_from_labels(sample.labels), monkeypatch, 2,
                     progress=lambda d, t: calls.append((d, t, threading.current_thread().name)))
    assert HELPER in seen
    # the stack's slices per object (not 2 Z, one per direction)
    n = sample.labels.shape[0] * len(np.unique(sample.labels)[1:])
    done = [d for d, _, _ in calls]
    assert {t for _, t, _ in calls} == {n} and done == sorted(set(done)) and done[-1] == n
    assert len(done) > 2  # it moves as the objects are carried, not only at the end
    assert {name for *_, name in calls} == {threading.current_thread().name}


class Cancelled(Exception):
    pass


def test_a_cancel_stops_both_sweeps_and_restores_the_torch_threads(stack_emb, monkeypatch):
    sample, emb = stack_emb
    torch.set_num_threads(2)  # each sweep runs at one; the caller's two come back
    before = torch.get_num_threads()

    def progress(done, total):
        if done >= 3:
            raise Cancelled

    _workers(monkeypatch, 2)
    seen, original = _threads_seen(emb.predictor)
    try:
        with pytest.raises(Cancelled):
            segment_volume(emb, prompts_from_labels(sample.labels), progress=progress)
    finally:
        emb.predictor.predict_batch = original
        monkeypatch.undo()
    assert HELPER in seen
    assert not any(t.name == HELPER for t in threading.enumerate())  # joined, not left running
    assert torch.get_num_threads() == before
    later = []
    t = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert later == [before]  # what threads started later begin with


def test_an_error_in_the_down_sweep_is_raised_after_both_stop(stack_emb, monkeypatch):
    sample, emb = stack_emb
    pred = emb.predictor
    original = pred.predict_batch

    def predict_batch(*args, **kwargs):
        if threading.current_thread().name == HELPER:
            raise RuntimeError("out of memory in the down sweep")
        return original(*args, **kwargs)

    _workers(monkeypatch, 2)
    pred.predict_batch = predict_batch
    try:
        with pytest.raises(RuntimeError, match="down sweep"):
            segment_volume(emb, prompts_from_labels(sample.labels))
    finally:
        pred.predict_batch = original
        monkeypatch.undo()
    assert not any(t.name == HELPER for t in threading.enumerate())


def test_chains_that_meet_between_annotated_slices_sweep_one_after_the_other(stack_emb,
                                                                             monkeypatch):
    """A down chain that starts where its up partner ended cannot run beside it."""
    sample, emb = stack_emb
    prompts = prompts_from_labels(sample.labels)
    k, first = next(iter(prompts.items()))
    z0 = first.slice if isinstance(first, SlicePrompt) else first[0].slice
    lab = sample.labels
    zs = [z for z in range(lab.shape[0]) if (lab[z] == k).any()]
    far = max(zs, key=lambda z: abs(z - z0))
    assert abs(far - z0) >= 2  # a gap for the pair of chains to fill
    prompts[k] = [SlicePrompt(z0, mask=lab[z0] == k), SlicePrompt(far, mask=lab[far] == k)]
    one, _ = _run(emb, prompts, monkeypatch, 1)
    both, seen = _run(emb, prompts, monkeypatch, 2)
    assert HELPER not in seen
    np.testing.assert_array_equal(one.labels, both.labels)


def test_no_sweeps_at_once_on_a_gpu_or_with_one_worker(monkeypatch):
    from types import SimpleNamespace

    from napari_sam.volume.sweeps import sweeps_at_once

    cpu, gpu = SimpleNamespace(device=torch.device("cpu")), SimpleNamespace(
        device=torch.device("cuda"))
    _workers(monkeypatch, 2)
    assert sweeps_at_once(cpu, [])
    assert not sweeps_at_once(gpu, [])
    _workers(monkeypatch, 1)
    assert not sweeps_at_once(cpu, [])


def test_the_down_sweep_runs_in_the_callers_inference_mode(stack_emb, monkeypatch):
    """Autograd and inference modes are per thread: the helper takes the caller's (an
    in-place step on an inference tensor fails outside inference mode)."""
    import napari_sam.volume.propagator as propagator

    sample, emb = stack_emb
    seen, upsample = [], propagator.upsample_logits

    def recording(*args, **kwargs):
        seen.append((threading.current_thread().name, torch.is_inference_mode_enabled()))
        return upsample(*args, **kwargs)

    _workers(monkeypatch, 2)
    monkeypatch.setattr(propagator, "upsample_logits", recording)
    with torch.inference_mode():
        segment_volume(emb, prompts_from_labels(sample.labels))
    assert {name for name, _ in seen} >= {HELPER, threading.current_thread().name}
    assert all(mode for _, mode in seen)


def _two_overlapping(sample):
    """Two nuclei whose z-ranges overlap, one clicked on its lowest slice (only an up chain
    runs) and one on its highest (only a down chain): each slice of the overlap is decoded
    for one object by each sweep, one prompt per call."""
    from napari_sam.volume.mask_prompts import center_from_mask

    lab = sample.labels
    ext = {int(i): (min(zs), max(zs)) for i in np.unique(lab)[1:]
           for zs in [[z for z in range(lab.shape[0]) if (lab[z] == i).any()]]}
    _, a, b = max((min(a1, b1) - max(a0, b0), a, b) for a, (a0, a1) in ext.items()
                  for b, (b0, b1) in ext.items() if a != b)
    assert min(ext[a][1], ext[b][1]) - max(ext[a][0], ext[b][0]) >= 3
    za, zb = ext[a][0], ext[b][1]
    return {a: SlicePrompt(za, points=[center_from_mask(lab[za] == a)]),
            b: SlicePrompt(zb, points=[center_from_mask(lab[zb] == b)])}


def test_single_prompt_sweeps_never_use_click_caches_so_timing_cannot_matter(stack_emb,
                                                                           monkeypatch):
    """A slice decoded by both sweeps would find a click cache or not depending on how they
    interleave, and the cached decoder rounds differently: sweeps decode without them (the
    seeds' decodes on their annotated slices, before the sweeps, are clicks and use them).
    Runs with random delays in the decodes give the results of one sweep after the other."""
    from napari_sam.models.cached_decoder import CachedDecoder

    sample, emb = stack_emb
    prompts = _two_overlapping(sample)
    cached = []
    decode = CachedDecoder.decode

    def counting(self, *args, **kwargs):
        cached.append(threading.current_thread().name)
        return decode(self, *args, **kwargs)

    for mode in ("box", "center"):
        ref, _ = _run(emb, prompts, monkeypatch, 1, mode=mode)
        for seed in range(3):
            rng = random.Random(seed)
            _workers(monkeypatch, 2)
            monkeypatch.setattr(CachedDecoder, "decode", counting)
            pred = ns.Predictor(emb.predictor.model, precision=emb.predictor.precision)
            original = pred.predict_batch

            def jittered(*args, _original=original, _rng=rng, **kwargs):
                time.sleep(_rng.random() * 0.05)
                return _original(*args, **kwargs)

            pred.predict_batch = jittered
            try:
                res = segment_volume(emb, prompts, predictor=pred, mode=mode)
            finally:
                monkeypatch.undo()
            assert res.scores == ref.scores, (mode, seed)
            np.testing.assert_array_equal(res.labels, ref.labels)
            assert res.stop_reasons == ref.stop_reasons
            # the seeds on their annotated slices decode on the caller's thread, as clicks
            # (the same way in the dock and in a replay); the sweeps' threads never use a cache
            swept = [name for name in cached if name != threading.current_thread().name]
            assert not swept, f"the sweeps used the click cache ({mode}, seed {seed})"
            cached.clear()


def test_slices_encoded_during_the_sweeps_use_the_callers_threads(monkeypatch):
    """Lazy embeddings encode missing slices inside ``emb[z]``; the encoder rounds by its
    thread count, so the sweeps (at half the threads each) encode at the caller's: the
    embeddings are bit for bit those of one sweep after the other."""
    from napari_sam.synthetic import nuclei_3d

    sample = nuclei_3d(shape=(12, 96, 96), seed=5)
    z = 5  # every nucleus on one slice is seeded there: the sweeps encode the other slices
    prompts = {int(i): SlicePrompt(z, mask=sample.labels[z] == i)
               for i in np.unique(sample.labels[z]) if i}
    assert len(prompts) >= 3
    model = ns.load_model("demo")
    torch.set_num_threads(2)
    out = []
    for at_once in (False, True):
        emb = ns.embed(sample.image, model)  # lazy: slices are encoded as propagation reads them
        if not at_once:  # the reference: one sweep after the other, all else the same
            monkeypatch.setattr("napari_sam.volume.sweeps.sweeps_at_once", lambda *a: False)
        res, seen = _run(emb, prompts, monkeypatch, 2)
        assert (HELPER in seen) == at_once
        out.append((res, torch.stack([emb[z].features for z in range(12)])))
    assert torch.equal(out[0][1], out[1][1])  # every slice encoded as one after the other
    # the decodes themselves ran at the sweeps' one thread against the reference's two, which
    # rounds differently (as any change of torch threads does): the same masks up to that
    assert float((out[0][0].labels == out[1][0].labels).mean()) >= 0.999


def test_progress_counts_the_slices_the_helper_finished_last(stack_emb, monkeypatch):
    """The down sweep may finish between the calling thread's last look and its end: its
    last slices are still reported (the GUI bar reaches the end)."""
    from napari_sam.volume.propagator import Propagator

    sample, emb = stack_emb
    sweep = Propagator.sweep

    def slow_up(self, chains, direction, *args, **kwargs):
        if direction < 0:
            time.sleep(0.5)  # the down sweep ends after the up sweep's last report
        sweep(self, chains, direction, *args, **kwargs)
        if direction > 0:  # ... while the caller is away
            deadline = time.monotonic() + 60
            while (any(t.name == HELPER for t in threading.enumerate())
                   and time.monotonic() < deadline):
                time.sleep(0.05)

    calls = []
    monkeypatch.setattr(Propagator, "sweep", slow_up)
    res, seen = _run(emb, prompts_from_labels(sample.labels), monkeypatch, 2,
                     progress=lambda d, t: calls.append((d, t)))
    assert HELPER in seen
    n = sample.labels.shape[0] * len(np.unique(sample.labels)[1:])
    assert calls[-1] == (n, n) and len(calls) == len(set(calls))


def test_every_slice_carried_reports_so_a_cancel_is_prompt(stack_emb, monkeypatch):
    """Many objects, one of them carried far: the callback runs on every slice that chain
    reaches (the dock cancels by raising there), not once per slice of the average (with
    progress averaged over 20 objects a cancel waited about 20 slices, reviewer of
    session 36)."""
    from napari_sam.volume.propagator import Propagator

    sample, emb = stack_emb
    z = sample.labels.shape[0]
    prompts = prompts_from_labels(sample.labels)
    steps = []
    original = Propagator._step

    def step(self, zz, live, direction):
        steps.append(zz)
        return original(self, zz, live, direction)

    calls = []
    _workers(monkeypatch, 1)  # one sweep after the other: every report from here
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Propagator, "_step", step)
        segment_volume(emb, prompts, progress=lambda d, t: calls.append((d, t)))
    assert len(prompts) >= 5 and {t for _, t in calls} == {z * len(prompts)}
    assert len(calls) >= len(steps)  # at least one report per slice decoded
