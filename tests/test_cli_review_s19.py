"""What a user meets on the command line after the s19 review: an output that is another
input of the batch, sidecars left by failed files, inputs without prompts, what ``train``
says it wrote and how a stopped piece exits, a quiet Ctrl-C on a local cluster, and prompts
files with ``./`` paths or objects with only negative points.

Every case asserts the exit code, the line the user reads and that the user's files are
unchanged; none prints a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, md5s, noise_image


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


AUTO_FAST = ("--points-per-side", "4", "--device", "cpu", "-q")


# ----------------------------------------------------------------------------- 1: outputs


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("command", ["auto", "segment"])
def test_output_that_is_another_input_is_refused_before_any_work(
        tmp_path, tiny_model, capsys, command, overwrite):
    """``-o`` = the input folder, inputs img.tif and img_labels.tif: img's output would be the
    user's img_labels.tif. Refused with exit 2 naming both files and the fix, nothing
    written, both inputs byte for byte as they were (with and without --overwrite)."""
    f = tmp_path / "f"
    img, other = noise_image(f / "img.tif", seed=1), noise_image(f / "img_labels.tif", seed=2)
    before = md5s(img, other)
    argv = [command, f, "-o", f, "--model", tiny_model, "-q"]
    if command == "segment":
        p = tmp_path / "p.csv"
        p.write_text("id,slice,row,col\n1,0,30,30\n")
        argv += ["-p", p]
    rc, _, err = cli(argv + (["--overwrite"] if overwrite else []), capsys)
    line = error_line(err)
    assert rc == 2
    assert "also an input of this batch" in line and str(other) in line and str(img) in line
    assert "-o" in line and "--suffix" in line
    assert md5s(img, other) == before
    assert sorted(p.name for p in f.iterdir()) == ["img.tif", "img_labels.tif"]


# ----------------------------------------------------------------------------- 2: sidecars


def test_a_failed_file_leaves_no_partial_sidecar(tmp_path, tiny_model, capsys):
    """An unreadable input fails (exit 1) and leaves nothing in the output folder: no
    ``<stem>_labels.tif.json`` saying "partial" for an output that does not exist (and the
    folder, which this run made and left empty, is removed)."""
    inp = tmp_path / "cplx.npy"
    np.save(inp, np.zeros((64, 64), complex))
    before = md5s(inp)
    out = tmp_path / "out"
    rc, _, err = cli(["auto", inp, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1 and "FAILED   cplx.npy" in err
    assert not (out / "cplx_labels.tif.json").exists()
    # nothing in it (no work folder, no lock folder either): the -o this run made is removed
    assert not out.exists()
    assert md5s(inp) == before


def test_a_failed_rerun_keeps_the_previous_output_and_its_sidecar(tmp_path, tiny_model, capsys):
    """A finished output whose input then turns unreadable: the rerun fails (exit 1) and
    leaves the previous output and its sidecar byte for byte (no "partial" written over)."""
    inp = tmp_path / "a.npy"
    np.save(inp, (np.random.default_rng(0).random((64, 64)) * 1000).astype(np.uint16))
    out = tmp_path / "out"
    rc, _, _ = cli(["auto", inp, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 0
    labels, sidecar = out / "a_labels.tif", out / "a_labels.tif.json"
    before = md5s(labels, sidecar)
    np.save(inp, np.zeros((64, 64), complex))  # the input changed: the output is recomputed
    rc, _, err = cli(["auto", inp, "-o", out, "--model", tiny_model, *AUTO_FAST], capsys)
    assert rc == 1 and "FAILED   a.npy" in err
    assert md5s(labels, sidecar) == before
    assert json.loads(sidecar.read_text())["status"] == "complete"


def test_segment_skips_an_input_without_prompts(tmp_path, tiny_model, capsys):
    """A folder where only some images have prompts: those are segmented, the others are
    skipped with the reason in their line and in the summary (exit 0); nothing is written
    for them, not even a sidecar."""
    src = tmp_path / "in"
    noise_image(src / "a.tif", seed=1)
    noise_image(src / "b.tif", seed=2)
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\nb.tif,1,0,30,30\n")
    out = tmp_path / "out"
    rc, stdout, err = cli(["segment", src, "-o", out, "-p", p, "--model", tiny_model,
                           "--device", "cpu"], capsys)
    assert rc == 0
    assert "skipped  a.tif: no prompts for it in the prompts file; nothing written" in err
    assert "2 files: 1 done, 1 skipped (1 without prompts), 0 failed" in stdout
    assert "a.tif  no prompts for it" in stdout  # the summary row gives the reason, no path
    assert (out / "b_labels.tif").exists()
    assert not (out / "a_labels.tif").exists() and not (out / "a_labels.tif.json").exists()


# ----------------------------------------------------------------------------- 3: train


def _fake_result(tmp_path: Path, best_epoch: int, history: list[dict]):
    from napari_sam.training.run import TrainResult

    path = tmp_path / "m2.pt"
    path.write_bytes(b"weights")
    (tmp_path / "m2.json").write_text(json.dumps({"best_epoch": best_epoch,
                                                  "metrics": history}))
    return TrainResult(model=None, path=path, history=history)


def test_train_message_names_the_epoch_whose_weights_were_written(tmp_path):
    from napari_sam.cli.train_command import written_message

    hist = [{"epoch": 1, "val_iou": 0.90}, {"epoch": 2, "val_iou": 0.941},
            {"epoch": 3, "val_iou": 0.938}]
    msg = written_message(_fake_result(tmp_path, 2, hist), 3, 12.0)
    assert "the weights of epoch 2, validation IoU 0.941" in msg
    assert "the last, epoch 3, had 0.938" in msg
    assert "last epoch IoU" not in msg and "3 epochs" in msg
    # a piece of a resumed schedule counts the schedule's epochs
    msg = written_message(_fake_result(tmp_path, 2, hist[:2]), 5, 3.0)
    assert "the weights of epoch 2, validation IoU 0.941; 2 of 5 epochs done" in msg


def _train_argv(data: Path, out: Path, tiny_model, *extra) -> list:
    return ["train", data, data / "ground_truth", "-o", out, "--model", tiny_model,
            "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "1",
            "--objects-per-image", "2", "--val-fraction", "0.34", "--device", "cpu", "-q",
            *extra]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    from napari_sam.cli import main

    d = tmp_path_factory.mktemp("train")
    assert main(["sample", "nuclei-2d", "-o", str(d), "-n", "3", "--shape", "64,64", "-q"]) == 0
    return d


def _signal_after_the_first_step(monkeypatch, sig) -> list:
    """Send this process ``sig`` once the first training step has run; returns the list
    that gets one entry per step run."""
    from napari_sam.training.trainer import Trainer

    real, calls = Trainer.train_step, []

    def step_then_signal(self, items):
        info = real(self, items)
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), sig)
        return info

    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    return calls


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_resume_piece_stopped_by_a_signal_exits_130(tmp_path, samples, tiny_model,
                                                         capsys, monkeypatch, sig):
    """``train --resume`` stopped by SIGTERM (what ``timeout`` sends) or Ctrl-C is an
    interrupted run: exit 130 as the exit-code table says, the state saved, and the same
    command continues it to the end (exit 0); the message names the epoch written."""
    _signal_after_the_first_step(monkeypatch, sig)
    out = tmp_path / "m.pt"
    rc, stdout, _ = cli(_train_argv(samples, out, tiny_model, "--resume"), capsys)
    assert rc == 130, stdout
    assert "Interrupted (SIGTERM or Ctrl-C)" in stdout and "run the same command again" in stdout
    if sig == signal.SIGTERM:  # stops after the step: the state is saved (Ctrl-C mid-step not)
        assert "the training state is in" in stdout
        assert (tmp_path / "m.train-state.pt").exists()
    rc, stdout, _ = cli(_train_argv(samples, out, tiny_model, "--resume"), capsys)
    assert rc == 0, stdout
    best = json.loads((tmp_path / "m.json").read_text())["best_epoch"]
    assert f"the weights of epoch {best}, validation IoU" in stdout


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_train_resume_with_the_signal_ignored_runs_on(tmp_path, samples, tiny_model, capsys,
                                                      monkeypatch, sig):
    """``train --resume`` started with SIGTERM or SIGINT ignored (``trap '' TERM``; a shell
    script's ``napari-sam train ... &``) runs to the end when that signal comes: exit 0,
    every epoch (was, for SIGTERM: train installed its handler over the ignored signal and
    stopped, exit 130; for SIGINT since c1a6c7d the command's handler did)."""
    calls = _signal_after_the_first_step(monkeypatch, sig)
    old = signal.signal(sig, signal.SIG_IGN)
    try:
        rc, stdout, _ = cli(_train_argv(samples, tmp_path / "m.pt", tiny_model, "--resume"),
                            capsys)
    finally:
        signal.signal(sig, old)
    assert rc == 0, stdout
    assert "Interrupted" not in stdout and len(calls) == 4  # 2 epochs of 2 steps
    assert "; 2 epochs, " in stdout and (tmp_path / "m.pt").exists()


def test_train_resume_piece_ended_by_max_steps_exits_0(tmp_path, samples, tiny_model, capsys):
    """A piece the user ended with --max-steps is no interruption: exit 0."""
    out = tmp_path / "m.pt"
    rc, stdout, _ = cli(_train_argv(samples, out, tiny_model, "--resume", "--max-steps", "1"),
                        capsys)
    assert rc == 0
    assert "stopped before the end of the schedule" in stdout and "Interrupted" not in stdout


# ----------------------------------------------------------------------------- 5: docs


def test_docs_say_cpu_precision_and_keep_work_as_the_code_does():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    flat = " ".join(doc.split())
    assert "the CPU computes in float32" not in flat
    assert "bf16 where the CPU has native bf16" in flat
    assert "with `--keep-work`" in flat and "Once an output is complete its work folder" in flat


# ----------------------------------------------------------------------------- 6: prompts


def test_prompts_file_column_with_dot_slash_matches(tmp_path, tiny_model, capsys, monkeypatch):
    """``./my data/x.tif`` in the 'file' column names the input ``my data/x.tif``."""
    monkeypatch.chdir(tmp_path)
    noise_image(tmp_path / "my data" / "x.tif")
    p = tmp_path / "p.csv"
    p.write_text("file,id,slice,row,col\n./my data/x.tif,1,0,30,30\n")
    rc, stdout, err = cli(["segment", "my data", "-o", "out", "-p", p, "--model", tiny_model,
                           "--device", "cpu", "-q"], capsys)
    assert rc == 0, err
    assert "1 done" in stdout and (tmp_path / "out" / "x_labels.tif").exists()


def test_normalise_file_key():
    from napari_sam.batch.prompts import normalise_file_key

    assert normalise_file_key("./my data/x.tif") == "my data/x.tif"
    assert normalise_file_key("my data//./x.tif") == "my data/x.tif"
    assert normalise_file_key("") == "" and normalise_file_key("  ") == ""


def test_object_with_only_negative_points_is_refused_before_any_work(tmp_path, tiny_model,
                                                                    capsys):
    """An object with only negative points starts nothing: exit 2 naming the file, line and
    object, before any embedding (the output folder is not even created)."""
    inp = noise_image(tmp_path / "a.tif")
    p = tmp_path / "p.csv"
    p.write_text("id,slice,row,col,label\n1,0,30,30,1\n2,0,10,10,0\n2,0,12,12,0\n")
    out = tmp_path / "out"
    rc, _, err = cli(["segment", inp, "-o", out, "-p", p, "--model", tiny_model], capsys)
    line = error_line(err)
    assert rc == 2
    assert "p.csv, line 3: object 2 of a.tif has only negative points" in line
    assert "add a positive point (label 1) or a box" in line
    assert "FAILED" not in err and not out.exists()


# ----------------------------------------------------------------------------- 4: Ctrl-C


def test_ctrl_c_on_a_local_cluster_is_quiet(tmp_path, tiny_model):
    """Ctrl-C during ``auto --workers 2``: the summary and exit 130, and no worker traceback
    or dask warning after it (they are for --verbose)."""
    data = tmp_path / "data"
    for i in range(4):
        noise_image(data / f"s{i}.tif", shape=(12, 64, 64), seed=i)
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "napari_sam.cli", "auto", str(data), "-o", str(tmp_path / "out"),
           "--model", str(tiny_model), "--workers", "2", "--points-per-side", "8",
           "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    work = tmp_path / "out" / ".napari-sam-work"
    deadline = time.monotonic() + 120
    while not any(work.glob("*/auto/z*.npz")):  # the workers are segmenting
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the run ended (or never started segmenting) before Ctrl-C:\n"
                        + proc.communicate()[0][-3000:])
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
    try:
        log, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log = proc.communicate()[0]
        pytest.fail("still running 60 s after Ctrl-C:\n" + log[-3000:])
    log = log.replace("\r", "\n")
    assert proc.returncode == 130, log[-3000:]
    assert "Summary:" in log and "Interrupted:" in log
    # nothing from dask anywhere (the workers' "CancelledError" warnings came before the
    # summary): its logs are for --verbose
    for word in ("Traceback", "KeyboardInterrupt", "CancelledError", "distributed.",
                 "WARNING"):
        assert word not in log, log[-3000:]


def test_a_local_cluster_gives_the_serial_labels(tmp_path, tiny_model, capsys):
    """``auto --workers 2`` (worker processes forked from a server, see
    ``batch.distributed.worker_start_method``) writes the labels a serial run writes."""
    data = tmp_path / "data"
    for i in range(2):
        noise_image(data / f"s{i}.tif", shape=(2, 64, 64), seed=i)
    base = ["auto", data, "--model", tiny_model, "--points-per-side", "8", "--device", "cpu",
            "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "-q"]  # random model
    rc, _, err = cli([*base, "-o", tmp_path / "serial"], capsys)
    assert rc == 0, err
    rc, _, err = cli([*base, "-o", tmp_path / "cluster", "--workers", "2"], capsys)
    assert rc == 0, err
    for i in range(2):
        a = tifffile.imread(tmp_path / "serial" / f"s{i}_labels.tif")
        b = tifffile.imread(tmp_path / "cluster" / f"s{i}_labels.tif")
        assert a.max() >= 1
        np.testing.assert_array_equal(a, b)


CTRL_C_WHILE_THE_CLUSTER_STARTS = """
import os, signal, sys
import distributed
from napari_sam.batch.distributed import worker_start_method

class CtrlCAtStart(distributed.LocalCluster):
    def __init__(self, *args, **kwargs):
        os.killpg(os.getpgrp(), signal.SIGINT)  # Ctrl-C in a terminal: the whole group
        super().__init__(*args, **kwargs)

distributed.LocalCluster = CtrlCAtStart
if __name__ == "__main__":
    from napari_sam.cli import main
    print("method", worker_start_method(), flush=True)
    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_while_the_local_cluster_starts_stops_the_run(tmp_path, tiny_model):
    """A Ctrl-C that comes while ``--workers`` starts its cluster (the cluster's start sends
    it to the process group here) stops the run: exit 130 with the summary, no file done,
    no traceback, and no process of the run left behind. It used to be ignored for the
    whole start (the run then went on to the end)."""
    data = tmp_path / "data"
    for i in range(3):
        noise_image(data / f"s{i}.tif", shape=(64, 64), seed=i)
    script = tmp_path / "ctrl_c_at_start.py"
    script.write_text(CTRL_C_WHILE_THE_CLUSTER_STARTS)
    env = dict(os.environ, NAPARI_SAM_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(script), "auto", str(data), "-o", str(tmp_path / "out"),
           "--model", str(tiny_model), "--workers", "2", "--points-per-side", "8",
           "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("still running after 180 s:\n" + proc.communicate()[0][-3000:])
    log = log.replace("\r", "\n")
    if "method forkserver" not in log:
        reason = "no forkserver start method here: SIGINT is ignored while a cluster starts"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    assert proc.returncode == 130, log[-3000:]
    assert "Summary: 3 files: 0 done" in log and "Interrupted:" in log, log[-3000:]
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert not list((tmp_path / "out").glob("*_labels.tif"))
    deadline = time.monotonic() + 30  # the cluster's processes end with it
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid), "processes of the run are still running"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_recursive_folder_leaves_out_the_samples_ground_truth(tmp_path, capsys):
    """``napari-sam sample`` writes ``data/ground_truth/``; ``auto data/ -r`` and a ``**``
    glob segment the sample, not its ground-truth label images."""
    from napari_sam.batch.inputs import collect_inputs

    data = tmp_path / "data"
    rc, _, _ = cli(["sample", "nuclei-2d", "-o", data, "--quiet"], capsys)
    assert rc == 0 and len(list((data / "ground_truth").glob("*.tif"))) == 1
    images = sorted(data.glob("*.tif"))
    assert collect_inputs([data], recursive=True) == images
    assert collect_inputs([str(data / "**" / "*.tif")]) == images
    # named on its own, a ground-truth file is still an input (the user asked for it)
    (gt,) = (data / "ground_truth").glob("*.tif")
    assert collect_inputs([gt]) == [gt]
    # and train's labels folder keeps them
    assert collect_inputs([data / "ground_truth"], keep_ground_truth=True) == [gt]


def test_finding_inputs_reads_no_header_outside_ground_truth_folders(tmp_path, monkeypatch):
    """Only files in a ``ground_truth`` folder are opened to look for the sample's marker: a
    large folder (e.g. on a cluster's network file system) is not read file by file first."""
    import tifffile as tf

    from napari_sam.batch.inputs import collect_inputs

    for i in range(5):
        noise_image(tmp_path / "data" / f"img{i}.tif")
    noise_image(tmp_path / "data" / "ground_truth" / "img0.tif")  # a user's own: no marker
    opened = []
    real = tf.TiffFile

    def counting(path, *args, **kwargs):
        opened.append(Path(path).relative_to(tmp_path).as_posix())
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tf, "TiffFile", counting)
    found = collect_inputs([tmp_path / "data"], recursive=True)
    assert len(found) == 6  # the unmarked ground_truth/img0.tif is an input too
    assert opened == ["data/ground_truth/img0.tif"]


@pytest.mark.parametrize("earlier_output", [True, False])
def test_a_file_that_fails_after_its_labels_are_written_is_computed_again(
        tmp_path, tiny_model, capsys, monkeypatch, earlier_output):
    """The labels are written, then writing their sidecar fails (a full disk): the file fails
    (exit 1) and its sidecar stays "partial", so the rerun computes it again. Putting the
    earlier sidecar back made the new labels look edited by hand (kept for good), and with no
    earlier output the new one looked foreign (refused without --overwrite)."""
    import napari_sam.io as nio

    inp = tmp_path / "a.npy"
    np.save(inp, (np.random.default_rng(0).random((64, 64)) * 1000).astype(np.uint16))
    out = tmp_path / "out"
    argv = ["auto", inp, "-o", out, "--model", tiny_model, "--device", "cpu", "-q"]
    if earlier_output:
        assert cli([*argv, "--points-per-side", "4"], capsys)[0] == 0
    real_write = nio.write_output_metadata

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nio, "write_output_metadata", full_disk)
    rc, _, err = cli([*argv, "--points-per-side", "5"], capsys)
    assert rc == 1 and f"no space left on the device of {out} (writing {out / 'a_labels.tif'})" in err
    assert (out / "a_labels.tif").exists()
    assert json.loads((out / "a_labels.tif.json").read_text())["status"] == "partial"
    monkeypatch.setattr(nio, "write_output_metadata", real_write)
    rc, stdout, err = cli([*argv, "--points-per-side", "5"], capsys)
    assert rc == 0, err
    assert "1 done" in stdout and "changed since" not in err and "not written by" not in err
    assert json.loads((out / "a_labels.tif.json").read_text())["status"] == "complete"
