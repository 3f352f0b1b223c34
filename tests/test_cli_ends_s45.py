"""The batch CLI's ends, reviewed (session 45): a failed file's exit code 1 against a closed
standard output (``napari-sam auto ... | head -1``); ``--block-slices`` stopped by Ctrl-C
before any work keeps the ``--keep-work`` mark; the worker processes of a local cluster
are ended through handles of their own, never an unrelated process that took their id."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from test_cli_races_s44 import closed_stdout_run, ctrl_c_keeps_the_keep_work_mark
from test_cli_resume_s43 import auto_argv, blob_folder

pytestmark = pytest.mark.usefixtures("offline_cli")


def not_a_tiff(path):
    """A ``.tif`` file that is no image (a file of the batch that fails); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a TIFF file\n" * 4)
    return path


def test_a_failed_file_exits_1_with_a_closed_stdout(tmp_path, tiny_model):
    """``napari-sam auto data/ -o out/ | head -1`` with a file that fails: the summary found
    its reader gone and the command exited 141, as one that succeeded does, so ``set -o
    pipefail`` or a check of ``$?`` could not tell that an output is missing. The failure
    wins: exit code 1, the good file's output written, no traceback."""
    data = blob_folder(tmp_path / "data", n=1, z=2)
    not_a_tiff(data / "bad.tif")
    rc, err = closed_stdout_run([*auto_argv(data, tmp_path / "out", tiny_model), "-q"],
                                tmp_path)
    assert "Traceback" not in err, err
    assert "FAILED   bad.tif: Cannot read image" in err, err
    assert rc == 1
    assert (tmp_path / "out" / "b0_labels.tif").is_file()


class ClosedPipe:
    """A standard output whose reader has gone: every write raises ``BrokenPipeError`` (as
    a summary longer than the output's buffer meets it, before the command returns)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("bad, code", [(False, 141), (True, 1)])
def test_a_summary_that_meets_a_closed_stdout_keeps_a_failures_code(tmp_path, tiny_model,
                                                                   monkeypatch, capsys, bad,
                                                                   code):
    """The summary's write failing inside the command (its reader gone): the command ended
    with 141 whether or not a file failed; a failed file's 1 wins, a run without failures
    still ends with 141, and nothing is said on stderr but the failed file's line."""
    from napari_sam.cli import main

    data = blob_folder(tmp_path / "data", n=1, z=2)
    if bad:
        not_a_tiff(data / "bad.tif")
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    rc = main([*auto_argv(data, tmp_path / "out", tiny_model), "-q"])
    err = capsys.readouterr().err
    assert rc == code, err
    assert "napari-sam: error" not in err and "Traceback" not in err, err
    assert ("FAILED   bad.tif: Cannot read image" in err) == bad, err


@pytest.mark.slow
def test_ctrl_c_before_a_blocked_job_added_anything_keeps_the_keep_work_mark(
        tmp_path, tiny_model, monkeypatch, capsys):
    """``--keep-work``, then other linking options through ``--workers 1 --block-slices 4``,
    stopped by Ctrl-C after the command's process took the work folder's "finished" mark
    and before any block ran: the mark was lost (a serial run keeps it), and the rerun
    called the slices a finished run kept "kept 8 of 8 slices an interrupted run finished".
    They are still said as a finished run's."""
    pytest.importorskip("distributed")
    from napari_sam.batch import distributed

    ctrl_c_keeps_the_keep_work_mark(tmp_path, tiny_model, monkeypatch, capsys, distributed,
                                    "prepare_auto_work", "--workers", "1", "--block-slices",
                                    "4")


def sleeper() -> subprocess.Popen:
    """A child process that sleeps a minute (a worker, or an unrelated process)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("pidfd", [True, False])
def test_a_process_that_took_an_ended_workers_id_is_never_signalled(monkeypatch, pidfd):
    """The worker processes still running 10 s after the cluster closed were killed by
    process id: by then a worker could have ended and its id been given to an unrelated
    process, which got SIGKILL. Handles of the worker itself are ended instead (a pidfd;
    without one, the id with its start time checked): a handle of an ended worker whose id
    another process now has (simulated: the handle given that process's id) signals nothing,
    and a worker still running is killed."""
    from dataclasses import replace

    from napari_sam.batch.worker_processes import OwnProcess, end_worker_processes

    if not pidfd:
        monkeypatch.delattr("os.pidfd_open", raising=False)
    worker, running = sleeper(), sleeper()
    ended, alive = OwnProcess.of(worker.pid), OwnProcess.of(running.pid)
    assert (ended.fd is not None) <= pidfd
    worker.kill()
    worker.wait()  # ended and reaped: its id is free for another process
    time.sleep(0.1)  # a later clock tick than the worker's start (/proc's start time: 10 ms)
    other = sleeper()
    try:
        reused = replace(ended, pid=other.pid)  # the system gave the worker's id to `other`
        assert not reused.runs()
        end_worker_processes([reused, alive], time.monotonic() + 0.2)
        assert other.poll() is None  # never signalled
        assert running.wait(timeout=10) == -9  # the worker still running: killed
    finally:
        for proc in (other, running):
            proc.kill()
            proc.wait()
        ended.close()
        alive.close()


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="no pidfd here")
def test_a_worker_is_killed_where_signals_through_a_pidfd_are_refused(monkeypatch):
    """A container whose seccomp filter allows ``pidfd_open`` but refuses
    ``pidfd_send_signal`` (EPERM): the worker still running after the wait was not killed
    (the error was taken for "it has ended"), so it could finish a file after the summary.
    It is killed by its id, its start time checked."""
    import signal

    from napari_sam.batch.worker_processes import OwnProcess, end_worker_processes

    worker = sleeper()
    handle = OwnProcess.of(worker.pid)
    try:
        if handle.fd is None:
            pytest.skip("pidfd_open refused here")

        def refused(fd, sig, *args):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(signal, "pidfd_send_signal", refused)
        end_worker_processes([handle], time.monotonic() + 0.2)
        assert worker.wait(timeout=10) == -signal.SIGKILL
    finally:
        worker.kill()
        worker.wait()
        handle.close()
