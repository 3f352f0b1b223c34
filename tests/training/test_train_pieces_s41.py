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
