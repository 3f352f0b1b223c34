"""``napari-sam train -o FILE.pt`` killed while it saves FILE.pt and FILE.json: every crash
point leaves files the next command handles (the checkpoint is never lost, never refused as
no training run's), and a FILE.json vouches only for the checkpoint it was written with (a
checkpoint downloaded over an earlier training run's FILE.pt is never replaced)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_runner import cli, error_line, md5s
from cli_runner import tiny_train_argv as _train

#: Run ``napari-sam ARGV`` saving every epoch (``save="last"``: each epoch writes a
#: checkpoint) and kill the process (``os._exit``: no cleanup runs) just before the N-th
#: rename into FILE.pt or FILE.json (or, given a third name, into that file), the moment a
#: power cut or SIGKILL can come.
KILL_AT_RENAME = """
import os, sys
from pathlib import Path
from napari_sam.cli import main
from napari_sam.training import run

out, n, names = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
finish = run._finish_epoch
run._finish_epoch = lambda *a, **k: finish(*a, **{**k, "save": "last"})
rename, seen = os.replace, []

def replace(src, dst, *a, **k):
    if Path(dst).name in names:
        seen.append(dst)
        if len(seen) == n:
            os._exit(9)
    return rename(src, dst, *a, **k)

os.replace = replace
sys.exit(main(sys.argv[4:]))
"""


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def killed_at_rename(argv, out, n: int, into=None) -> None:
    """Run ``napari-sam ARGV`` in a subprocess killed before its ``n``-th rename into
    ``out`` or its FILE.json (or into the file ``into``) (:data:`KILL_AT_RENAME`); asserts
    that it was killed there."""
    names = into.name if into else f"{out.name},{out.with_suffix('.json').name}"
    proc = subprocess.run([sys.executable, "-c", KILL_AT_RENAME, str(out), str(n), names,
                           *map(str, argv)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr


def sha256(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_killed_between_the_two_renames_the_checkpoint_is_completed_not_refused(
        tmp_path, samples, tiny_model, capsys):
    """Killed after the first of the save's two renames: the next command finds the
    checkpoint (was: FILE.pt without FILE.json, refused even with --overwrite as a file no
    training run wrote), and --overwrite trains again over it."""
    out = tmp_path / "m.pt"
    argv = _train(samples, samples / "ground_truth", out, tiny_model)
    killed_at_rename(argv, out, 2)
    rc, _, err = cli([a for a in argv if a != "-q"], capsys)
    assert rc == 2
    assert (f"note: completed the interrupted save of {out} (the last run stopped after "
            "writing its metadata, before renaming the checkpoint into place)") in err
    assert error_line(err) == (f"napari-sam: error: {out} already exists; pass --overwrite to "
                               "replace it or choose another -o")
    meta = json.loads(out.with_suffix(".json").read_text())
    assert sha256(out) == meta["sha256"] and meta["steps"] == 1  # the killed run's model
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    rc, stdout, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert f"wrote {out}" in stdout
    assert sha256(out) == json.loads(out.with_suffix(".json").read_text())["sha256"]


@pytest.mark.parametrize("n", [1, 2])
def test_a_resumable_run_killed_while_saving_resumes_from_its_state(tmp_path, samples,
                                                                    tiny_model, capsys, n):
    """A piece killed before (n=1) or between (n=2) the renames of its epoch 2 checkpoint:
    ``--resume`` continues from the state epoch 1 saved and finishes the schedule at step 2."""
    out = tmp_path / "m.pt"
    argv = [*_train(samples, samples / "ground_truth", out, tiny_model), "--epochs", "2",
            "--resume"]
    rc, _, err = cli([*argv, "--max-steps", "1"], capsys)
    assert rc == 0, err
    killed_at_rename(argv, out, n)
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert f"wrote {out}" in stdout and "2 epochs" in stdout and "over 2 runs" in stdout
    from napari_sam.training.checkpoint import load_training_state

    state = load_training_state(tmp_path / "m.train-state.pt")  # ("over 2 runs": from piece 1)
    assert state["complete"] and state["trainer"]["step_count"] == 2
    assert sha256(out) == json.loads(out.with_suffix(".json").read_text())["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt", "m.train-state.pt"]


def test_killed_before_its_first_training_state_a_resume_names_the_way_on(
        tmp_path, samples, tiny_model, capsys):
    """Killed after the first checkpoint, before the first training state: ``--resume`` says
    there is nothing to continue and what to do; the checkpoint is kept until then."""
    out, state = tmp_path / "m.pt", tmp_path / "m.train-state.pt"
    argv = [*_train(samples, samples / "ground_truth", out, tiny_model), "--epochs", "2",
            "--resume"]
    killed_at_rename(argv, out, 1, into=state)
    before = md5s(out, out.with_suffix(".json"))
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    assert error_line(err) == (
        f"napari-sam: error: {out} already exists and there is no training state beside it "
        "(m.train-state.pt) to continue: --resume would train it again from the start over "
        "it; pass --overwrite for that, or choose another -o")
    assert md5s(out, out.with_suffix(".json")) == before and not state.exists()
    rc, stdout, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert f"wrote {out}" in stdout and state.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt", "m.train-state.pt"]


def test_a_checkpoint_downloaded_beside_an_old_training_json_is_never_replaced(
        tmp_path, samples, tiny_model, capsys):
    """FILE.json left by an earlier training run vouches only for the FILE.pt it was written
    with: a checkpoint downloaded there since is not replaced, not even with --overwrite
    (was: replaced); the API refuses it too."""
    import napari_sam as ns

    out = tmp_path / "m.pt"
    argv = _train(samples, samples / "ground_truth", out, tiny_model)
    assert cli(argv, capsys)[0] == 0
    out.write_bytes(b"downloaded weights")
    before = md5s(out, out.with_suffix(".json"))
    for extra in ("--overwrite", "--resume"):
        rc, _, err = cli([*argv, extra], capsys)
        assert rc == 2
        assert error_line(err) == (
            f"napari-sam: error: {out} exists and was not written by napari-sam train (m.json "
            "is the metadata of a training run, but of another m.pt: its sha256 differs, e.g. "
            "a checkpoint downloaded or copied there since): napari-sam never replaces it, not "
            "even with --overwrite (that replaces an earlier training run's files only); give "
            "another -o / out, or move it away yourself")
    with pytest.raises(FileExistsError, match="its sha256 differs.*not even with overwrite=True"):
        ns.train(str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"),
                 model=tiny_model, out=out, overwrite=True, epochs=1)
    assert md5s(out, out.with_suffix(".json")) == before


def test_the_json_vouches_for_the_checkpoint_its_save_replaced(tmp_path, samples, tiny_model,
                                                                capsys):
    """A save killed between its renames whose new checkpoint is gone (its temporary file
    deleted) leaves the new FILE.json beside the previous FILE.pt: still a training run's,
    replaced with --overwrite."""
    out = tmp_path / "m.pt"
    argv = _train(samples, samples / "ground_truth", out, tiny_model)
    assert cli(argv, capsys)[0] == 0
    previous = out.read_bytes()
    killed_at_rename([*argv, "--overwrite", "--seed", "1"], out, 2)
    for tmp in tmp_path.glob(".m.pt.tmp-*"):
        tmp.unlink()
    assert out.read_bytes() == previous
    assert sha256(out) != json.loads(out.with_suffix(".json").read_text())["sha256"]
    rc, stdout, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert sha256(out) == json.loads(out.with_suffix(".json").read_text())["sha256"]
