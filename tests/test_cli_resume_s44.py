"""Resuming batch runs (session 44): the slices an interrupted serial ``auto`` run saved are
reused by a rerun split into blocks (``--workers N --block-slices K``), and the other
commands word what they kept from the work folder as ``auto`` and ``segment`` do."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tifffile

import test_cli_resume_s43 as resume
from cli_runner import cli
from test_cli_resume_s43 import done_reason

pytestmark = pytest.mark.usefixtures("offline_cli")

#: ``auto`` of one 8-slice stack stopped by Ctrl-C after 3 slices: (argv, output folder).
interrupted_auto = resume.interrupted_auto


def test_a_blocked_rerun_keeps_the_slices_an_interrupted_serial_run_saved(interrupted_auto,
                                                                          capsys):
    """Ctrl-C of a serial ``auto`` run after 3 of 8 slices, then the same command split into
    blocks (``--workers 1 --block-slices 4``): the blocks' run forced ``tiling`` off (blocks
    fill per-slice chunks), which made the work folder's record differ from the serial run's
    (``auto``, untiled at this size): its 3 slices were discarded and all 8 segmented again.
    Slices segmented the same way are kept whichever way the run is split: the 3 are reused
    (their files untouched), 5 computed, and the labels are an uninterrupted run's."""
    argv, out = interrupted_auto
    work = out / ".napari-sam-work" / "b0_labels.tif" / "auto"
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}
    assert len(before) == 3
    reason, head = done_reason([*argv, "--workers", "1", "--block-slices", "4", "--keep-work"],
                               capsys)
    assert reason == ("resumed: kept 3 of 8 slices an interrupted run finished, computed the "
                      "other 5")
    assert "1 file: 1 done (1 resumed), 0 skipped" in head
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}  # (--keep-work)
    assert len(after) == 8 and {k: after[k] for k in before} == before
    once = out.parent / "once"
    assert done_reason([*argv[:3], once, *argv[4:]], capsys)[0] == ""
    labels = tifffile.imread(out / "b0_labels.tif")
    assert np.array_equal(labels, tifffile.imread(once / "b0_labels.tif")) and labels.max() > 0


def test_slices_segmented_with_another_tiling_are_discarded_and_it_is_said():
    """The work key holds the tiling the slices were segmented with (``[window, halo]``,
    absent when untiled; a blocked run's record of before said ``None``): slices of a tiled
    serial run are not a blocked (untiled) run's, and the reason names both tilings."""
    from napari_sam.batch.saved_work import key_change, same_key

    untiled = {"signature": {"command": "auto", "model": "m", "points_per_side": 4},
               "input": ["/a/b0.tif", 10, 20, 30], "model_id": "x"}
    tiled = {**untiled, "signature": {**untiled["signature"], "tiling": [128, 16]}}
    blocked = {**untiled, "signature": {**untiled["signature"], "tiling": None}}
    assert same_key(blocked, untiled) and not same_key(tiled, untiled)
    assert key_change(tiled, untiled) == "parameters changed: tiling [128, 16] -> off"
    assert key_change(untiled, tiled) == "parameters changed: tiling off -> [128, 16]"


def stop_after_writes(monkeypatch, n: int):
    """Make the embedding stores raise Ctrl-C (KeyboardInterrupt) at their ``n + 1``-th slice
    written (a tiled stack's windows are stores of their own: each window of each slice);
    returns a function that undoes it."""
    from napari_sam import embeddings as E

    real, written = E.StackEmbeddings._write_store, []

    def stop(self, z, emb, hsh):
        if len(written) == n:
            raise KeyboardInterrupt
        written.append(z)
        return real(self, z, emb, hsh)

    monkeypatch.setattr(E.StackEmbeddings, "_write_store", stop)
    return lambda: monkeypatch.setattr(E.StackEmbeddings, "_write_store", real)


def done_line_reason(argv, capsys, name: str = "b0.tif") -> tuple[str, str]:
    """Run ``argv``: the reason the ``done`` line of ``name`` gives ("" for none), and stdout."""
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith(f"done     {name}"))
    m = re.search(r", [\d.]+ s(?:; (.*))?\)$", line)
    return m.group(1) or "", stdout


def test_embed_after_ctrl_c_says_how_many_embeddings_it_kept(tmp_path, tiny_model,
                                                             monkeypatch, capsys):
    """``embed`` stopped by Ctrl-C after 3 of 6 slices keeps them in its ``.partial`` store
    and the rerun reads them back, but its line said nothing of them (Ctrl-C leaves no
    sidecar, and the sidecar was what it was worded from); it says what it kept, as
    ``segment`` does, and the store is an uninterrupted run's."""
    data = resume.blob_folder(tmp_path / "data", n=1, z=6)
    argv = ["embed", data / "b0.tif", "-o", tmp_path / "out", "--model", tiny_model,
            "--batch-size", "1"]
    undo = stop_after_writes(monkeypatch, 3)
    assert cli(argv, capsys)[0] == 130
    undo()
    reason, stdout = done_line_reason(argv, capsys)
    assert reason == ("resumed: kept 3 of 6 slice embeddings an interrupted run finished, "
                      "computed the other 3")
    assert "1 file: 1 done (1 resumed), 0 skipped" in stdout
    assert cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    import zarr

    def features(folder):
        return np.asarray(zarr.open_group(str(folder / "b0.zarr"), mode="r")["features"][:])

    assert np.array_equal(features(tmp_path / "out"), features(tmp_path / "once"))


def test_a_tiled_segment_after_ctrl_c_says_how_many_windows_it_kept(tmp_path, tiny_model,
                                                                    monkeypatch, capsys):
    """A tiled ``segment`` (``--tiling 32,8``: 64 px slices in windows of 32) stopped by
    Ctrl-C after every window of its first slice and two of the second: the rerun read them
    back from its work folder but said nothing of them (a tiled stack's were not counted); it
    counts them in windows, and the labels are an uninterrupted run's."""
    from napari_sam.tiling import choose_tiling

    data = resume.blob_folder(tmp_path / "data", n=1, z=3)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", data / "b0.tif", "-o", tmp_path / "out", "-p", prompts, "--model",
            tiny_model, "--batch-size", "1", "--tiling", "32,8"]
    windows = len(choose_tiling((64, 64), 128, (32, 8)))
    assert windows > 4  # (slice 1 is cut in two)
    undo = stop_after_writes(monkeypatch, windows + 2)
    assert cli(argv, capsys)[0] == 130
    undo()
    reason, stdout = done_line_reason(argv, capsys)
    n = 3 * windows
    assert reason == (f"resumed: kept {windows + 2} of {n} window embeddings an interrupted "
                      f"run finished, computed the other {n - windows - 2}")
    assert "1 file: 1 done (1 resumed), 0 skipped" in stdout
    assert cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    once = tifffile.imread(tmp_path / "once" / "b0_labels.tif")
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "b0_labels.tif"), once)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"),
                    reason="reads /proc/self/fd")
def test_an_unlockable_file_system_is_said_once_with_recursive(tmp_path, tiny_model,
                                                               monkeypatch, capsys):
    """``--recursive`` over two subfolders into an output folder whose file system cannot
    lock (as an NFS mount without lockd: ``flock`` fails with ENOLCK): the summary said
    "cannot lock" once per output subfolder (``out/a``, ``out/b``), the same note twice. It
    is said once per file system, naming the output folder."""
    import errno
    import fcntl
    import os

    real = fcntl.flock

    def flock(fd, op):
        if ".napari-sam-work" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    for sub in ("a", "b"):
        resume.blob_folder(tmp_path / "data" / sub, n=1, z=2)
    out = tmp_path / "out"
    rc, stdout, err = cli(resume.auto_argv(tmp_path / "data", out, tiny_model, "--recursive",
                                           "-q"), capsys)
    assert rc == 0, err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("b0_labels.tif")) == [
        "a/b0_labels.tif", "b/b0_labels.tif"]
    said = [ln for ln in (stdout + err).splitlines() if "cannot lock" in ln]
    assert said == [
        f"Note: the file system of {out.resolve()} cannot lock files "
        f"({os.strerror(errno.ENOLCK)}): its jobs ran without a lock, so two napari-sam runs "
        "writing the same output there are not kept apart; run one at a time, or write to "
        "a local disk."], stdout + err


def test_a_blocked_rerun_of_kept_work_says_it_reused_a_finished_runs_slices(tmp_path,
                                                                            tiny_model,
                                                                            capsys):
    """``--keep-work``, then other linking options through ``--workers 1 --block-slices 4``
    (the ``finished`` mark is taken before the blocks run, and said by the final task):
    the slices come from a finished run's work folder, as in a serial rerun."""
    data = resume.blob_folder(tmp_path / "data", n=1, z=8)
    argv = resume.auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size",
                            "1", "--keep-work")
    assert done_reason(argv, capsys)[0] == ""
    blocked = [*argv, "--workers", "1", "--block-slices", "4"]
    reason, head = done_reason([*blocked, "--link-iou", "0.3"], capsys)
    assert reason.endswith("; reused: 8 of 8 slices from a finished run's work folder "
                           "(--keep-work)"), reason
    assert "1 done (1 replaced an earlier output)" in head


def test_a_tiled_run_interrupted_before_the_upgrade_keeps_its_slices(tmp_path, tiny_model,
                                                                      monkeypatch, capsys):
    """A work folder an older napari-sam left (its record held the ``--tiling`` option,
    absent for ``auto``, not the tiling in effect) of a stack that ``auto`` tiles: its
    slices were discarded, ``recomputed: parameters changed: tiling off -> [128, 16]``,
    though they were segmented with that very tiling. The record is read as this run's:
    the 3 slices are kept, untouched."""
    import json

    data = resume.blob_folder(tmp_path / "data", n=1, z=5, size=200)  # > 1.5 x 128 px: tiled
    argv = resume.auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size",
                            "1", "--threads", "1")
    resume.stop_after_three_slices(argv, monkeypatch, capsys)
    work = tmp_path / "out" / ".napari-sam-work" / "b0_labels.tif" / "auto"
    record = json.loads((work / "params.json").read_text())
    assert record["signature"]["tiling"][0] == 128  # tiled: [window, halo]
    del record["signature"]["tiling"]  # as napari-sam wrote it before 2026-12-07
    (work / "params.json").write_text(json.dumps(record))
    before = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}
    assert len(before) == 3
    reason, head = done_reason([*argv, "--keep-work"], capsys)
    assert reason == ("resumed: kept 3 of 5 slices an interrupted run finished, computed the "
                      "other 2")
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("z*.npz")}
    assert len(after) == 5 and {k: after[k] for k in before} == before


def test_unlockable_output_folders_of_a_script_are_named_each(tmp_path, monkeypatch):
    """``run_jobs`` from a script with outputs in ``a/x`` and ``b/y`` of one file system that
    cannot lock: the note named the folder above them all with ``os.path.commonpath``: ''
    for relative folders, '/' for absolute ones, and a ValueError after every job had run
    for a mix of the two. Each folder is named where only the root is above them all;
    nested folders are named by the folder above them."""
    from napari_sam.batch.context import JobResult
    from napari_sam.batch.run import unlockable_folders

    monkeypatch.chdir(tmp_path)
    for sub in ("a/x", "b/y", "out/p", "out/q"):
        (tmp_path / sub).mkdir(parents=True)

    def results(*folders):
        out = []
        for f in folders:
            res = JobResult("in.tif", f"{f}/o.tif", "done")
            res.details["unlockable"] = (f, "no locks")
            out.append(res)
        return out

    absolute = str(tmp_path / "b" / "y")
    assert unlockable_folders(results("a/x", "b/y")) == [("a/x, b/y", "no locks")]
    assert unlockable_folders(results("a/x", absolute)) == [(str(tmp_path), "no locks")]
    assert unlockable_folders(results("out/p", "out/q", "out/p")) == [("out", "no locks")]
    monkeypatch.setattr("os.stat", lambda *a, **k: type("St", (), {"st_dev": 1})())
    assert unlockable_folders(results(absolute, "/elsewhere/z")) == [
        (f"{absolute}, /elsewhere/z", "no locks")]
