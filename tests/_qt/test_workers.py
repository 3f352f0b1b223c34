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
    assert not [t for t in threading.enumerate() if t.name.startswith("napari-sam")]


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
