"""``napari-sam train d/ d/`` and ``train d/ d/labels.tif`` on a folder holding ``image.tif``
and ``labels.tif`` (the real nuclei stack's layout) stopped with "IMAGES and LABELS select
the same files ... LABELS holds nothing else": the IMAGES folder took ``labels.tif`` as an
image. IMAGES now leave out label images found in a folder or by a glob, as ``auto`` does,
so both commands train on ``image.tif`` with ``labels.tif``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cli_runner import cli
from cli_runner import tiny_train_argv as _train


@pytest.fixture
def folder(tmp_path):
    """``image.tif`` (4, 64, 64) uint16 with three bright blobs, ``labels.tif`` their ids."""
    d = tmp_path / "data"
    d.mkdir()
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((4, 64, 64), np.uint16)
    for i, (r, c) in enumerate([(16, 16), (40, 20), (30, 46)], start=1):
        labels[:, (yy - r) ** 2 + (xx - c) ** 2 < 81] = i
    rng = np.random.default_rng(0)
    image = (rng.random(labels.shape) * 300 + (labels > 0) * 2000).astype(np.uint16)
    tifffile.imwrite(d / "image.tif", image, photometric="minisblack")
    tifffile.imwrite(d / "labels.tif", labels, photometric="minisblack")
    return d


@pytest.mark.parametrize("labels_arg", ["folder", "file"])
def test_a_folder_with_image_and_labels_trains_the_image_on_its_labels(
        folder, labels_arg, tmp_path, tiny_model, capsys):
    out = tmp_path / "e2.pt"
    labels = folder if labels_arg == "folder" else folder / "labels.tif"
    rc, text, err = cli(_train(folder, labels, out, tiny_model)[:-1], capsys)  # not quiet
    assert rc == 0, err
    assert f"wrote {out}" in text
    assert (f"note: IMAGES: left out 1 label image (e.g. {folder / 'labels.tif'}: named "
            "'labels.tif'") in err
    if labels_arg == "folder":  # and LABELS leave out the image, in words that agree
        assert (f"note: LABELS: left out 1 file IMAGES selected (e.g. {folder / 'image.tif'}); "
                "1 label file remains") in err
    data = json.loads(out.with_suffix(".json").read_text())["data"]
    assert data["n_images"] == 1
    assert data["description"] == (f"1 image: {folder / 'image.tif'} / "
                                   f"{folder / 'labels.tif'}"), data


def test_the_last_piece_of_a_resumed_run_says_its_time_and_the_whole_runs(
        folder, tmp_path, tiny_model, capsys):
    """The last piece said "2 epochs, 35.0 s" after a first piece of 99 s: its own time as if
    it were the run's. It now says both, the earlier pieces' time from the training state."""
    import re

    out = tmp_path / "ft.pt"
    argv = [*_train(folder, folder / "labels.tif", out, tiny_model), "--epochs", "2",
            "--resume"]
    rc, first, err = cli([*argv, "--max-steps", "1"], capsys)
    assert rc == 0, err
    piece = float(re.search(r"; 1 of 2 epochs done, ([0-9.]+) s\n", first)[1])
    rc, text, err = cli(argv, capsys)
    assert rc == 0, err
    m = re.search(r"; 2 epochs, ([0-9.]+) s in this run \(([0-9.]+) s over 2 runs\)", text)
    assert m, text
    # the training of both, not this one's alone: the earlier piece's share is its training
    # loop's time as its state recorded it (the piece's own line, `piece`, also counts its
    # start: loading torch, the data and the model, which on an idle machine took longer than
    # its one step, so `>= this + piece / 2` failed there)
    assert 0 < float(m[2]) - float(m[1]) <= piece + 0.1
