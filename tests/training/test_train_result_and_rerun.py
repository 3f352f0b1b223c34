"""``napari_sam.train`` as a notebook meets it: the :class:`TrainResult` a cell shows is one
short line (not the model's modules and every epoch's history)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest


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
