"""Out of memory, as a user on a small machine (a laptop, a cluster job with a memory limit)
meets it: the command names the problem and the options that lower its memory, never prints a
traceback, and a rerun resumes with the slices already done (docs/reliability.md).

One test runs under a real address-space limit (``ulimit -v``, set in the child process): a
stack whose propagation does not fit is refused before any work although the machine's
``MemAvailable`` would have room. The allocation failures inside a job are simulated at their
seam (torch's CPU allocator raising its ``RuntimeError``): where a real limit makes torch fail
depends on the threads and libraries of the machine, not reliably in a quick test.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_runner import cli
from napari_sam.memory import available_memory, is_out_of_memory, out_of_memory_words
from stacks import blob_stack

#: What torch's CPU allocator raises when ``ulimit -v`` (or the machine) has no room left.
TORCH_CPU_OOM = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't "
                 "allocate memory: you tried to allocate 25749900 bytes. Error code 12 (Cannot "
                 "allocate memory)")
LIMIT = 2_500_000_000  # bytes of address space: Python, torch and the demo model start in it


def _limited(limit: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return set_limit


def test_oom_errors_are_told_apart_and_sized():
    assert is_out_of_memory(RuntimeError(TORCH_CPU_OOM))
    assert is_out_of_memory(MemoryError("Unable to allocate 2.82 GiB for an array with shape "
                                        "(239, 2048, 2048) and data type int16"))
    assert not is_out_of_memory(RuntimeError("shape '[4, 3]' is invalid for input of size 7"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only allocators' errors
    assert out_of_memory_words(RuntimeError(TORCH_CPU_OOM)) == (
        "out of memory (an allocation of 25.7 MB failed)")
    assert out_of_memory_words(MemoryError("Unable to allocate 2.82 GiB for an array")) == (
        "out of memory (an allocation of 2.82 GiB failed)")
    assert out_of_memory_words(MemoryError()) == "out of memory"


def test_a_small_failed_allocation_is_sized_in_kb_not_zero_mb():
    """Near a memory limit a small allocation fails too: torch's "you tried to allocate 4096
    bytes" read as "an allocation of 0.0 MB failed"."""
    small = TORCH_CPU_OOM.replace("25749900 bytes", "4096 bytes")
    assert small != TORCH_CPU_OOM
    assert out_of_memory_words(RuntimeError(small)) == (
        "out of memory (an allocation of 4.1 kB failed)")
    assert out_of_memory_words(RuntimeError(small.replace("4096 bytes", "512 bytes"))) == (
        "out of memory (an allocation of 512 bytes failed)")


def test_available_memory_counts_ulimit_v():
    """A process under ``ulimit -v`` has no more room than the limit leaves, whatever the
    machine's ``MemAvailable`` says (was: only ``MemAvailable`` was read)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux's /proc tells the address space in use")
    code = ("from napari_sam.memory import available_memory; import resource, sys; "
            "print(available_memory())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=_limited(1_000_000_000), check=True, timeout=120).stdout
    assert 0 < int(out) < 1_000_000_000
    free = available_memory()
    assert free is not None and free > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v is Linux's here")
def test_a_stack_whose_propagation_cannot_fit_under_ulimit_is_refused_before_any_work(
        tmp_path):
    """``napari-sam auto big.npy`` under ``ulimit -v 2.5 GB``: the 300 x 1024 x 1024 stack's
    label volumes (7.5 GB) cannot fit; the job fails at once naming ``--no-propagate`` (was:
    the check read only the machine's MemAvailable, segmented every slice for hours, then
    died propagating)."""
    proc = _auto_on_zeros_under_the_limit(tmp_path / "big.npy", (300, 1024, 1024), "ZYX")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "300 x 1024 x 1024 stack needs about 7.5 GB" in proc.stderr, proc.stderr
    assert "available here (or under this job's memory limit); use --no-propagate" in proc.stderr
    assert not (tmp_path / "out" / "big_labels.tif").exists()
    assert not list((tmp_path / "out").glob(".napari-sam-work/**/z*.npz"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v is Linux's here")
def test_a_movie_whose_volumes_cannot_be_propagated_says_it_is_per_time_point(tmp_path):
    """A (2, 300, 1024, 1024) movie under ``ulimit -v 2.5 GB``: refused before any work as a
    stack is, saying the size is each time point's volume (was: "this 300 x 1024 x 1024
    stack", of a file whose shape has 4 numbers)."""
    proc = _auto_on_zeros_under_the_limit(tmp_path / "movie.npy", (2, 300, 1024, 1024), "TZYX")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1, said
    assert ("propagating the objects of this 300 x 1024 x 1024 movie's volume at each time "
            "point needs about 7.5 GB") in said, said
    assert not (tmp_path / "out" / "movie_labels.tif").exists()


def _auto_on_zeros_under_the_limit(big, shape, axes: str) -> subprocess.CompletedProcess:
    """``napari-sam auto`` on a ``.npy`` of zeros of ``shape`` (uint8, memory-mapped: no
    memory until read) with ``--axes axes``, under ``ulimit -v LIMIT``; output beside it in
    ``out``."""
    np.lib.format.open_memmap(big, mode="w+", dtype=np.uint8, shape=shape).flush()
    env = {"NAPARI_SAM_CACHE_DIR": str(big.parent / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "napari_sam.cli", "auto", big, "-o", big.parent / "out",
         "--threads", "1", "-q", "--axes", axes],
        capture_output=True, text=True, env=env, preexec_fn=_limited(LIMIT), timeout=120)


def _cli_under(tmp_path, limit_kib: int) -> subprocess.CompletedProcess:
    """``napari-sam auto a.npy`` with the demo model under ``ulimit -v limit_kib``."""
    img = tmp_path / "a.npy"
    np.save(img, np.zeros((32, 32), np.uint8))
    env = {"NAPARI_SAM_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    return subprocess.run(
        [sys.executable, "-m", "napari_sam.cli", "auto", img, "-o", tmp_path / "out",
         "--model", "demo", "--device", "cpu", "-q"],
        capture_output=True, text=True, env=env, preexec_fn=_limited(limit_kib * 1024),
        timeout=120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ulimit -v is Linux's here")
@pytest.mark.parametrize("limit_kib", [300_000, 780_000])
def test_an_address_space_limit_too_small_to_start_is_said_at_once(tmp_path, limit_kib):
    """``napari-sam auto`` under ``ulimit -v 300000`` / ``780000``: said at once, naming the
    limit and to raise it (was: ``error: ImportError: libtorch_cpu.so: failed to map segment
    from shared object``; at 780000, 100 % of a core for good in scipy's OpenBLAS start-up,
    deaf to SIGTERM and Ctrl-C: the test's timeout fails it)."""
    proc = _cli_under(tmp_path, limit_kib)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1, said
    assert said == (
        f"napari-sam: error: this process's address-space limit (ulimit -v {limit_kib}, "
        f"{limit_kib * 1024 / 1e9:.2f} GB) is too small: napari-sam auto needs at least 1.2 GB "
        "of address space to load torch and the demo model (a few GB for SAM's models); raise "
        "it (e.g. ulimit -v unlimited) and run it again")
    assert not (tmp_path / "out").exists()


def test_a_library_that_cannot_load_under_ulimit_v_is_out_of_memory(monkeypatch):
    """A library the loader cannot map under ``ulimit -v`` (a codec's, inside a job) is out of
    memory, named with the limit and to raise it (was: the bare ``ImportError``)."""
    import errno

    from napari_sam import memory

    err = ImportError("/venv/numcodecs/blosc.cpython-311-x86_64-linux-gnu.so: failed to map "
                      "segment from shared object")
    assert not is_out_of_memory(err)  # no limit: another cause (a noexec mount)
    monkeypatch.setattr(memory.resource, "getrlimit", lambda kind: (2_000_000_000, -1))
    assert is_out_of_memory(err)
    assert out_of_memory_words(err) == (
        "out of memory (loading blosc.cpython-311-x86_64-linux-gnu.so failed under this "
        "process's address-space limit, ulimit -v 1953125 (2.00 GB); napari-sam and torch "
        "need a few GB of address space: raise it, e.g. ulimit -v unlimited)")
    assert is_out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not is_out_of_memory(ImportError("libfoo.so: cannot open shared object file"))


@pytest.mark.parametrize("text", [
    "libx.so: failed to map segment from shared object: Operation not permitted",  # noexec
    "libgomp-a34b3233.so.1: cannot allocate memory in static TLS block",  # glibc's TLS
    "/mnt/env/lib/libc10.so: failed to map segment from shared object: Permission denied",
])
def test_a_loader_error_that_is_not_memory_is_not_called_out_of_memory(monkeypatch, text):
    """Under ``ulimit -v`` a library on a ``noexec`` mount, or one that needs glibc's static
    TLS block, failed as "out of memory ... raise it, e.g. ulimit -v unlimited", advice that
    cannot help: they are their own errors now."""
    from napari_sam import memory

    monkeypatch.setattr(memory.resource, "getrlimit", lambda kind: (2_000_000_000, -1))
    assert not is_out_of_memory(ImportError(text))
    assert not is_out_of_memory(OSError(text))  # ctypes.CDLL's


def test_a_bare_enomem_is_out_of_memory_in_its_own_words(monkeypatch):
    """An ``OSError`` ENOMEM that is no library (a memory map refused under ``ulimit -v``)
    names the limit and to raise it; it said "loading a library failed". A loader's text
    with "Cannot allocate memory" is a library out of memory with or without a limit."""
    import errno

    from napari_sam import memory

    enomem = OSError(errno.ENOMEM, "Cannot allocate memory")
    lib = ImportError("/venv/torch/lib/libtorch_cpu.so: failed to map segment from shared "
                      "object: Cannot allocate memory")
    monkeypatch.setattr(memory.resource, "getrlimit", lambda kind: (-1, -1))  # no limit
    assert is_out_of_memory(enomem) and out_of_memory_words(enomem) == "out of memory"
    assert out_of_memory_words(lib) == "out of memory (loading libtorch_cpu.so failed)"
    monkeypatch.setattr(memory.resource, "getrlimit", lambda kind: (2_000_000_000, -1))
    assert out_of_memory_words(enomem) == (
        "out of memory (under this process's address-space limit, ulimit -v 1953125 "
        "(2.00 GB): raise it, e.g. ulimit -v unlimited)")


def test_a_npy_that_cannot_be_mapped_under_ulimit_v_is_out_of_memory_not_damaged(
        tmp_path, tiny_model, offline_cli, capsys, monkeypatch):
    """``auto huge.npy`` (2.1 GB) under ``ulimit -v 1600000``: ``numpy.load(mmap_mode="r")``
    fails with ENOMEM, which is memory, with the limit (was: "Cannot read image ...: not a
    readable .npy array (OSError: [Errno 12] Cannot allocate memory). Check that the file is
    a complete TIFF ..."). Mapping is refused here as ``mmap`` refuses it under the limit."""
    import errno

    from napari_sam import memory

    inp = tmp_path / "huge.npy"
    np.save(inp, blob_stack(z=2, size=48))
    load = np.load

    def refused_map(file, mmap_mode=None, **kw):
        if mmap_mode:
            raise OSError(errno.ENOMEM, "Cannot allocate memory")
        return load(file, mmap_mode=mmap_mode, **kw)

    monkeypatch.setattr(np, "load", refused_map)
    limit = 200_000_000_000  # above what this process maps, so only the map fails
    monkeypatch.setattr(memory.resource, "getrlimit", lambda kind: (limit, -1))
    rc, _, err = cli(["auto", str(inp), "-o", str(tmp_path / "out"), "--model",
                      str(tiny_model), "-q"], capsys)
    assert rc == 1
    assert (f"huge.npy: out of memory (under this process's address-space limit, ulimit -v "
            f"{limit // 1024} (200.00 GB): raise it, e.g. ulimit -v unlimited): this file "
            "needs more memory than is free here") in " ".join(err.split())
    assert "not a readable .npy array" not in err


def test_auto_out_of_memory_names_the_options_and_a_rerun_resumes(tmp_path, tiny_model,
                                                                  offline_cli, capsys,
                                                                  monkeypatch):
    """torch's CPU allocator fails on slice 2 of 4: the summary line says out of memory and
    which options lower it (was: the bare ``RuntimeError: [enforce fail at alloc_cpu.cpp:127]
    ...`` with nothing to do); slices 0 and 1 stay in the work folder and the rerun, with the
    memory back, segments only the others."""
    import tifffile

    from napari_sam.automatic import crops

    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, blob_stack(z=4, size=48), imagej=True, metadata={"axes": "ZYX"})
    real, seen = crops.mask_statistics, []

    def fails_on_the_third_slice(*args, **kwargs):
        seen.append(1)
        if len(seen) > 2:
            raise RuntimeError(TORCH_CPU_OOM)
        return real(*args, **kwargs)

    monkeypatch.setattr(crops, "mask_statistics", fails_on_the_third_slice)
    args = ["auto", inp, "-o", tmp_path / "out", "--model", tiny_model, "--device", "cpu",
            "--threads", "1", "--points-per-side", "4", "--no-fill-gaps", "--keep-work",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    rc, _, err = cli([*args, "--batch-size", "2"], capsys)
    assert rc == 1
    line = " ".join(err.split())
    assert ("out of memory (an allocation of 25.7 MB failed): this file needs more memory than "
            "is free here (or than this job's memory limit allows); lower what it holds at once "
            "(--points-per-batch 16, --no-propagate (a stack's label volumes are held in "
            "memory), --batch-size 1), run fewer files at once") in line, err
    assert "then rerun the same command: the slices already done are kept" in line
    assert "alloc_cpu.cpp" not in err
    work = sorted(p.name for p in (tmp_path / "out").glob(".napari-sam-work/**/z*.npz"))
    assert work == ["z000000.npz", "z000001.npz"]
    assert not (tmp_path / "out" / "a_labels.tif").exists()
    done = []
    monkeypatch.setattr(crops, "mask_statistics",
                        lambda *a, **k: done.append(1) or real(*a, **k))
    rc, _, err = cli([*args, "--batch-size", "2"], capsys)
    assert rc == 0, err
    assert (tmp_path / "out" / "a_labels.tif").is_file()
    assert len(done) == 2  # the two slices left, not all four


def test_loading_the_model_out_of_memory_fails_the_file_saying_what_to_do(tmp_path, offline_cli, capsys,
                                                        monkeypatch):
    """Loading the model runs out of memory: the file fails saying so and what to do
    (was: ``MemoryError: Unable to allocate ...`` alone), exit 1, the input kept."""
    def no_room(*args, **kwargs):
        raise MemoryError("Unable to allocate 1.50 GiB for an array with shape (1,) and "
                          "data type float32")

    monkeypatch.setattr("napari_sam.batch.runners.get_model", no_room)
    inp = tmp_path / "a.tif"
    import tifffile

    tifffile.imwrite(inp, blob_stack(z=2, size=48), imagej=True, metadata={"axes": "ZYX"})
    rc, _, err = cli(["embed", inp, "-o", tmp_path / "out"], capsys)
    assert rc == 1
    assert "out of memory (an allocation of 1.50 GiB failed)" in err
    assert "--batch-size 1" in err and "rerun the same command" in err
    assert Path(inp).is_file()


def test_an_out_of_memory_outside_a_job_is_one_error_line(tmp_path, offline_cli, capsys,
                                                         monkeypatch):
    """A command that runs out of memory outside a batch job (here `train`): one error line
    naming the command and what to do, exit 1 (was: ``napari-sam: error: MemoryError: ...``)."""
    def no_room(args):
        raise RuntimeError(TORCH_CPU_OOM)

    monkeypatch.setattr("napari_sam.cli.app.cmd_train", no_room)
    rc, _, err = cli(["train", tmp_path, tmp_path, "-o", tmp_path / "m.pt"], capsys)
    assert rc == 1
    assert err.strip().splitlines()[-1] == (
        "napari-sam: error: out of memory (an allocation of 25.7 MB failed): napari-sam train "
        "needs more memory than is free here (or than this job's memory limit allows); free "
        "memory (close other programs, ask the cluster for more), or lower what it holds at "
        "once (a smaller --batch-size; see napari-sam train --help), then run it again")


def test_a_worker_killed_for_memory_fails_its_file_saying_what_to_do(tmp_path, tiny_model):
    """`auto --workers`: the worker running a file is SIGKILLed (what the out-of-memory killer
    does) as often as dask allows (here 0 retries): the file fails with a reason that says
    workers died, most often for memory, and what to do (was: dask's "KilledWorker: Attempted
    to run task 'run_task-5a1c...' on 4 different workers ... Inspecting worker logs is often
    a good next step"); the rerun does the file."""
    import os
    import signal
    import threading

    import dask
    import tifffile
    from distributed import Client, LocalCluster

    from napari_sam import batch

    inp = tmp_path / "a.tif"
    tifffile.imwrite(inp, blob_stack(z=4, size=48), imagej=True, metadata={"axes": "ZYX"})
    ctx = batch.Context(command="auto", model=str(tiny_model), out_dir=tmp_path / "out",
                        device="cpu", quiet=True, params={"points_per_side": 4})
    jobs = batch.make_jobs([inp], ctx)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with Client(cluster) as client:
            (pid,) = client.run(os.getpid).values()
        scheduler = cluster.scheduler

        def kill_when_it_runs():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if any(t.state == "processing" for t in scheduler.tasks.values()):
                    time.sleep(0.5)
                    os.kill(pid, signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_when_it_runs)
        killer.start()
        (res,) = batch.run_jobs(jobs, ctx, scheduler=cluster.scheduler_address)
        killer.join()
        assert res.status == "failed"
        assert res.reason == (
            "task failed on the cluster: every worker that ran it died (killed, most often for "
            "memory: the operating system's out-of-memory killer, the worker's memory limit, "
            "or the cluster job's); give each worker more memory: fewer --workers per machine "
            "(each holds its own model and slices), smaller --block-slices, lower what each "
            "holds at once (--points-per-batch 16, --no-propagate (a stack's label volumes are "
            "held in memory), --batch-size 1); then rerun the same command: the slices already "
            "done are kept"), res.reason
        (again,) = batch.run_jobs(jobs, ctx, scheduler=cluster.scheduler_address)
    assert again.status == "done", again.reason


def test_the_objects_summary_of_a_large_volume_needs_one_slab_not_four_copies(monkeypatch):
    """The output metadata's objects of `segment`/`auto` labels: counted slab by slab (was: an
    int64 copy of the whole volume, 1.6 GB for 200 x 1024 x 1024, which was `segment`'s peak:
    2.5 GB RSS for a 0.4 GB label volume); the same objects as counted whole."""
    import tracemalloc

    from napari_sam import io as nio
    from napari_sam.io import output_metadata

    rng = np.random.default_rng(3)
    labels = np.zeros((80, 512, 512), np.uint16)
    for oid in (1, 7, 300):
        z0, r0, c0 = rng.integers(0, 60), rng.integers(0, 400), rng.integers(0, 400)
        labels[z0:z0 + 15, r0:r0 + 90, c0:c0 + 60] = oid
    labels[79, 0, 0] = 7  # one object in two places: its box spans both
    whole = nio.label_objects_summary(labels.astype(np.int32))  # one slab: the reference
    monkeypatch.setattr(output_metadata, "SUMMARY_SLAB_VOXELS", 1 << 20)
    tracemalloc.start()
    try:
        got = nio.label_objects_summary(labels, {1: 0.5, 7: 0.25, 300: 1.0})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [o["id"] for o in got] == [1, 7, 300]
    for a, b in zip(got, whole):
        assert (a["area"], a["bbox"], a["slice_range"]) == (b["area"], b["bbox"],
                                                            b["slice_range"])
    assert got[1]["bbox"][1:3] == [0, 0] and got[1]["bbox"][3] == 80  # z stop, both places
    assert got[1]["score"] == 0.25
    assert peak < labels.nbytes // 2, peak  # the whole int64 copy was 4 x labels.nbytes
