"""``napari-sam train`` whose validation images hold no labelled object: the run says so
(which images, where to add labelled ones), picks the checkpoint by training IoU and never
reports or compares a nan validation IoU (was: "val IoU nan" on every epoch line, and since
nan is never greater than the best so far, no checkpoint was written: "no checkpoint was
written", exit code 1)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from cli_runner import cli, error_line
from cli_runner import tiny_train_argv as _train


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def _empty_validation_labels(monkeypatch):
    """The validation split's label images hold no object as the validation sees them (a
    data-engine folder whose held-out images were saved with empty labels): ``load_pairs``
    refuses an all-zero label file, so the emptying is done on the split items."""
    from napari_sam.training import run as run_module

    split = run_module.split_items

    def emptied(items, val_fraction, seed):
        train, val = split(items, val_fraction, seed)
        for item in val:
            item.labels = np.zeros_like(item.labels)
        return train, val

    monkeypatch.setattr(run_module, "split_items", emptied)


def test_validation_without_objects_is_said_and_the_best_epoch_is_the_training_ious(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    from napari_sam.training import run as run_module

    _empty_validation_labels(monkeypatch)
    ious = iter([0.7, 0.5])  # the training IoU of epoch 1, then 2: epoch 1 is the best
    finish = run_module._finish_epoch

    def set_train_iou(trainer, loop, *args, **kwargs):
        loop.sums["iou_last"] = next(ious) * max(loop.count, 1)
        return finish(trainer, loop, *args, **kwargs)

    monkeypatch.setattr(run_module, "_finish_epoch", set_train_iou)
    out = tmp_path / "m.pt"
    argv = [*_train(samples, samples / "ground_truth", out, tiny_model),
            "--epochs", "2", "--val-fraction", "0.34"]
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert "nan" not in stdout + err
    notes = [line for line in err.splitlines() if "validation had no objects" in line]
    assert len(notes) == 1, err  # said once, before training
    assert notes[0].startswith("napari-sam: note: validation had no objects: the 1 validation "
                               f"image ({samples / 'nuclei-2d_seed'}")
    assert (f"holds no labelled object to measure, so there is no validation IoU and the "
            f"checkpoint is the epoch with the best training IoU; add labelled images in "
            f"{samples} (each with its label image) for a held-out validation, or train with "
            "--val-fraction 0 (val_fraction=0) to skip it") in notes[0]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["best_epoch"] == 1 and "base_validation" not in meta
    assert meta["metrics"][0]["val_objects"] == 0 and "val_iou" not in meta["metrics"][0]
    assert stdout.startswith(f"wrote {out}: the weights of epoch 1, training IoU 0.700 (the best "
                             "epoch; the last, epoch 2, had 0.500)")


def test_the_note_of_a_save_last_run_names_the_last_epoch(tmp_path, samples, tiny_model,
                                                          monkeypatch):
    """``train(save="last")`` writes the last epoch, not the one with the best training IoU,
    which its note named (the words of ``save="best"``)."""
    from napari_sam.training import train

    _empty_validation_labels(monkeypatch)
    notes = []
    result = train(str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"),
                   model=str(tiny_model), out=tmp_path / "m.pt", epochs=1, steps_per_epoch=1,
                   batch_size=1, objects_per_image=2, val_fraction=0.34, device="cpu",
                   progress=False, save="last", on_note=notes.append)
    said = [n for n in notes if n.startswith("validation had no objects")]
    assert len(said) == 1, notes
    assert ("so there is no validation IoU and the checkpoint is the last epoch "
            "(save='last'); add labelled images") in said[0]
    assert result.path == tmp_path / "m.pt" and result.path.exists()


def test_validation_without_objects_is_said_on_each_epoch_line(
        tmp_path, samples, tiny_model, capsys, monkeypatch):
    _empty_validation_labels(monkeypatch)
    argv = [*_train(samples, samples / "ground_truth", tmp_path / "m.pt", tiny_model),
            "--val-fraction", "0.34"]
    argv.remove("-q")
    rc, stdout, err = cli(argv, capsys)
    assert rc == 0, err
    assert "nan" not in stdout + err
    line = next(x for x in (stdout + err).splitlines() if x.startswith("epoch 1/1: loss"))
    assert line.endswith(", no validation objects (best epoch by training IoU)"), line
    assert "before training, the base model" not in stdout + err


def test_train_api_refuses_max_val_objects_below_one_before_any_work(tmp_path):
    from napari_sam.training import train

    with pytest.raises(ValueError, match=r"^max_val_objects must be at least 1 or None, got 0; "
                                         r"val_fraction=0 trains without validation$"):
        train(str(tmp_path / "none" / "*.tif"), str(tmp_path / "none" / "*.tif"),
              out=tmp_path / "m.pt", max_val_objects=0)
    assert not (tmp_path / "m.pt").exists()


def test_a_data_engine_folder_with_an_empty_label_image_names_it(
        tmp_path, samples, tiny_model, capsys):
    import tifffile

    data = tmp_path / "d"
    shutil.copytree(samples, data)
    empty = sorted((data / "ground_truth").glob("*.tif"))[-1]
    tifffile.imwrite(empty, np.zeros_like(tifffile.imread(empty)))
    argv = _train(data, data / "ground_truth", tmp_path / "m.pt", tiny_model)
    rc, _, err = cli(argv, capsys)
    assert rc == 2
    assert error_line(err).endswith(
        f"{empty}: the label image has no objects (all zeros); give instance labels with ids "
        "> 0 for the objects to learn")
    assert not (tmp_path / "m.pt").exists()
