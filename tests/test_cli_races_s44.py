"""The batch CLI's races and ends, reviewed (session 44): a standard output closed by its
reader (``napari-sam models list | head -1``); the ``--keep-work`` mark of a job that
failed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_runner import cli, cli_env
from test_cli_resume_s43 import auto_argv, blob_folder, done_reason

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
