"""Resuming batch runs as a user sees it (session 43): the words of a rerun after Ctrl-C, after
an input was replaced, after an option changed, and the note of an output folder that cannot
lock with worker processes. Real subprocesses where a signal or worker processes matter."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, cli_env, interrupt_in, start_cli
from napari_sam import io as nio

pytestmark = pytest.mark.usefixtures("offline_cli")

#: Makes ``flock`` of napari-sam's lock files fail as on an NFS mount without lockd (ENOLCK),
#: in every process started with it on PYTHONPATH (worker processes too).
NO_LOCKS = """
import errno, fcntl, os
_flock = fcntl.flock
def flock(fd, op):
    if ".napari-sam-work" in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    return _flock(fd, op)
fcntl.flock = flock
"""


def blob_folder(folder: Path, n: int = 3, z: int = 6, size: int = 64) -> Path:
    """``n`` blob stacks ``b0.tif``... (different noise) in ``folder``."""
    from stacks import blob_stack

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        tifffile.imwrite(folder / f"b{i}.tif", blob_stack(z=z, size=size, seed=i),
                         photometric="minisblack")
    return folder


def auto_argv(inputs, out, model, *extra) -> list[str]:
    """``auto`` arguments that find the blobs with the tiny model."""
    return [str(a) for a in ("auto", inputs, "-o", out, "--model", model, "--points-per-side",
                             "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
                             "--axes", "ZYX", *extra)]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_an_unlockable_folder_is_said_once_in_the_summary_with_workers(tmp_path, tiny_model):
    """With ``--workers 2`` every worker process said "cannot lock" itself (twice, amid the
    files' lines); the summary says it once, from the main process."""
    (tmp_path / "nolocks").mkdir()
    (tmp_path / "nolocks" / "sitecustomize.py").write_text(NO_LOCKS)
    blob_folder(tmp_path / "data", n=4, z=2)
    proc = subprocess.run(
        [sys.executable, "-m", "napari_sam.cli",
         *auto_argv(tmp_path / "data", tmp_path / "out", tiny_model, "--workers", "2")],
        env=cli_env(tmp_path, tmp_path / "nolocks"), capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "4 files: 4 done" in proc.stdout, proc.stdout
    said = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "cannot lock" in ln]
    assert said == [
        f"Note: the file system of {(tmp_path / 'out').resolve()} cannot lock files "
        f"({os.strerror(errno.ENOLCK)}): its jobs ran without a lock, so two "
        "napari-sam runs writing the same output there are not kept apart; run one at a "
        "time, or write to a local disk."], proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith(said[0])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"b{i}_labels.tif{s}" for i in range(4) for s in ("", ".json"))


def saved_slices(out: Path, name: str, under: str = "") -> int:
    """How many slices ``auto`` saved for output ``name`` in ``out``'s work folder."""
    return len(list((out / ".napari-sam-work" / name / under / "auto").glob("z*.npz")))


def test_ctrl_c_then_the_same_command_says_what_it_resumed(tmp_path, tiny_model, capsys):
    """Ctrl-C (a real SIGINT) while the second file is segmented: the rerun said nothing of
    the slices it kept (a SIGKILL, which leaves a "partial" sidecar, said "resumed"); now its
    line and summary say "resumed" with what it kept and computed, and the labels are an
    uninterrupted run's."""
    data = blob_folder(tmp_path / "data", n=1, z=4)
    from stacks import blob_stack

    tifffile.imwrite(data / "b1.tif", blob_stack(z=40, seed=1), photometric="minisblack")
    argv = auto_argv(data, tmp_path / "out", tiny_model, "--batch-size", "1", "--threads", "1")
    out = tmp_path / "out"
    said = interrupt_in(start_cli(argv, tmp_path), lambda: (out / "b0_labels.tif.json").exists()
                        and saved_slices(out, "b1_labels.tif") >= 2)
    assert "Interrupted: finished outputs are complete" in said, said
    kept = saved_slices(out, "b1_labels.tif")
    assert 2 <= kept < 40 and not (out / "b1_labels.tif").exists()
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    reason = (f"resumed: kept {kept} of 40 slices an interrupted run finished, computed the "
              f"other {40 - kept}")
    assert f"s; {reason})" in err, err
    assert "2 files: 1 done (1 resumed), 1 skipped, 0 failed" in stdout, stdout
    assert f"({reason})" in stdout
    assert cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    for name in ("b0_labels.tif", "b1_labels.tif"):
        once = tifffile.imread(tmp_path / "once" / name)
        assert np.array_equal(tifffile.imread(out / name), once) and once.max() > 0


def test_a_movie_replaced_after_an_interruption_is_redone_and_says_why(tmp_path, tiny_model,
                                                                       capsys):
    """A TZYX movie killed after its first time point, then replaced by a file of other data
    under the same name: its finished time points were discarded (rightly) but the line said
    "resumed: an earlier run did not finish it"; now it says the input changed, and the labels
    are those of a run on the new file."""
    from stacks import blob_stack

    movie = tmp_path / "data" / "m.tif"
    movie.parent.mkdir()
    frames = np.stack([blob_stack(z=6, seed=t) for t in range(6)])
    tifffile.imwrite(movie, frames, imagej=True, metadata={"axes": "TZYX"})
    argv = auto_argv(movie, tmp_path / "out", tiny_model, "--batch-size", "1", "--threads", "1")
    argv[argv.index("--axes") + 1] = "TZYX"
    first = (tmp_path / "out" / ".napari-sam-work" / "m_labels.tif" / "time_points"
             / "t000001_labels.tif.json")  # t=0 finished: t=1 marked partial
    interrupt_in(start_cli(argv, tmp_path), first.exists, signal.SIGKILL)
    assert not (tmp_path / "out" / "m_labels.tif").exists()
    tifffile.imwrite(movie, frames[::-1] * 0.5 + 10, imagej=True, metadata={"axes": "TZYX"})
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith("done     m.tif"))
    assert re.search(r"; recomputed: the input changed \(since an interrupted run, whose \d "
                     r"finished time points? (was|were) discarded\)\)$", line), line
    assert "resumed" not in err + stdout and "1 file: 1 done, 0 skipped" in stdout, stdout
    assert cli([*argv[:3], tmp_path / "new", *argv[4:]], capsys)[0] == 0
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "m_labels.tif"),
                          tifffile.imread(tmp_path / "new" / "m_labels.tif"))


def stop_after_three_slices(argv, monkeypatch, capsys) -> None:
    """Run ``auto`` ARGV in-process, stopped by Ctrl-C once 3 slices were saved."""
    from napari_sam.batch import auto_runner

    real, calls = auto_runner._save_slice, []

    def save_three(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(auto_runner, "_save_slice", save_three)
    assert cli(argv, capsys)[0] == 130
    monkeypatch.setattr(auto_runner, "_save_slice", real)


@pytest.fixture
def interrupted_auto(tmp_path, tiny_model, monkeypatch, capsys):
    """``auto`` of one 8-slice stack stopped by Ctrl-C (in-process) after 3 slices were saved:
    (argv, output folder)."""
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1")
    stop_after_three_slices(argv, monkeypatch, capsys)
    assert saved_slices(tmp_path / "out", "b0_labels.tif") == 3
    return argv, tmp_path / "out"


def done_reason(argv, capsys) -> tuple[str, str]:
    """Run ``argv`` (one input): the reason its ``done`` line gives, and the summary's head."""
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith("done     b0.tif"))
    m = re.fullmatch(r"done     b0\.tif -> \S+ \(\d+ objects?, [\d.]+ s(?:; (.*))?\)", line)
    head = next(ln for ln in stdout.splitlines() if ln.startswith("Summary:"))
    return m.group(1) or "", head


def test_a_changed_option_after_ctrl_c_says_the_saved_slices_were_discarded(interrupted_auto,
                                                                           capsys):
    argv, _ = interrupted_auto
    i = argv.index("--points-per-side")
    reason, head = done_reason([*argv[:i + 1], "5", *argv[i + 2:]], capsys)
    assert reason == ("recomputed: parameters changed: points_per_side 4 -> 5 (since an "
                      "interrupted run, whose 3 finished slices were discarded)")
    assert "1 file: 1 done, 0 skipped" in head


def test_another_model_after_ctrl_c_says_the_saved_slices_were_discarded(interrupted_auto,
                                                                        tiny_model, capsys):
    import shutil

    argv, out = interrupted_auto
    other = out.parent / "m2" / "other.pt"
    other.parent.mkdir()
    shutil.copy(tiny_model, other)
    shutil.copy(tiny_model.with_name("tiny.pt.json"), other.with_name("other.pt.json"))
    i = argv.index("--model")
    reason, _ = done_reason([*argv[:i + 1], str(other), *argv[i + 2:]], capsys)
    assert reason == ("recomputed: the model changed: tiny.pt -> other.pt (since an "
                      "interrupted run, whose 3 finished slices were discarded)")


def test_a_linking_option_after_ctrl_c_keeps_the_saved_slices(interrupted_auto, capsys):
    """Linking happens after the slices: they are kept (what docs/cli.md promises)."""
    argv, _ = interrupted_auto
    reason, head = done_reason([*argv, "--link-iou", "0.5"], capsys)
    assert reason == ("resumed: kept 3 of 8 slices an interrupted run finished, computed the "
                      "other 5")
    assert "1 file: 1 done (1 resumed), 0 skipped" in head


def test_segment_after_ctrl_c_says_how_many_embeddings_it_kept(tmp_path, tiny_model,
                                                               monkeypatch, capsys):
    """``segment`` keeps an interrupted run's embeddings in its work folder: after Ctrl-C
    (no sidecar left) the rerun said nothing of them, after SIGKILL ("partial" sidecar)
    "resumed: an earlier run did not finish it"; now both say what was kept."""

    data = blob_folder(tmp_path / "data", n=1, z=6)
    prompts = tmp_path / "p.csv"
    prompts.write_text("id,slice,row,col\n1,1,20,20\n")
    argv = ["segment", data / "b0.tif", "-o", tmp_path / "out", "-p", prompts, "--model",
            tiny_model, "--batch-size", "1"]
    ctrl_c_after_three_embeddings(argv, capsys, monkeypatch)
    assert not nio.output_metadata_path(tmp_path / "out" / "b0_labels.tif").exists()
    resumed_three_of_six_as_one_run(argv, tmp_path, capsys)


def ctrl_c_after_three_embeddings(argv, capsys, monkeypatch) -> None:
    """Run ``argv`` (a 6-slice ``segment``, one slice per batch) with a Ctrl-C once three
    slice embeddings are stored: exit code 130."""
    from napari_sam import embeddings as E

    real, written = E.StackEmbeddings._write_store, []

    def stop_after_three(self, z, emb, hsh):
        if len(written) == 3:
            raise KeyboardInterrupt
        written.append(z)
        return real(self, z, emb, hsh)

    with monkeypatch.context() as patched:
        patched.setattr(E.StackEmbeddings, "_write_store", stop_after_three)
        assert cli(argv, capsys)[0] == 130


def resumed_three_of_six_as_one_run(argv, tmp_path, capsys) -> None:
    """The rerun of ``argv`` after :func:`ctrl_c_after_three_embeddings` keeps the three,
    says so, and writes the labels of an uninterrupted run (into ``tmp_path / "once"``)."""
    reason, head = done_reason(argv, capsys)
    assert reason == ("resumed: kept 3 of 6 slice embeddings an interrupted run finished, "
                      "computed the other 3")
    assert "1 file: 1 done (1 resumed), 0 skipped" in head
    assert cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    once = tifffile.imread(tmp_path / "once" / "b0_labels.tif")
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "b0_labels.tif"), once)
    assert once.max() == 1


def test_ctrl_c_with_workers_names_the_files_they_finished_as_it_stopped(tmp_path, tiny_model):
    """Ctrl-C with ``--workers 2``: closing the cluster lets its workers finish their tasks,
    so files the summary called "not run: interrupted before it finished" were complete, and
    the rerun skipped them. The summary now agrees with the output folder."""
    data = blob_folder(tmp_path / "data", n=3, z=12)
    out = tmp_path / "out"
    argv = auto_argv(data, out, tiny_model, "--batch-size", "1", "--workers", "2")

    def one_complete() -> bool:
        return any((nio.read_output_metadata(o) or {}).get("status") == "complete"
                   for o in out.glob("b*_labels.tif"))

    said = interrupt_in(start_cli(argv, tmp_path), one_complete)
    rows = {}  # the summary's table: status of each input
    for ln in said.splitlines():
        m = re.match(r"  (done|not run) +(b\d\.tif) ", ln)
        if m:
            rows[m.group(2)] = m.group(1)
    complete = {f"b{i}.tif": "done" if (nio.read_output_metadata(out / f"b{i}_labels.tif")
                                        or {}).get("status") == "complete" else "not run"
                for i in range(3)}
    assert rows == complete, said
    assert "done" in rows.values()


def test_a_rerun_with_new_options_interrupted_then_rerun_says_both(tmp_path, tiny_model,
                                                                   monkeypatch, capsys):
    """Complete with ``--points-per-side 4``; rerun with 5 stopped by Ctrl-C (Ctrl-C puts the
    complete sidecar back); rerun with 5 again: it said only "parameters changed" while it
    kept the 3 slices the interrupted run of the same new options had saved."""
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1")
    assert cli(argv, capsys)[0] == 0
    i = argv.index("--points-per-side")
    argv[i + 1] = "5"
    stop_after_three_slices(argv, monkeypatch, capsys)
    reason, head = done_reason(argv, capsys)
    assert reason == ("recomputed: parameters changed: points_per_side 4 -> 5; resumed: kept 3 "
                      "of 8 slices an interrupted run finished, computed the other 5")
    assert "1 file: 1 done (1 resumed, 1 replaced an earlier output), 0 skipped" in head
    assert cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "b0_labels.tif"),
                          tifffile.imread(tmp_path / "once" / "b0_labels.tif"))


def test_clearing_leftovers_of_an_unlockable_folder_logs_nothing(tmp_path, monkeypatch, caplog):
    """After an interrupted cluster run the client clears its jobs' leftovers: where the
    file system cannot lock, that logged "cannot lock" once more, beside the summary's note."""
    import fcntl

    from napari_sam.batch.jobs import clear_leftovers

    def flock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    out = tmp_path / "out" / "a_labels.tif"
    lock = out.parent / ".napari-sam-work" / "locks" / "a_labels.tif.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("12345 host\n")  # a killed worker's
    nio.write_json_atomic(nio.output_metadata_path(out), {"status": "partial", "pid": 12345})
    clear_leftovers(out)
    assert [r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage()] == []
    assert not nio.output_metadata_path(out).exists() and not lock.exists()
