"""``napari-sam export onnx`` of a damaged checkpoint: a download cut short (the zip's end is
missing) and a file holding half of the model's tensors are refused with exit code 2 and one
line naming the file and what is wrong, and nothing is written (no output folder)."""

from __future__ import annotations

import shutil

import pytest

from cli_runner import cli, error_line


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""


def test_a_truncated_checkpoint_is_refused_and_nothing_is_written(tmp_path, tiny_model, capsys):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_model.read_bytes()[: tiny_model.stat().st_size // 2])
    shutil.copy(f"{tiny_model}.json", f"{cut}.json")
    rc, _, err = cli(["export", "onnx", cut, "-o", tmp_path / "out"], capsys)
    assert rc == 2
    assert error_line(err).startswith(
        f"napari-sam: error: {cut} is not a readable PyTorch checkpoint (truncated download or "
        "another file format?)")
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_missing_half_its_tensors_says_so_plainly(tmp_path, tiny_model, capsys):
    import torch

    sd = torch.load(tiny_model, weights_only=True)
    half = tmp_path / "half.pt"
    torch.save(dict(list(sd.items())[: len(sd) // 2]), half)
    shutil.copy(f"{tiny_model}.json", f"{half}.json")
    rc, _, err = cli(["export", "onnx", half, "-o", tmp_path / "out"], capsys)
    assert rc == 2
    line = error_line(err)
    # was "checkpoint is a not a recognisable SAM model but the config is ..."
    assert line.startswith(f"napari-sam: error: {half}: checkpoint is not a recognisable SAM "
                           "model (the config is CNN model (widths [8, 16, 24, 32], input 128)); "
                           "missing keys: "), line
    assert line.endswith(" more); copy or download the file again (it holds too little of a "
                         "SAM model to load), or give another checkpoint"), line
    assert not (tmp_path / "out").exists()
