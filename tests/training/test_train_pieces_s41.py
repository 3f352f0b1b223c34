"""A resumable ``napari-sam train`` run continued in pieces from elsewhere (walk-through of a
run in many pieces, session 41): the output folder moved between pieces, another working
folder."""

from __future__ import annotations

import json
import shutil

import pytest

from cli_runner import cli
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def test_a_run_moved_and_resumed_from_another_folder_names_its_new_place(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    """The first piece ran in ``tmp_path`` with ``-o first/m.pt``; the folder was then moved
    to ``moved/`` and the run resumed from ``elsewhere/`` with ``-o ../moved/m.pt``: the
    command names the checkpoint where it is now (was: "wrote first/m.pt" and "use it: ...
    --model first/m.pt", the path the first piece was given, which no longer existed)."""
    monkeypatch.chdir(tmp_path)
    argv = [*_train(samples, samples / "ground_truth", "first/m.pt", tiny_model),
            "--epochs", "3", "--resume"]
    rc, stdout, err = cli([*argv, "--max-steps", "1"], capsys)
    assert rc == 0, err
    assert "wrote first/m.pt: the weights of epoch 1" in stdout
    shutil.move(tmp_path / "first", tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    argv[argv.index("-o") + 1] = "../moved/m.pt"
    rc, stdout, err = cli([*argv, "--max-steps", "1"], capsys)
    assert rc == 0, err
    assert "first/m.pt" not in stdout + err
    best = json.loads((tmp_path / "moved" / "m.json").read_text())["best_epoch"]
    assert f"wrote ../moved/m.pt: the weights of epoch {best}, validation IoU" in stdout
    assert "--model ../moved/m.pt" in stdout


def test_a_checkpoint_deleted_between_pieces_is_written_again_from_the_state(
        tmp_path, samples, tiny_model, capsys, caplog):
    """m.pt deleted after the piece that wrote the best epoch's weights: the resumed run writes
    it again from the training state, the uninterrupted run's checkpoint and metadata (was:
    "wrote m.pt: the weights of epoch 1" at the end and no m.pt, when no later epoch beat
    it)."""
    import torch

    argv = [*_train(samples, samples / "ground_truth", tmp_path / "one.pt", tiny_model),
            "--epochs", "3", "--resume", "--lr", "0.05"]  # later epochs get worse
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["best_epoch"] < 3  # no later piece writes it again by itself
    out = tmp_path / "split" / "m.pt"
    argv[argv.index("-o") + 1] = str(out)
    rc, _, err = cli([*argv, "--max-steps", str(one["best_epoch"])], capsys)
    assert rc == 0, err
    out.unlink()
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert (f"{out} was not there (deleted since an earlier piece of this run wrote it): wrote "
            f"it again from the training state, the weights of epoch {one['best_epoch']} (the "
            "best so far)") in caplog.text
    assert f"wrote {out}: the weights of epoch {one['best_epoch']}" in stdout
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(out, weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0
    two = json.loads(out.with_suffix(".json").read_text())
    assert two["sha256"] == one["sha256"] and two["metrics"] == [
        {**m, "seconds": n["seconds"]} for m, n in zip(one["metrics"], two["metrics"])]
