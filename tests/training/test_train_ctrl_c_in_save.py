"""Ctrl-C while ``napari-sam train`` writes a checkpoint or its training state: the command
stops as interrupted (exit code 130, the earlier files intact, no temporary file left), not
with ``torch.save``'s "unexpected pos ..." (it turned the ``KeyboardInterrupt`` raised
inside its write into a ``RuntimeError``: exit code 1), and the resumed run ends where an
uninterrupted one does (walk-through of a run in many pieces, session 41)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from cli_runner import cli
from cli_runner import tiny_train_argv as _train
from full_disk import WrappedFile


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


class _CtrlCInWrite(WrappedFile):
    """A file whose second ``write`` is preceded by ``presses`` Ctrl-C (SIGINT to this
    process): the handlers run there, inside the write ``torch.save`` makes."""

    def __init__(self, fh, presses: int):
        self._fh, self._presses, self._writes = fh, presses, 0

    def write(self, data):
        self._writes += 1
        if self._writes == 2:
            for _ in range(self._presses):
                os.kill(os.getpid(), signal.SIGINT)
        return self._fh.write(data)


def ctrl_c_in_save(monkeypatch, prefix: str, presses: int) -> list:
    """Press Ctrl-C ``presses`` times during the first write of a file whose name begins
    with ``prefix`` (a temporary file of a save); returns the names it was pressed in."""
    from napari_sam.io import writers

    pressed = []

    def opening(path, mode="r", *args, **kwargs):
        fh = open(path, mode, *args, **kwargs)
        if pressed or "w" not in mode or not Path(path).name.startswith(prefix):
            return fh
        pressed.append(Path(path).name)
        return _CtrlCInWrite(fh, presses)

    monkeypatch.setattr(writers, "open", opening, raising=False)
    return pressed


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_ctrl_c_during_the_checkpoint_save_is_an_interrupt(tmp_path, samples, tiny_model,
                                                          capsys, monkeypatch):
    out = tmp_path / "m.pt"
    pressed = ctrl_c_in_save(monkeypatch, ".m.pt.tmp-", 1)
    rc, stdout, err = cli(_train(samples, samples / "ground_truth", out, tiny_model), capsys)
    from napari_sam.training.checkpoint import temporary_path

    assert pressed == [temporary_path(out).name]  # .m.pt.tmp-HOST-PID-NS
    assert "unexpected pos" not in err + stdout
    assert rc == 130
    assert "Interrupted: the checkpoint on disk is the last good one." in stdout
    assert _left(tmp_path) == []  # no checkpoint, no metadata, no temporary file


@pytest.mark.parametrize("prefix", [".m.pt.tmp-", ".m.train-state.pt.tmp-"])
def test_a_second_ctrl_c_during_an_epochs_save_resumes_to_the_uninterrupted_run(
        tmp_path, samples, tiny_model, capsys, monkeypatch, prefix):
    """Ctrl-C twice while epoch 1 of 2 saves its checkpoint, or its training state: the
    piece stops as interrupted (exit code 130); the resumed run records each epoch once and
    writes the uninterrupted run's checkpoint and state (the checkpoint case recorded epoch
    1 twice and kept the checkpoint of no epoch)."""
    argv = [*_train(samples, samples / "ground_truth", tmp_path / "one.pt", tiny_model),
            "--epochs", "2", "--resume"]
    rc, _, err = cli(argv, capsys)
    assert rc == 0, err
    split = tmp_path / "split" / "m.pt"
    argv[argv.index("-o") + 1] = str(split)
    pressed = ctrl_c_in_save(monkeypatch, prefix, 2)
    rc, stdout, err = cli(argv, capsys)
    assert pressed and "unexpected pos" not in err + stdout
    assert rc == 130
    state = split.with_name("m.train-state.pt")
    assert (f"Interrupted (SIGTERM or Ctrl-C): the training state is in {state}; run the same "
            "command again to continue") in stdout
    assert not [n for n in _left(split.parent) if ".tmp-" in n]
    monkeypatch.undo()
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert "2 epochs" in stdout
    one = json.loads((tmp_path / "one.json").read_text())
    two = json.loads(split.with_suffix(".json").read_text())
    keys = ("epoch", "steps", "loss", "val_iou")
    assert [[m[k] for k in keys] for m in two["metrics"]] == \
        [[m[k] for k in keys] for m in one["metrics"]]
    assert two["best_epoch"] == one["best_epoch"]
    loop = torch.load(split.with_name("m.train-state.pt"), weights_only=True)["loop"]
    assert [h["epoch"] for h in loop["history"]] == [1, 2]
    for a, b in ((tmp_path / "one.pt", split),
                 (tmp_path / "one.train-state.pt", split.with_name("m.train-state.pt"))):
        wa, wb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        if "trainer" in wa:
            wa, wb = wa["trainer"]["model"], wb["trainer"]["model"]
        assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) == 0
