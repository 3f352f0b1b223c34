"""``segment --method sam2`` takes SAM 2's notes (negative points it does not use, lost
objects) by asking for them, not by catching warnings: ``warnings.catch_warnings(record=True)``
around the run took every warning of the process while the job ran (a reader's or numpy's,
another thread's) and dropped those that were not UserWarnings, or said another thread's as
this file's note. Now other warnings reach the user and the job's notes are its own."""

from __future__ import annotations

import json
import threading
import warnings

import pytest
import tifffile

from cli_runner import cli
from sam2_checkpoint import save_sam2_checkpoint
from stacks import blob_stack

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def job(tmp_path):
    """A 3-slice stack, a prompts CSV with negative points SAM 2 does not use (object 1,
    slice 2) and a random SAM 2.1 checkpoint; returns the ``segment`` arguments."""
    tifffile.imwrite(tmp_path / "b.tif", blob_stack(z=3), imagej=True, metadata={"axes": "ZYX"})
    csv = tmp_path / "p.csv"
    csv.write_text("file,id,slice,row,col,label\n,1,1,20,20,1\n,1,2,30,30,0\n")
    model = save_sam2_checkpoint(tmp_path / "sam2.pt")
    return ["segment", tmp_path / "b.tif", "-p", csv, "-o", tmp_path / "out", "--model", model,
            "--method", "sam2", "--device", "cpu"]


def _warn_while_running(monkeypatch, warn):
    """Call ``warn()`` while SAM 2 propagates (when it reads the stack's intensity range)."""
    import napari_sam.sam2_volume as sv

    limits = sv.stack_intensity_limits

    def reading(stack, *args, **kwargs):
        warn()
        return limits(stack, *args, **kwargs)

    monkeypatch.setattr(sv, "stack_intensity_limits", reading)


def _notes(tmp_path, err):
    said = [ln for ln in err.splitlines() if ln.startswith("napari-sam: note: b.tif: ")]
    meta = json.loads((tmp_path / "out" / "b_labels.tif.json").read_text())
    return said, meta["extra"]["notes"]


def test_a_warning_during_the_job_still_reaches_the_user(tmp_path, offline_cli, job,
                                                         monkeypatch, capsys):
    _warn_while_running(monkeypatch, lambda: warnings.warn("a reader's own warning",
                                                           RuntimeWarning, stacklevel=2))
    with pytest.warns(RuntimeWarning, match="a reader's own warning"):
        rc, _, err = cli(job, capsys)
    assert rc == 0, err
    said, kept = _notes(tmp_path, err)
    assert len(said) == len(kept) == 1 and "negative points on slice 2" in kept[0]


def test_another_threads_warning_is_not_taken_as_the_jobs_note(tmp_path, offline_cli, job,
                                                              monkeypatch, capsys):
    def other_thread():
        t = threading.Thread(target=warnings.warn, args=("another thread's warning",),
                             kwargs={"stacklevel": 1})
        t.start()
        t.join()

    _warn_while_running(monkeypatch, other_thread)
    with pytest.warns(UserWarning, match="another thread's warning"):
        rc, _, err = cli(job, capsys)
    assert rc == 0, err
    said, kept = _notes(tmp_path, err)
    assert "another thread" not in err and not any("another thread" in n for n in kept)
    assert len(said) == len(kept) == 1 and "negative points on slice 2" in said[0]


def test_unused_negative_notes_are_what_segment_volume_sam2_warns(tmp_path):
    import numpy as np

    from napari_sam.sam2_volume import segment_volume_sam2, unused_negative_notes

    prompts = {1: [{"slice": 1, "points": [[20, 20]]},
                   {"slice": 2, "points": [[30, 30]], "labels": [0]}]}
    stack = blob_stack(z=3)
    notes = unused_negative_notes(prompts, stack.shape)
    assert len(notes) == 1 and notes[0].startswith("object 1: the negative points on slice 2 ")
    model = save_sam2_checkpoint(tmp_path / "sam2.pt")
    with pytest.warns(UserWarning) as said:
        segment_volume_sam2(stack, prompts, model, warn_lost=False)
    assert [str(w.message) for w in said] == notes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is warned when the caller says it
        segment_volume_sam2(np.asarray(stack), prompts, model, warn_lost=False,
                            warn_unused_negatives=False)
