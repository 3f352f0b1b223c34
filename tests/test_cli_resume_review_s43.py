"""Resuming batch runs, reviewed (session 43): what the summary of an interrupted ``--workers``
run and the line of a blocked ``auto`` rerun say, against what the output folder holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import test_cli_resume_s43 as resume
from cli_runner import interrupt_in, start_cli
from napari_sam import io as nio
from napari_sam.batch.jobs import output_stamp
from test_cli_resume_s43 import auto_argv, blob_folder, done_reason

pytestmark = pytest.mark.usefixtures("offline_cli")

#: ``auto`` of one 8-slice stack stopped by Ctrl-C after 3 slices: (argv, output folder).
interrupted_auto = resume.interrupted_auto


def summary_rows(said: str) -> dict[str, str]:
    """The summary table's status of each input (``done``, ``not run``...)."""
    rows = {}
    for ln in said.splitlines():
        m = re.match(r"  (done|not run|skipped) +(b\d\.tif) ", ln)
        if m:
            rows[m.group(2)] = m.group(1)
    return rows


def test_ctrl_c_with_workers_does_not_call_old_outputs_done(tmp_path, tiny_model):
    """``--overwrite --workers 2`` over complete outputs, Ctrl-C as the first job starts: the
    summary called every output it got no result for "done (finished as the run stopped)",
    also those no worker touched (still the old ones, which a rerun with --overwrite
    replaces). Only an output this run wrote is done."""
    data = blob_folder(tmp_path / "data", n=6, z=8)
    out = tmp_path / "out"
    argv = auto_argv(data, out, tiny_model, "--batch-size", "1")
    done = start_cli(argv, tmp_path)
    assert done.wait(timeout=300) == 0, done.communicate()
    before = {o.name: output_stamp(o) for o in out.glob("b*_labels.tif")}
    assert len(before) == 6

    def one_started() -> bool:
        return any((nio.read_output_metadata(o) or {}).get("status") == "partial"
                   for o in out.glob("b*_labels.tif"))

    said = interrupt_in(start_cli([*argv, "--overwrite", "--workers", "2"], tmp_path),
                        one_started)
    written = {f"b{i}.tif": "done" if output_stamp(out / f"b{i}_labels.tif")
               != before[f"b{i}_labels.tif"] and complete(out / f"b{i}_labels.tif")
               else "not run" for i in range(6)}  # (a worker killed as it wrote: not done)
    assert "not run" in written.values()  # (else the test needs more files)
    assert summary_rows(said) == written, said


def complete(output: Path) -> bool:
    """Whether ``output``'s sidecar says it is complete."""
    return (nio.read_output_metadata(output) or {}).get("status") == "complete"


def file_line(said: str, name: str) -> str:
    """The summary table's row of input ``name``."""
    return next(ln for ln in said.splitlines() if re.match(rf"  \w[\w ]* +{name} ", ln))


def test_a_blocked_rerun_with_new_options_says_why_it_replaced_the_output(tmp_path,
                                                                         tiny_model):
    """A complete output rerun with another ``--points-per-side`` through ``--workers 1
    --block-slices 4`` (the slices segmented by block tasks): its line said nothing, as a first
    run's; the final task replaced the reason with what the blocks had left (nothing of an
    interrupted run). It says what changed, as a run without blocks does."""
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1")
    first = start_cli(argv, tmp_path)
    assert first.wait(timeout=300) == 0, first.communicate()
    argv[argv.index("--points-per-side") + 1] = "5"
    again = start_cli([*argv, "--workers", "1", "--block-slices", "4"], tmp_path)
    said = "".join(again.communicate(timeout=300))
    assert again.returncode == 0, said
    assert "1 done (1 replaced an earlier output)" in said, said
    assert "(recomputed: parameters changed: points_per_side 4 -> 5" in file_line(said, "b0.tif")


def test_a_work_record_of_another_layout_is_discarded_not_a_failure(interrupted_auto, capsys):
    """The work folder's ``params.json`` is valid JSON of another layout (its signature a
    list: a hand edit, another version): the words about the discarded slices raised a
    TypeError and the file failed, where the work folder used to be emptied and the job run.
    It runs, and says the record does not match."""
    import json

    argv, out = interrupted_auto
    marker = out / ".napari-sam-work" / "b0_labels.tif" / "auto" / "params.json"
    key = json.loads(marker.read_text())
    marker.write_text(json.dumps({**key, "signature": sorted(key["signature"])}))
    reason, head = done_reason(argv, capsys)
    assert reason == ("recomputed: its record does not match this run (since an interrupted "
                      "run, whose 3 finished slices were discarded)")
    assert "1 file: 1 done, 0 skipped, 0 failed" in head


def test_an_older_versions_work_record_is_not_called_a_changed_input(interrupted_auto, capsys):
    """A work folder of an interrupted run of napari-sam before 2026-12-02 (its record's input
    without the content hash, no model id): the rerun said "the input changed", which it had
    not (the slices are discarded all the same: the record cannot tell the model)."""
    import json

    from napari_sam.batch.saved_work import key_change

    argv, out = interrupted_auto
    marker = out / ".napari-sam-work" / "b0_labels.tif" / "auto" / "params.json"
    key = json.loads(marker.read_text())
    assert key_change({k: v for k, v in key.items() if k != "model_id"}, key) == (
        "made by an older napari-sam whose record lacks the model's id")
    old = {"signature": key["signature"], "input": key["input"][:3]}
    marker.write_text(json.dumps(old))
    reason, _ = done_reason(argv, capsys)
    assert reason == ("recomputed: made by an older napari-sam whose record lacks the input's "
                      "content hash and the model's id (since an interrupted run, whose 3 "
                      "finished slices were discarded)")


def test_a_moved_input_keeps_the_slices_an_interrupted_run_saved(interrupted_auto, capsys):
    """The input folder renamed after Ctrl-C (same file, same content and time stamp): a
    complete output is skipped after such a move, but the interrupted run's slices were
    discarded as "the input changed" (the work folder's record compared the path too). They
    are kept, and the labels are those of an uninterrupted run."""
    import numpy as np
    import tifffile

    argv, out = interrupted_auto
    old = Path(argv[1])
    moved = old.parent.parent / "moved"
    old.parent.rename(moved)
    argv = [argv[0], str(moved / old.name), *argv[2:]]
    reason, head = done_reason(argv, capsys)
    assert reason == ("resumed: kept 3 of 8 slices an interrupted run finished, computed the "
                      "other 5")
    assert "1 file: 1 done (1 resumed), 0 skipped" in head
    once = out.parent / "once"
    assert done_reason([*argv[:3], once, *argv[4:]], capsys)[0] == ""
    assert np.array_equal(tifffile.imread(out / "b0_labels.tif"),
                          tifffile.imread(once / "b0_labels.tif"))


def test_run_jobs_from_python_says_a_folder_cannot_lock(tmp_path, tiny_model, monkeypatch,
                                                       caplog):
    """``batch.run_jobs`` called from Python (as the package's docstring shows) on a folder
    whose file system cannot lock: the note moved to the command line's summary, and a
    Python caller was told nothing. It is logged once per folder, after the run."""
    import errno
    import fcntl
    import logging
    import os

    from napari_sam import batch

    def flock(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    data = blob_folder(tmp_path / "data", n=2, z=2, size=32)
    ctx = batch.Context(command="embed", model=str(tiny_model), out_dir=tmp_path / "out",
                        device="cpu", quiet=True)
    with caplog.at_level(logging.WARNING, logger="napari_sam"):
        results = batch.run_jobs(batch.make_jobs(sorted(data.glob("*.tif")), ctx), ctx)
    assert [r.status for r in results] == ["done", "done"]
    notes = [r.getMessage() for r in caplog.records if "cannot lock" in r.getMessage()]
    assert notes == [f"the file system of {tmp_path / 'out'} cannot lock files (No locks "
                     "available): its jobs ran without a lock, so two napari-sam runs writing "
                     "the same output there are not kept apart; run one at a time, or write "
                     "to a local disk"]


def test_work_a_finished_run_kept_is_not_called_an_interrupted_runs(tmp_path, tiny_model,
                                                                     monkeypatch, capsys):
    """``--keep-work``, then other linking options (the workflow docs/cli.md gives for
    ``--keep-work``): the line said "resumed: kept 8 of 8 slices an interrupted run finished"
    and the summary counted it resumed, though no run was interrupted. It says where the
    slices came from; a run interrupted after that is said as one again."""
    data = blob_folder(tmp_path / "data", n=1, z=8)
    argv = auto_argv(data / "b0.tif", tmp_path / "out", tiny_model, "--batch-size", "1",
                     "--threads", "1", "--keep-work")
    assert done_reason(argv, capsys)[0] == ""
    reason, head = done_reason([*argv, "--link-iou", "0.3"], capsys)
    assert reason == ("recomputed: parameters changed: link_iou 0.25 -> 0.3; reused: 8 of 8 "
                      "slices from a finished run's work folder (--keep-work)")
    assert "1 file: 1 done (1 replaced an earlier output), 0 skipped" in head
    argv[argv.index("--points-per-side") + 1] = "5"
    resume.stop_after_three_slices(argv, monkeypatch, capsys)
    reason, head = done_reason(argv, capsys)
    assert reason == ("recomputed: parameters changed: link_iou 0.3 -> 0.25, points_per_side 4 "
                      "-> 5; resumed: kept 3 of 8 slices an interrupted run finished, computed "
                      "the other 5")
    assert "1 done (1 resumed, 1 replaced an earlier output)" in head


def test_a_resumed_movie_counts_only_the_time_points_it_computed(tmp_path, tiny_model,
                                                               monkeypatch, capsys):
    """``segment`` of a 4-time-point movie prompted at time points 0-2, stopped by Ctrl-C
    as time point 1 starts: the rerun said "kept 1 of 4 time points ..., computed the other
    3", but time point 3 has no prompts (its labels stay 0): it computed 2."""
    import numpy as np
    import tifffile

    from napari_sam.batch import time_lapse
    from stacks import blob_stack

    movie = tmp_path / "data" / "m.tif"
    movie.parent.mkdir()
    tifffile.imwrite(movie, np.stack([blob_stack(z=3, seed=t) for t in range(4)]),
                     imagej=True, metadata={"axes": "TZYX"})
    (tmp_path / "p.csv").write_text("id,t,z,row,col\n1,0,1,20,20\n1,1,1,20,20\n1,2,1,20,20\n")
    argv = ["segment", movie, "-o", tmp_path / "out", "-p", tmp_path / "p.csv", "--model",
            tiny_model, "--batch-size", "1"]
    real, calls = time_lapse.mark_partial, []

    def stop_at_the_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(time_lapse, "mark_partial", stop_at_the_second)
    assert resume.cli(argv, capsys)[0] == 130
    monkeypatch.setattr(time_lapse, "mark_partial", real)
    rc, _, err = resume.cli(argv, capsys)
    assert rc == 0, err
    line = next(ln for ln in err.splitlines() if ln.startswith("done     m.tif"))
    assert line.endswith("; resumed: kept 1 of 4 time points an interrupted run finished, "
                         "computed the other 2 (1 time point without prompts))"), line
    assert resume.cli([*argv[:3], tmp_path / "once", *argv[4:]], capsys)[0] == 0
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "m_labels.tif"),
                          tifffile.imread(tmp_path / "once" / "m_labels.tif"))


def test_a_blocked_auto_job_samples_its_input_once_before_its_blocks(tmp_path, tiny_model,
                                                                    monkeypatch):
    """``auto --workers 1 --block-slices 4``: before submitting a job's blocks, the main
    process read what an interrupted run left and prepared the work folder, each sampling the
    input's content for the work folder's key (two reads of the input where one does)."""
    from napari_sam import batch

    data = blob_folder(tmp_path / "data", n=1, z=8, size=32)
    ctx = batch.Context(command="auto", model=str(tiny_model), out_dir=tmp_path / "out",
                        device="cpu", quiet=True, params={"points_per_side": 4})
    sampled = []
    real = nio.content_sample_hash
    monkeypatch.setattr(nio, "content_sample_hash", lambda p: sampled.append(p) or real(p))
    results = batch.run_jobs(batch.make_jobs([data / "b0.tif"], ctx), ctx, workers=1,
                             block_slices=4)
    assert [r.status for r in results] == ["done"], results
    assert sampled == [data / "b0.tif"]  # (this process's; the worker samples it again)


def test_a_model_named_resumed_is_not_counted_resumed(capsys):
    """The summary counted a file resumed where its reason held the word anywhere: a complete
    output recomputed for another checkpoint, ``vit_b_resumed.pt``, read '1 resumed'."""
    from napari_sam.batch import JobResult
    from napari_sam.cli.batch_command import summary

    changed = JobResult("a.tif", "a_labels.tif", "done", details={
        "replaced": True,
        "rerun_reason": "recomputed: the model changed: vit_b.pt -> vit_b_resumed.pt"})
    kept = JobResult("b.tif", "b_labels.tif", "done", details={
        "rerun_reason": "recomputed: parameters changed: points_per_side 4 -> 5; resumed: kept "
                        "3 of 8 slices an interrupted run finished, computed the other 5"})
    summary([changed, kept], 2, 1.0)
    assert "2 files: 2 done (1 resumed, 1 replaced an earlier output)" in capsys.readouterr().out
