"""Jobs: progress, results, errors and cancellation (the synchronous path; one test forces a
race of the threaded path with a Qt event loop)."""

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


def test_reports_waiting_behind_a_nested_one_reach_the_callbacks_when_the_job_ends(
        qapp, monkeypatch):
    """Forces the race that dropped the final 6/6 of a SAM 2 propagation once in CI.

    napari's bar processes pending Qt events while it updates. Here the bar's first update
    lets the worker thread yield its last two reports and return, and processes events until
    the job has ended: both reports arrive nested (they wait behind the first) and the job's
    end is handled nested too. Both must still reach ``on_progress``, in order, after the
    first; the ended job's bar is not touched again.
    """
    import napari.utils
    from qtpy.QtWidgets import QApplication

    from napari_sam._qt.workers import Job

    job = Job("race")
    go = threading.Event()
    updates = []

    class NestingBar:
        """napari's progress bar as far as jobs use it; the first update nests the end."""

        def __init__(self, total=0, desc=""):
            self.total, self.n, self.closed = total, 0, False

        def set_description(self, desc):
            pass

        def close(self):
            self.closed = True

        def update(self, k):
            assert not self.closed, "a closed bar was updated"
            self.n += k
            updates.append(self.n)
            if len(updates) == 1:
                go.set()
                deadline = time.monotonic() + 30
                while job.running and time.monotonic() < deadline:
                    QApplication.processEvents()
                    time.sleep(0.001)
                assert not job.running, "the job's end was not handled within 30 s"

    monkeypatch.setattr(napari.utils, "progress", NestingBar)

    def gen():
        yield (1, 3)
        assert go.wait(30)
        yield (2, 3)
        yield (3, 3)
        return "done"

    seen, result, finished = [], [], []
    run_job(gen(), description="race", on_progress=lambda d, t: seen.append((d, t)),
            on_returned=result.append, on_finished=finished.append, job=job)
    deadline = time.monotonic() + 30
    while not finished and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.001)
    assert finished == [job] and result == ["done"] and not job.running
    assert seen == [(1, 3), (2, 3), (3, 3)]
    # the result filled the bar (3) before it closed; the later reports left it alone
    assert updates == [1, 3]


def test_a_job_failing_while_its_phase_waits_behind_a_nested_report_names_the_phase(
        qapp, monkeypatch):
    """The race behind "Failed: Computing SAM embeddings." without "(loading the model ...)"
    (test_job_failures failed so, now and then): the bar's first update processed the
    queued reports, the phase waited behind that update, and the error, handled nested,
    read the phase before it was set."""
    import napari.utils
    from qtpy.QtWidgets import QApplication

    from napari_sam._qt.workers import Job
    from napari_sam.annotate.jobs import Phase

    job = Job("race")
    go = threading.Event()
    updates = []

    class NestingBar:
        def __init__(self, total=0, desc=""):
            self.total, self.n = total, 0

        def set_description(self, desc):
            pass

        def close(self):
            pass

        def update(self, k):
            self.n += k
            updates.append(self.n)
            if len(updates) == 1:  # the phase and the error arrive while this one is shown
                go.set()
                deadline = time.monotonic() + 30
                while job.running and time.monotonic() < deadline:
                    QApplication.processEvents()
                    time.sleep(0.001)

    monkeypatch.setattr(napari.utils, "progress", NestingBar)

    def gen():
        yield (0, 2)
        assert go.wait(30)
        yield Phase("loading the model 'x'")
        raise RuntimeError("offline")

    phases_at_error, finished = [], []
    run_job(gen(), description="race", on_error=lambda err: phases_at_error.append(job.phase),
            on_finished=finished.append, job=job)
    deadline = time.monotonic() + 30
    while not finished and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.001)
    assert finished == [job]
    assert phases_at_error == ["loading the model 'x'"]


def test_napari_quitting_a_worker_stops_the_core_function_in_its_helper_thread(qapp):
    """napari quits every worker when its window closes (superqt's ``worker.quit()``): the
    worker stopped iterating without closing the job's generator, and segment everything ran
    on in its helper thread for a minute after the viewer was closed (session 33). The
    generator is closed on the worker's thread now: the helper stops at its next progress
    call, no result is applied, and the job counts as cancelled."""
    from qtpy.QtWidgets import QApplication

    log, result, finished = [], [], []
    job = run_job(with_progress(_slow, 100_000, log=log), description="t",
                  on_returned=result.append, on_finished=finished.append, progress_bar=False)
    deadline = time.monotonic() + 30
    while len(log) < 5 and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert job.worker is not None and len(log) >= 5
    job.worker.quit()  # what napari's window does on closing
    while not finished and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert finished == [job] and job.cancelled and result == []
    helpers = [t for t in threading.enumerate() if t.name == "napari-sam _slow"]
    assert not helpers, "the core function runs on after its worker was quit"
    n = len(log)
    time.sleep(0.2)
    assert len(log) == n


def test_cancel_while_the_worker_waits_stops_the_core_function_at_its_next_report(qapp):
    """Cancel pressed while the job's thread waits for the core function's next report: the
    function stops at that report. It ran one step more before (the generator is closed
    only once it yielded again): one SAM 2 slice, 20 s on a CPU."""
    from qtpy.QtWidgets import QApplication

    started, finished, result = [], [], []

    def steps(n, progress=None):
        for i in range(n):
            started.append(i)
            time.sleep(0.5)  # a slow step: Cancel is pressed during step 1
            progress(i + 1, n)
        return "done"

    job = None

    def on_progress(done, total):
        if done == 1:
            job.cancel()

    job = run_job(with_progress(steps, 20), description="t", on_progress=on_progress,
                  on_returned=result.append, on_finished=finished.append,
                  progress_bar=False)
    deadline = time.monotonic() + 30
    while not finished and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.01)
    assert finished == [job] and job.cancelled and result == []
    assert started == [0, 1]  # step 1 was under way; step 2 never started


def test_a_repeated_report_is_a_check_only():
    """segment_volume_sam2 calls progress again with the same count inside a slow slice (a
    chance to cancel): the bar is not sent the same report again."""
    seen = []

    def checks(progress=None):
        for done in (0, 0, 1, 1, 1, 2):
            progress(done, 2)
        return "done"

    run_job(with_progress(checks), description="t", sync=True, progress_bar=False,
            on_progress=lambda d, t: seen.append((d, t)))
    assert seen == [(0, 2), (1, 2), (2, 2)]
