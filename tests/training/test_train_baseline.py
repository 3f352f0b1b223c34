"""``napari-sam train`` measures the base model on the validation images before the first
step and says how the checkpoint compares with it (helper walk-through, session 27: a
finetune of the demo model on 13 nuclei annotated in the dock reported "validation IoU 0.858"
and was worse than the base model on every measure, with nothing to say so)."""

from __future__ import annotations

import json

import pytest

from cli_runner import cli


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    import napari_sam.cli as C

    root = tmp_path_factory.mktemp("samples")
    assert C.main(["sample", "nuclei-2d", "-o", str(root / "a"), "-n", "4", "--shape",
                   "96,96", "--seed", "10000", "-q"]) == 0
    return root / "a"


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in offline_cli's surroundings (tests/conftest.py)."""


def _train(samples, out, capsys, *extra):
    return cli(["train", str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"),
                "-o", out, "--epochs", "1", "--steps-per-epoch", "2", "--val-fraction", "0.5",
                *extra], capsys)


def test_the_base_model_is_measured_and_a_worse_finetune_is_said(samples, tmp_path, capsys):
    rc, out, err = _train(samples, tmp_path / "wrecked.pt", capsys, "--lr", "0.5")
    said = out + err
    assert rc == 0, said
    assert "before training, the base model: val IoU" in said
    meta = json.loads((tmp_path / "wrecked.json").read_text())
    base = meta["base_validation"]["val_iou"]
    best = meta["metrics"][0]["val_iou"]
    assert best < base  # a learning rate this high wrecks the demo model
    assert f"the base model had val IoU {base:.3f} on the same validation images" in said
    assert f"no epoch beat it ({best:.3f})" in said and "keep using the base model" in said


def test_a_finetune_that_beats_the_base_model_says_both(samples, tmp_path, capsys):
    rc, out, err = _train(samples, tmp_path / "tuned.pt", capsys)
    said = out + err
    assert rc == 0, said
    meta = json.loads((tmp_path / "tuned.json").read_text())
    base = meta["base_validation"]["val_iou"]
    assert f"the base model had val IoU {base:.3f}" in said
    assert ("no epoch beat it" in said) == (meta["metrics"][0]["val_iou"] <= base)


def test_a_gain_within_noise_is_said_to_be_no_shown_gain(samples, tmp_path, capsys):
    """Session 32's walk-through: a finetune on 4 validation slices (50 objects) ended with
    "val IoU 0.826 ... the base model had val IoU 0.819", read as a gain; on held-out slices
    the two models were equal (0.739 and 0.738). The final line now weighs the gain against
    its paired standard error over the validation objects."""
    from types import SimpleNamespace

    from napari_sam.cli.train_command import written_message

    rc, out, err = _train(samples, tmp_path / "tuned.pt", capsys)
    assert rc == 0, out + err
    meta = json.loads((tmp_path / "tuned.json").read_text())
    n = meta["base_validation"]["val_objects"]
    assert len(meta["base_validation"]["val_object_ious"]) == n > 1
    se = meta["metrics"][0]["val_gain_se"]
    assert 0 <= se < 1
    gain = meta["metrics"][0]["val_iou"] - meta["base_validation"]["val_iou"]
    said = out + err
    assert ("within noise" in said) == (0 < gain < 2 * se)

    path = tmp_path / "made.pt"
    for se, noise in ((0.010, True), (0.001, False)):
        (tmp_path / "made.json").write_text(json.dumps({"best_epoch": 1}))
        result = SimpleNamespace(path=str(path), base={"val_iou": 0.819}, history=[
            {"epoch": 1, "val_iou": 0.826, "val_objects": 50, "val_gain_se": se}])
        line = written_message(result, 1, 10.0)
        assert ("+0.007 on 50 objects is within noise (the difference's standard error is "
                f"{se:.3f}), so the finetuned model is not shown to be better" in line) == noise
        assert "the base model had val IoU 0.819" in line
