"""Slices segmented at once by ``napari-sam auto`` (the slice workers of the CPU thread
policy): the same labels with 1 or N workers, errors reach the caller, one torch thread per
worker, and the CLI's ``--threads``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_sam import batch
from napari_sam.batch.auto_runner import run_slices

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _demo_path() -> Path:
    from napari_sam.models.registry import where

    return where("demo")


needs_demo = pytest.mark.skipif(
    not _demo_path().is_file(),
    reason=f"the bundled demo model is not installed ({_demo_path()} missing)",
)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_run_slices_embeds_the_same_batches_and_segments_every_slice(workers):
    main_threads = torch.get_num_threads()
    batches, seen, lock = [], {}, threading.Lock()

    def embedded(batch_):
        assert threading.current_thread() is threading.main_thread()
        batches.append(list(batch_))
        return [(z, f"emb{z}", z * 10) for z in batch_]

    def segment(z, emb, image):
        with lock:
            seen[z] = (emb, image, torch.get_num_threads(), torch.is_inference_mode_enabled(),
                       threading.current_thread() is threading.main_thread())

    todo = [0, 1, 2, 5, 6, 7, 8, 9, 11]
    run_slices(todo, 4, embedded, segment, workers)
    assert batches == [[0, 1, 2, 5], [6, 7, 8, 9], [11]]
    assert sorted(seen) == todo
    assert all(seen[z][:2] == (f"emb{z}", z * 10) for z in todo)
    assert all(s[3] for s in seen.values())  # inference mode in every worker
    if workers == 1:  # everything in this thread, with its threads
        assert {s[2:] for s in seen.values()} == {(main_threads, True, True)}
    else:  # pool threads of one torch thread each
        assert {s[2] for s in seen.values()} == {1}
        assert not any(s[4] for s in seen.values())
    assert torch.get_num_threads() == main_threads  # the main thread's setting is kept


def test_run_slices_raises_the_first_worker_error_and_stops_embedding():
    batches = []

    def embedded(batch_):
        batches.append(list(batch_))
        return [(z, None, None) for z in batch_]

    def segment(z, emb, image):
        if z == 2:
            raise ValueError("slice 2 is broken")

    with pytest.raises(ValueError, match="slice 2 is broken"):
        run_slices(list(range(40)), 2, embedded, segment, 2)
    assert len(batches) < 20  # at most 2 * workers slices wait: it stopped early


def test_ctrl_c_stops_the_workers_at_their_next_progress_report():
    """Ctrl-C while a worker segments a tiled image's one slice (minutes): the main thread
    waited for it, the command ran on for minutes after printing its summary, and a second
    Ctrl-C aborted the process (helper walk-through, session 30). The stop event is set
    before the workers are waited for; a worker that checks it stops at once."""
    import signal
    import time

    stop = threading.Event()
    seen = []

    def segment(z, emb, image):
        t = time.monotonic()
        while time.monotonic() - t < 60:  # a long slice, reporting progress
            if stop.is_set():
                seen.append(z)
                raise KeyboardInterrupt
            time.sleep(0.01)

    main = threading.main_thread().ident  # Ctrl-C reaches the main thread, waiting on them
    threading.Timer(0.5, lambda: signal.pthread_kill(main, signal.SIGINT)).start()
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_slices([0], 1, lambda b: [(z, None, None) for z in b], segment, 2, stop)
    assert time.monotonic() - t0 < 10 and seen == [0]


@needs_demo
def test_tiled_windows_can_encode_in_whole_slices_per_thread(monkeypatch):
    """The CLI picks its threads from the machine's load, and a tiled image's windows encode
    with that many threads (features up to 0.08 apart between 1 and 2 threads; a 1100 px
    image gave 131 of 413 objects other ids, helper walk-through, session 30). Windows can
    encode in whole slices per thread (the same features whatever the thread count; a store
    does it): ``auto`` does not ask for it, as one window per encoder call, padded to the
    thread count, took up to 5 times longer (in bfloat16, what ``auto`` runs on such a CPU;
    float32 kernels differ by a few 1e-3 with the thread count, whole slices or not)."""
    import napari_sam as ns
    import napari_sam.tiled_stack as tiled_stack
    from napari_sam.device import cpu_bf16_feature
    from napari_sam.synthetic import nuclei_2d

    if cpu_bf16_feature() is None:
        pytest.skip("this CPU has no native bfloat16: float32 encodings differ with the "
                    "thread count anyway")
    img = nuclei_2d((600, 600), seed=7).image
    model = ns.load_model("demo")
    threads = torch.get_num_threads()
    feats = {}
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            emb = tiled_stack.TiledStackEmbeddings(img[None], model, device="cpu",
                                                   precision="bf16")
            emb.whole_slices = True
            emb.compute([0])
            feats[n] = torch.stack([emb.window_stack(i)[0].features.float()
                                    for i in range(len(emb.tiling))])
    finally:
        torch.set_num_threads(threads)
    assert len(emb.tiling) == 9 and torch.equal(feats[1], feats[2])


@needs_demo
def test_auto_labels_are_identical_for_one_and_several_workers(tmp_path):
    from napari_sam.synthetic import nuclei_3d

    stack = nuclei_3d((7, 96, 96), seed=3).image
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "stack.tif", stack)
    labels = {}
    for workers in (1, 3):
        ctx = batch.Context(command="auto", out_dir=tmp_path / f"out{workers}", quiet=True,
                            batch_size=2, slice_workers=workers,
                            params={"foreground": "auto", "propagate": True})
        jobs = batch.make_jobs([src / "stack.tif"], ctx)
        (res,) = batch.run_jobs(jobs, ctx)
        assert res.status == "done", res.reason
        labels[workers] = tifffile.imread(jobs[0].output)
    assert labels[1].max() >= 3  # nuclei were found
    assert labels[1].dtype == labels[3].dtype
    np.testing.assert_array_equal(labels[1], labels[3])  # exact label values


def _cli(*args, cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "NAPARI_SAM_THREADS", "DISPLAY")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, "-m", "napari_sam.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@needs_demo
def test_cli_honours_threads_and_the_environment(tmp_path):
    from napari_sam.synthetic import nuclei_3d

    tifffile.imwrite(tmp_path / "stack.tif", nuclei_3d((5, 64, 64), seed=4).image)
    three = _cli("auto", "stack.tif", "-o", "a", "--threads", "3", cwd=tmp_path)
    assert "3 threads), 3 slices at once" in three.stderr
    one = _cli("auto", "stack.tif", "-o", "b", cwd=tmp_path,
               extra_env={"NAPARI_SAM_THREADS": "1"})
    note = [ln for ln in one.stderr.splitlines() if "device " in ln]
    assert note and note[0].endswith("1 thread)")  # one slice at a time: not mentioned
    seg = _cli("embed", "stack.tif", "-o", "e", "--threads", "2", cwd=tmp_path)
    assert "2 threads)" in seg.stderr and "slices at once" not in seg.stderr
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "a" / "stack_labels.tif"),
                                  tifffile.imread(tmp_path / "b" / "stack_labels.tif"))
