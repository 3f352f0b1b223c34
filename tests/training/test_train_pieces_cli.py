"""``napari-sam train`` continuing a resumable run: a rerun that leaves out ``--resume`` (with
``--minutes`` or ``--max-steps``, or without) is refused with the fix named, never a fresh
run beside (or over) the run's training state."""

from __future__ import annotations

import pytest

from cli_runner import cli, error_line, md5s
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


@pytest.fixture
def first_piece(tmp_path, samples, tiny_model, capsys):
    """A resumable run of 2 epochs of 1 step stopped after its first step (its first epoch's
    checkpoint and the state saved): returns (its argv without --resume and the limit, -o)."""
    out = tmp_path / "m.pt"
    argv = [*_train(samples, samples / "ground_truth", out, tiny_model), "--epochs", "2"]
    rc, _, err = cli([*argv, "--resume", "--max-steps", "1"], capsys)
    assert rc == 0, err
    assert (tmp_path / "m.train-state.pt").is_file() and out.is_file()
    return argv, out


@pytest.mark.parametrize("limit", [("--minutes", "5"), ("--max-steps", "1"), ()])
def test_a_rerun_without_resume_names_the_run_to_continue(first_piece, capsys, limit):
    argv, out = first_piece
    state = out.with_name("m.train-state.pt")
    before = md5s(state, out)
    rc, _, err = cli([*argv, *limit], capsys)
    assert rc == 2
    assert error_line(err) == (
        f"napari-sam: error: {state} is the training state of a resumable run of -o {out}: "
        "add --resume to continue that run (with its options), or pass --overwrite to train "
        "from the start (it removes the state)")
    assert md5s(state, out) == before
    rc, stdout, err = cli([*argv, "--resume", *limit], capsys)  # the fix the line names
    assert rc == 0, err
    assert f"wrote {out}" in stdout and "2 epochs" in stdout


def test_the_limit_without_resume_and_no_run_to_continue_names_the_option_given(
        tmp_path, samples, tiny_model, capsys):
    out = tmp_path / "new.pt"
    rc, _, err = cli([*_train(samples, samples / "ground_truth", out, tiny_model),
                      "--minutes", "5"], capsys)
    assert rc == 2
    assert error_line(err) == (
        "napari-sam: error: --minutes stops a piece of a resumable run: add --resume (each "
        "piece saves new.train-state.pt beside -o, and the same command with --resume "
        "continues from it)")
    assert not out.exists()


def test_overwrite_without_resume_starts_a_new_run_that_resume_cannot_mistake(first_piece,
                                                                               capsys):
    """``--overwrite`` without ``--resume`` beside a resumable run's state trains from the
    start; the old state went with it, so a later ``--resume`` does not continue the old run
    over the new model (it continued from the old run's step 1 and replaced the new model)."""
    argv, out = first_piece
    state = out.with_name("m.train-state.pt")
    rc, stdout, err = cli([*argv, "--overwrite"], capsys)
    assert rc == 0, err
    assert f"wrote {out}" in stdout and "2 epochs" in stdout
    assert not state.exists()
    new = md5s(out)
    rc, _, err = cli([*argv, "--resume"], capsys)
    assert rc == 2
    assert error_line(err) == (
        f"napari-sam: error: {out} already exists and there is no training state beside it "
        "(m.train-state.pt) to continue: --resume would train it again from the start over "
        "it; pass --overwrite for that, or choose another -o")
    assert md5s(out) == new and not state.exists()
