"""The batch CLI's races and ends, reviewed (session 44): a standard output closed by its
reader (``napari-sam models list | head -1``); the ``--keep-work`` mark of a job that
failed; a ``--workers`` run stopped by Ctrl-C whose worker finished a file after the
summary was built."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cli_runner import cli, cli_env, interrupt_in, patched_on_import
from napari_sam import io as nio
from test_cli_resume_s43 import (
    auto_argv,
    blob_folder,
    ctrl_c_after_three_embeddings,
    done_reason,
    resumed_three_of_six_as_one_run,
)

pytestmark = pytest.mark.usefixtures("offline_cli")


def closed_stdout_run(argv, tmp_path) -> tuple[int, str]:
    """``python -m napari_sam.cli ARGV`` writing to a pipe whose reader has already gone
    (what ``| head -1`` leaves once it has its line): (exit code, stderr)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "napari_sam.cli", *map(str, argv)],
                              env=cli_env(tmp_path), stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write)
    return done.returncode, done.stderr


@pytest.mark.parametrize("argv", [["models", "list"], ["--help"], ["auto", "--help"]])
def test_a_closed_stdout_ends_quietly(tmp_path, argv):
    """``napari-sam models list | head -1`` ended with ``napari-sam: error: BrokenPipeError:
    [Errno 32] Broken pipe`` and exit code 1; like Unix tools it ends quietly: exit code
    141 (128 + SIGPIPE, what a shell reports of a tool SIGPIPE ended), or 0 where argparse
    printed the help, and nothing on stderr."""
    rc, err = closed_stdout_run(argv, tmp_path)
    assert err == ""
    assert rc == (0 if "--help" in argv else 141)


def test_an_auto_summary_to_a_closed_stdout_ends_quietly(tmp_path, tiny_model):
    """An ``auto`` run whose lines and summary go to a closed pipe: its output is written
    (the file's job ran before its line was printed), no error text, exit code 141."""
    data = blob_folder(tmp_path / "data", n=1, z=2)
    rc, err = closed_stdout_run([*auto_argv(data, tmp_path / "out", tiny_model), "-q"],
                                tmp_path)
    assert "error" not in err and "Traceback" not in err, err
    assert rc == 141
    assert (tmp_path / "out" / "b0_labels.tif").is_file()


def test_a_failed_job_keeps_the_keep_work_mark(tmp_path, tiny_model, monkeypatch, capsys):
    """``--keep-work``, then other linking options, failing with an error after the job took
    the work folder's "finished" mark (here while it propagates): the mark was lost, and the
    rerun called the slices a finished run kept "kept 8 of 8 slices an interrupted run
    finished". They are still said as a finished run's, as before the failure."""
    from napari_sam.batch import auto_runner

    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1", "--keep-work")
    assert done_reason(argv, capsys)[0] == ""

    def fails(*args, **kwargs):
        raise RuntimeError("the disk went away")

    with monkeypatch.context() as patched:
        patched.setattr(auto_runner, "_auto_propagate", fails)
        rc, stdout, _ = cli([*argv, "--link-iou", "0.3"], capsys)
    assert rc == 1 and "the disk went away" in stdout
    reason, _ = done_reason([*argv, "--link-iou", "0.3"], capsys)
    assert reason == ("recomputed: parameters changed: link_iou 0.25 -> 0.3; reused: 8 of 8 "
                      "slices from a finished run's work folder (--keep-work)")


def ctrl_c_keeps_the_keep_work_mark(tmp_path, tiny_model, monkeypatch, capsys, module,
                                    name: str, *options: str) -> None:
    """``auto --keep-work`` on an 8-slice stack, then again with other linking options (and
    ``options``) stopped by Ctrl-C raised from ``module.name`` before the job added anything
    to its work folder (exit 130): the rerun must still say the slices are a finished run's
    (the mark kept), not "kept 8 of 8 slices an interrupted run finished"."""
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1", "--keep-work")
    assert done_reason(argv, capsys)[0] == ""

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(module, name, ctrl_c)
        rc, _, err = cli([*argv, "--link-iou", "0.3", *options], capsys)
    assert rc == 130, err
    reason, _ = done_reason([*argv, "--link-iou", "0.3"], capsys)
    assert reason == ("recomputed: parameters changed: link_iou 0.25 -> 0.3; reused: 8 of 8 "
                      "slices from a finished run's work folder (--keep-work)")


def test_ctrl_c_before_a_job_added_anything_keeps_the_keep_work_mark(tmp_path, tiny_model,
                                                                    monkeypatch, capsys):
    """``--keep-work``, then other linking options stopped by Ctrl-C while the model loads
    (nothing added to the work folder yet): the mark was lost, and the rerun called the
    slices a finished run kept "kept 8 of 8 slices an interrupted run finished". They are
    still said as a finished run's."""
    from napari_sam.batch import runners

    ctrl_c_keeps_the_keep_work_mark(tmp_path, tiny_model, monkeypatch, capsys, runners,
                                    "get_model")


#: ``sitecustomize`` (``{flags}``: a folder for its flag files, ``{output}``: the output of
#: ``b0.tif``). In a worker process, ``auto`` holds once it saved its first slice (its pid in
#: ``worker.pid``, then ``held``) until the summary is built (``summary``); in the command's
#: process, closing the local cluster times out at once (as on a loaded machine: its
#: workers go on), and the process ends only when the worker has written the output or
#: ended (as a slow interpreter shutdown gives a worker time to finish its file).
WORKER_FINISHES_AFTER_THE_SUMMARY = """
import atexit, importlib.abc, importlib.util, os, sys, time
from pathlib import Path
FLAGS, OUTPUT = Path(r"{flags}"), Path(r"{output}")

def runs(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return open(f"/proc/{{pid}}/stat").read().rpartition(")")[2].split()[0] != "Z"

def in_a_worker():
    try:
        from distributed import get_worker
        get_worker()
        return True
    except Exception:
        return False

def hold_auto(module):
    real = module._save_slice
    def save(*args):
        real(*args)
        if in_a_worker() and not (FLAGS / "held").exists():
            (FLAGS / "worker.pid").write_text(str(os.getpid()))
            (FLAGS / "held").touch()
            while not (FLAGS / "summary").exists():
                time.sleep(0.05)
    module._save_slice = save

def close_times_out(module):
    def close(self, *args, **kwargs):
        raise TimeoutError("closing the cluster timed out")
    module.LocalCluster.close = close

def late_exit(module):
    real = module.summary
    def summary(*args, **kwargs):
        real(*args, **kwargs)
        (FLAGS / "summary").touch()
        atexit.register(wait_for_the_worker)
    module.summary = summary

def wait_for_the_worker():
    from napari_sam import io as nio
    pid = int((FLAGS / "worker.pid").read_text())
    deadline = time.monotonic() + 120
    while runs(pid) and time.monotonic() < deadline:
        if (nio.read_output_metadata(OUTPUT) or {{}}).get("status") == "complete":
            return
        time.sleep(0.05)

PATCHES = {{"napari_sam.batch.auto_runner": hold_auto, "distributed.deploy.local": close_times_out,
           "napari_sam.cli.batch_command": late_exit}}

class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        patch = PATCHES.pop(name, None)
        if patch is None:
            return None
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            patch(module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Hook())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_never_finishes_a_file_after_the_summary(tmp_path, tiny_model):
    """``--workers 1``, Ctrl-C while the worker segments ``b0.tif``, and closing the cluster
    times out (a loaded machine): the summary was built while the worker went on, and it
    wrote the output before the command ended, which the summary called "not run". Every
    worker process of the run has ended before the summary is built (waited for, then
    killed), so the summary is the truth about what the command leaves."""
    pytest.importorskip("distributed")
    from napari_sam.batch.worker_processes import process_runs

    data = blob_folder(tmp_path / "data", n=1, z=8)
    out, flags, site = tmp_path / "out", tmp_path / "flags", tmp_path / "site"
    flags.mkdir()
    site.mkdir()
    (site / "sitecustomize.py").write_text(WORKER_FINISHES_AFTER_THE_SUMMARY.format(
        flags=flags, output=out / "b0_labels.tif"))
    argv = auto_argv(data, out, tiny_model, "--batch-size", "1", "--workers", "1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_sam.cli", *argv],
                            env=cli_env(tmp_path, site), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    said = interrupt_in(proc, (flags / "held").exists)
    assert proc.returncode == 130, said
    complete = (nio.read_output_metadata(out / "b0_labels.tif") or {}).get("status")
    row = re.search(r"^  (done|not run) +b0\.tif ", said, re.M)
    assert row is not None, said
    assert row.group(1) == ("done" if complete == "complete" else "not run"), said
    assert not process_runs(int((flags / "worker.pid").read_text()))


def test_ending_the_workers_sends_no_signal_on_windows(monkeypatch):
    """Where processes cannot be asked whether they run without a signal (Windows:
    ``os.kill(pid, 0)`` is ``GenerateConsoleCtrlEvent(CTRL_C_EVENT, ...)``, a Ctrl-C to the
    console), the workers are not waited for nor killed by process id: ``process_runs``
    sent it to each worker, every 50 ms, then killed the process ids (maybe reused) after
    the wait."""
    import time

    from napari_sam.batch import worker_processes as wp

    sent = []
    with monkeypatch.context() as windows:  # (undone before pytest reports anything)
        windows.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
        windows.setattr(os, "name", "nt")
        wp.end_worker_processes([wp.OwnProcess(4321, None)], time.monotonic() + 0.2)
        runs = wp.process_runs(4321)
    assert runs and sent == []


def test_an_interrupted_session_replay_says_what_its_rerun_kept(tmp_path, tiny_model,
                                                               monkeypatch, capsys):
    """``segment -p session.json`` stopped by Ctrl-C after 3 of 6 slice embeddings: the
    rerun read them back from the work folder but said nothing of it (a replay had no resume
    record); it says what it kept, as a prompts file's rerun does, and its labels are those
    of an uninterrupted replay."""

    from napari_sam import session as S

    data = blob_folder(tmp_path / "data", n=1, z=6)
    sess = S.write_session(S.Session(
        image={"path": str(data / "b0.tif"), "name": "b0", "shape": [6, 64, 64]},
        model={"name": str(tiny_model), "is_file": True, "precision": "fp32"},
        operations=[{"op": "commit", "kind": "slice", "slice": 2, "overwrite": False,
                     "mask_label": 0, "written": [[0, 0]], "ids": [1],
                     "objects": [{"slice": 2, "points": [[20.0, 20.0]], "labels": [1],
                                  "key": "points", "candidate": 0, "n_candidates": 3,
                                  "mask_prompt": False}]}]),
        tmp_path / "b0.sam-session.json")
    argv = ["segment", data / "b0.tif", "-o", tmp_path / "out", "-p", sess, "--model",
            tiny_model, "--batch-size", "1", "--device", "cpu"]
    ctrl_c_after_three_embeddings(argv, capsys, monkeypatch)
    resumed_three_of_six_as_one_run(argv, tmp_path, capsys)


#: ``sitecustomize``: ``auto`` fails with an error as it propagates (in every process).
PROPAGATION_FAILS = patched_on_import("napari_sam.batch.auto_runner", """
def fails(*args, **kwargs):
    raise RuntimeError("the disk went away")
module._auto_propagate = fails
""")


@pytest.mark.slow
def test_a_failed_blocked_job_keeps_the_keep_work_mark(tmp_path, tiny_model, capsys):
    """As :func:`test_a_failed_job_keeps_the_keep_work_mark`, the failing run split into
    blocks on a worker (``--workers 1 --block-slices 4``: the command's process takes the
    mark before the blocks run, and the final task fails on the worker)."""
    pytest.importorskip("distributed")
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1", "--keep-work")
    assert done_reason(argv, capsys)[0] == ""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(PROPAGATION_FAILS)
    failed = subprocess.run([sys.executable, "-m", "napari_sam.cli", *argv, "--link-iou", "0.3",
                             "--workers", "1", "--block-slices", "4"], env=cli_env(tmp_path, site),
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "the disk went away" in failed.stdout, failed.stdout
    reason, _ = done_reason([*argv, "--link-iou", "0.3"], capsys)
    assert reason == ("recomputed: parameters changed: link_iou 0.25 -> 0.3; reused: 8 of 8 "
                      "slices from a finished run's work folder (--keep-work)")
