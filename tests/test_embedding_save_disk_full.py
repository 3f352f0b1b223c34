"""Saving an image embedding (``ImageEmbedding.save``, ``Sam2ImageEmbedding.save``) on a disk
that fills up: no temporary file is left beside the output, an earlier file of that name is
kept as it was, and the ``OSError`` names the output (so that
:func:`~napari_sam.io.write_errors.write_problem` says which file and what to do). The saves
had their own temporary-and-rename code: the hidden ``.NAME.tmp-PID`` stayed behind and the
error named no file."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from full_disk import disk_fills_after
from napari_sam.io.write_errors import write_problem
from napari_sam.models.sam2.image_predictor import Sam2ImageEmbedding
from napari_sam.predictor import ImageEmbedding


def _sam(value: float) -> ImageEmbedding:
    return ImageEmbedding(torch.full((16, 8, 8), value), (30, 40), (64, 64), "demo:test")


def _sam2(value: float) -> Sam2ImageEmbedding:
    return Sam2ImageEmbedding(torch.full((16, 8, 8), value),
                              [torch.full((4, 32, 32), value), torch.full((8, 16, 16), value)],
                              (30, 40), (64, 64), "random:21")


@pytest.mark.parametrize("made", [_sam, _sam2], ids=["sam", "sam2"])
@pytest.mark.parametrize("earlier", [False, True], ids=["new", "over-an-earlier-file"])
def test_a_save_on_a_full_disk_leaves_no_temporary_and_names_the_file(tmp_path, monkeypatch,
                                                                     made, earlier):
    path = tmp_path / "emb.npz"
    if earlier:
        made(1.0).save(path)
    before = path.read_bytes() if earlier else None
    with disk_fills_after(monkeypatch, 2_000), pytest.raises(OSError) as info:
        made(2.0).save(path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert write_problem(info.value) == (
        f"could not write {path}: no space left on the device of {tmp_path}; free space there "
        "or write to another folder (-o), then run the command again")
    assert os.listdir(tmp_path) == (["emb.npz"] if earlier else [])
    if earlier:
        assert path.read_bytes() == before
        assert float(type(made(0.0)).load(path).features.max()) == 1.0


@pytest.mark.parametrize("made", [_sam, _sam2], ids=["sam", "sam2"])
def test_a_saved_embedding_loads_back_equal(tmp_path, made):
    emb = made(3.0)
    again = type(emb).load(emb.save(tmp_path / "sub" / "e.npz"))
    assert torch.equal(again.features, emb.features)
    assert (again.original_size, again.input_size, again.model_id) == (
        emb.original_size, emb.input_size, emb.model_id)
    for a, b in zip(getattr(again, "high_res", []), getattr(emb, "high_res", [])):
        assert np.array_equal(a.numpy(), b.numpy())
    assert os.listdir(tmp_path / "sub") == ["e.npz"]
