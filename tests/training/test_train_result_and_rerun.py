"""``napari_sam.train`` as a notebook meets it: the :class:`TrainResult` a cell shows is one
short line (not the model's modules and every epoch's history), and a call beside the
training state of an earlier resumable run refuses, naming the state and the two ways on,
as ``napari-sam train`` does (``resume=True`` continues it, ``overwrite=True`` starts over);
both at once beside a state are refused, in the API and the command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli_runner import cli, error_line, md5s, tiny_train_argv


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _result(**kw):
    from napari_sam.training.run import TrainResult

    history = [{"epoch": 1, "val_iou": 0.5}, {"epoch": 2, "val_iou": 0.625}]
    return TrainResult(**{"model": object(), "path": Path("my_model.pt"), "history": history,
                          "base": {"val_iou": 0.25}, **kw})


@pytest.mark.parametrize("kw, text", [
    ({}, "TrainResult(2 epochs, best val_iou 0.625 (base 0.250), checkpoint my_model.pt)"),
    ({"complete": False}, "TrainResult(2 epochs, best val_iou 0.625 (base 0.250), checkpoint "
                          "my_model.pt, stopped before the end of the schedule (resume=True "
                          "continues))"),
    ({"interrupted": True}, "TrainResult(2 epochs, best val_iou 0.625 (base 0.250), "
                            "checkpoint my_model.pt, interrupted)"),
    ({"already_complete": True}, "TrainResult(2 epochs, best val_iou 0.625 (base 0.250), "
                                 "checkpoint my_model.pt, already complete: nothing trained "
                                 "now)"),
    ({"path": None, "base": None, "history": [{"epoch": 1, "val_iou": None}]},
     "TrainResult(1 epoch, nothing saved)"),
])
def test_train_result_repr_is_one_short_line(kw, text):
    assert repr(_result(**kw)) == text


def _kw(tiny_model) -> dict:
    return dict(model=str(tiny_model), epochs=2, steps_per_epoch=2, batch_size=1,
                objects_per_image=2, val_fraction=0.34, device="cpu", progress=False)


def test_a_real_train_result_shows_its_line(tmp_path, samples, tiny_model):
    import napari_sam as ns

    out = tmp_path / "m.pt"
    kw = dict(_kw(tiny_model), steps_per_epoch=1)
    res = ns.train(str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"), out=out,
                   **kw)
    assert re.fullmatch(rf"TrainResult\(2 epochs, best val_iou \d\.\d{{3}} \(base \d\.\d{{3}}\), "
                        rf"checkpoint {re.escape(str(out))}\)", repr(res)), repr(res)


@pytest.fixture
def stale(tmp_path, samples, tiny_model):
    """A resumable API run of 2 epochs of 2 steps stopped after its first step: only its
    training state is on disk. Returns (the call's arguments, out, the state)."""
    import napari_sam as ns

    out = tmp_path / "m.pt"
    args = (str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"))
    res = ns.train(*args, out=out, resume=True, max_steps=1, **_kw(tiny_model))
    state = tmp_path / "m.train-state.pt"
    assert res.state_saved and not out.exists() and state.is_file()
    return args, out, state


def test_the_api_beside_a_training_state_refuses_naming_it_and_the_ways_on(stale,
                                                                          tiny_model):
    import napari_sam as ns

    args, out, state = stale
    before = md5s(state)
    with pytest.raises(FileExistsError) as exc:
        ns.train(*args, out=out, **_kw(tiny_model))
    assert str(exc.value) == (
        f"{state} is the training state of a resumable run of {out}: pass resume=True to "
        "continue that run (with its options), or overwrite=True to train from the start (it "
        "removes the state)")
    with pytest.raises(ValueError) as exc:
        ns.train(*args, out=out, resume=True, overwrite=True, **_kw(tiny_model))
    assert str(exc.value) == (
        f"resume=True and overwrite=True contradict each other beside {state}: resume=True "
        "continues that run (with its options), overwrite=True trains from the start (it "
        "removes the state); pass one")
    assert md5s(state) == before and not out.exists()  # nothing written, nothing removed
    res = ns.train(*args, out=out, resume=True, **_kw(tiny_model))  # the first way on
    assert res.complete and res.epochs_done_now == 2 and out.is_file()


def test_the_api_overwrite_beside_a_training_state_starts_over(stale, tiny_model):
    import napari_sam as ns

    args, out, state = stale
    res = ns.train(*args, out=out, overwrite=True, **_kw(tiny_model))
    assert res.complete and len(res.history) == 2 and out.is_file()
    assert not state.exists()  # a later resume=True cannot continue the old run over it


def test_resume_and_overwrite_together_beside_a_state_is_a_usage_error(stale, samples,
                                                                        tiny_model, capsys):
    _, out, state = stale
    before = md5s(state)
    argv = tiny_train_argv(samples, samples / "ground_truth", out, tiny_model, "--resume",
                           "--overwrite")
    rc, stdout, err = cli(argv, capsys)
    assert rc == 2
    assert err.splitlines()[0] == "usage: napari-sam train --help"
    assert error_line(err) == (
        f"napari-sam: error: --resume and --overwrite contradict each other beside {state}: "
        "--resume continues that run (with its options), --overwrite trains from the start (it "
        f"removes the state and replaces -o {out}); give one")
    assert md5s(state) == before and not out.exists() and stdout == ""


def test_resume_and_overwrite_without_a_state_replace_the_checkpoint_with_a_resumable_run(
        tmp_path, samples, tiny_model, capsys):
    """Without a state there is nothing to contradict: an earlier checkpoint is replaced by
    a new resumable run (what the message for ``--resume`` over a checkpoint without state
    tells the user to do)."""
    out = tmp_path / "m.pt"
    argv = tiny_train_argv(samples, samples / "ground_truth", out, tiny_model)
    assert cli(argv, capsys)[0] == 0
    before = md5s(out)
    rc, stdout, err = cli([*argv, "--resume", "--overwrite", "--seed", "1"], capsys)
    assert rc == 0, err
    assert md5s(out) != before and (tmp_path / "m.train-state.pt").is_file()
