"""A resumable run without validation images (``--val-fraction 0``) whose checkpoint was
deleted between pieces: the resumed run writes it again, as a run with validation images
does (tests/training/test_train_pieces_s41.py). Before, it was written again only when a later
epoch's training IoU beat the best one: the command ended with "wrote m.pt" and no m.pt."""

from __future__ import annotations

import json

import pytest

from cli_runner import cli
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def test_a_checkpoint_deleted_between_pieces_of_a_run_without_validation_is_written_again(
        tmp_path, samples, tiny_model, capsys, caplog, monkeypatch):
    import torch

    from napari_sam.training import run as run_module

    # training IoU 0.8 in epoch 1, then worse: only epoch 1's save writes m.pt
    ious = iter([0.8, 0.6, 0.5, 0.4] * 4)
    finish = run_module._finish_epoch

    def worse_after_epoch_1(trainer, loop, *args, **kwargs):
        loop.sums["iou_last"] = next(ious) * max(loop.count, 1)
        return finish(trainer, loop, *args, **kwargs)

    monkeypatch.setattr(run_module, "_finish_epoch", worse_after_epoch_1)
    argv = [*_train(samples, samples / "ground_truth", tmp_path / "one.pt", tiny_model),
            "--epochs", "3", "--steps-per-epoch", "2", "--val-fraction", "0", "--resume"]
    rc, _, err = cli(argv, capsys)  # in one piece: what the pieces must give
    assert rc == 0, err
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["best_epoch"] == 1 and len(one["metrics"]) == 1
    ious = iter([0.8, 0.6, 0.5, 0.4] * 4)
    out = tmp_path / "split" / "m.pt"
    argv[argv.index("-o") + 1] = str(out)
    rc, _, err = cli([*argv, "--max-steps", "3"], capsys)  # stops inside epoch 2
    assert rc == 0, err
    out.unlink()
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert (f"{out} was not there (deleted since an earlier piece of this run wrote it): wrote "
            "it again from the training state, the weights of epoch 1 (the best so far)"
            ) in caplog.text
    assert f"wrote {out}: the weights of epoch 1" in stdout
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(out, weights_only=True)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0
    two = json.loads(out.with_suffix(".json").read_text())
    assert two["best_epoch"] == 1 and two["sha256"] == one["sha256"]
