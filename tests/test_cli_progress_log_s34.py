"""Progress written to a log (stderr a file or a pipe: a cluster job's output, ``2> log``):
tqdm's redraws filled it with carriage returns and ``ESC[A`` cursor moves (session 34). A
log now gets plain lines, only for phases that run long, and a terminal keeps its bars."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile

import napari_sam.batch.progress as P
from cli_runner import cli
from napari_sam.batch.context import Context
from stacks import blob_stack


@pytest.fixture
def stacks(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(d / f"{name}.tif", blob_stack(), imagej=True, metadata={"axes": "ZYX"})
    return d


def test_a_logged_run_has_no_redraws_and_plain_progress_lines(tmp_path, stacks, tiny_model):
    """A real process with stderr to a file: no ``\\r`` or escape, a done line per file."""
    log = tmp_path / "log.txt"
    with open(log, "wb") as err:
        rc = subprocess.run([sys.executable, "-c", "import sys; from napari_sam.cli import "
                             "main; sys.exit(main(sys.argv[1:]))", "auto", str(stacks), "-o",
                             str(tmp_path / "out"), "--model", str(tiny_model), "--device",
                             "cpu", "--threads", "1"], stderr=err, stdout=subprocess.PIPE,
                            timeout=600).returncode
    text = log.read_bytes().decode()
    assert rc == 0, text
    assert "\r" not in text and "\x1b" not in text, repr(text)
    assert re.search(r"^done +a\.tif -> ", text, re.M) and re.search(r"^done +b\.tif", text,
                                                                       re.M), text


def test_a_long_phase_gets_lines_with_counts_and_time_left(tmp_path, stacks, tiny_model,
                                                           offline_cli, capsys, monkeypatch):
    monkeypatch.setattr(P, "LOG_INTERVAL", 0.0)  # every count is "long"
    rc, _, err = cli(["auto", stacks / "a.tif", "-o", tmp_path / "out", "--model", tiny_model,
                      "--device", "cpu", "--threads", "1"], capsys)
    assert rc == 0, err
    n = len(blob_stack())
    what = "a.tif: segment everything: "
    lines = [ln for ln in err.splitlines() if ln.startswith(what)]
    assert len(lines) >= n and all(re.fullmatch(
        rf"{what}\d+/{n} slices, \d+:\d\d elapsed(, about \d+:\d\d left)?", ln)
        for ln in lines), err
    assert lines[-1].startswith(f"{what}{n}/{n} slices") and "left" not in lines[-1], err
    assert "\r" not in err and "\x1b" not in err


def test_a_fast_phase_writes_no_line_and_a_terminal_gets_a_bar(monkeypatch, capsys):
    bar = P.JobProgressBar(Context(command="auto"), "x.tif: propagate", 10)
    assert isinstance(bar.bar, P.LogLines)  # (pytest's stderr is not a terminal)
    for k in range(1, 11):
        bar(k, 10)
    bar.close()
    assert capsys.readouterr().err == ""  # under LOG_INTERVAL: nothing
    monkeypatch.setattr(P, "stderr_is_terminal", lambda: True)
    bar = P.JobProgressBar(Context(command="auto"), "x.tif: propagate", 10)
    try:
        from tqdm import tqdm

        assert isinstance(bar.bar, tqdm) and bar.bar.total == 10
    finally:
        bar.close()
    assert P.JobProgressBar(Context(command="auto", quiet=True), "x", 10).bar is None
    np.testing.assert_equal(P.LOG_INTERVAL, 30.0)


def test_a_jupyter_kernel_keeps_its_bars(monkeypatch):
    """A kernel's stderr is no terminal, but tqdm.auto draws notebook bars there
    (``napari_sam.batch.run_jobs`` from a notebook)."""
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules.get("ipykernel") or object())
    assert P.stderr_is_terminal()
    monkeypatch.delitem(sys.modules, "ipykernel")
    assert not P.stderr_is_terminal()  # (pytest's stderr)
