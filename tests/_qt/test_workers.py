"""Jobs: progress, results, errors and cancellation (synchronous path, no Qt)."""

import threading
import time

import pytest

from napari_sam._qt.workers import run_job
from napari_sam.annotate.jobs import Cancelled, with_progress


def _slow(n, progress=None, log=None):
    for i in range(n):
        time.sleep(0.01)
        progress(i + 1, n)
        if log is not None:
            log.append(i)
    return "done"


def test_sync_job_reports_progress_and_result():
    seen, result = [], []
    job = run_job(
        with_progress(_slow, 5),
        description="t",
        on_progress=lambda d, t: seen.append((d, t)),
        on_returned=result.append,
        sync=True,
        progress_bar=False,
    )
    assert not job.running and result == ["done"] and seen[-1] == (5, 5)


def test_cancel_stops_core_function_and_skips_result():
    log, result, finished = [], [], []
    holder = {}

    def on_progress(done, total):
        if done == 2:
            holder["job"].cancel()

    from napari_sam._qt.workers import Job

    holder["job"] = job = Job("t")
    run_job(
        with_progress(_slow, 50, log=log),
        description="t",
        on_progress=on_progress,
        on_returned=result.append,
        on_finished=finished.append,
        sync=True,
        progress_bar=False,
        job=job,
    )
    assert result == [] and finished == [job] and job.cancelled
    assert len(log) <= 4  # stopped at the next progress call
    # no helper thread of with_progress ("napari-sam <function>") is left running (the
    # decode pool's threads, "napari-sam-decode_*", live on for the next decode by design)
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-sam ")]


def test_errors_reach_on_error():
    def boom(progress=None):
        progress(0, 1)
        raise ValueError("bad input")

    errors = []
    run_job(with_progress(boom), description="t", on_error=errors.append, sync=True,
            progress_bar=False)
    assert isinstance(errors[0], ValueError)


def test_cancelled_is_an_exception():
    with pytest.raises(Cancelled):
        raise Cancelled


def test_exit_stops_a_helper_thread_left_running():
    """A helper thread whose generator was abandoned mid-job (napari's window closed while
    the job ran) is stopped at its next progress call and joined by the exit handler, so
    the interpreter never shuts down with it inside a computation."""
    from napari_sam.annotate import jobs

    log = []
    gen = with_progress(_slow, 10_000, log=log)
    assert next(gen) == (1, 10_000)  # running; nobody closes the generator
    assert [t for t in threading.enumerate() if t.name == "napari-sam _slow"]
    assert jobs.stop_helper_threads(timeout=10) == []
    assert not [t for t in threading.enumerate() if t.name == "napari-sam _slow"]
    assert len(log) < 10_000  # stopped, not run to its end
    gen.close()
    assert jobs.stop_helper_threads(timeout=1) == []


def test_interpreter_exit_during_a_job_is_clean(tmp_path):
    """The process that exits while a job's helper thread runs torch code exits 0 (it used
    to abort with "terminate called without an active exception")."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import torch
        from napari_sam.annotate.jobs import with_progress

        def work(progress=None):
            x = torch.randn(400, 400)
            for i in range(100_000):
                x = torch.tanh(x @ x.T / 400)
                progress(i, 100_000)

        gen = with_progress(work)
        next(gen); next(gen)
        print("exiting", flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exiting" in out.stdout and "terminate called" not in out.stderr
