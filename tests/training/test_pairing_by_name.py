"""Image and label files are paired by name, not by sorted order alone.

Sorted order pairs ``a.tif``, ``a_1.tif`` with ``a_1_labels.tif``, ``a_labels.tif`` (the
``1`` of ``a_1_labels`` sorts before the ``l`` of ``a_labels``): every image was trained on
another image's labels, silently when their shapes agree. The files are now paired by name
where the names tell, in sorted order where no label file is named after an image, and the
command stops where only some are.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line
from cli_runner import tiny_train_argv as _train


def test_label_order_pairs_the_longest_image_name():
    from napari_sam.training.data import label_order

    assert label_order(["d/a.tif", "d/a_1.tif"], ["g/a_1_labels.tif", "g/a_labels.tif"]) == [1, 0]
    assert label_order(["a.tif", "b.tif"], ["gt/a.tif", "gt/b.tif"]) == [0, 1]
    # session label TIFFs and the names auto writes
    assert label_order(["x/img2.tif", "x/img10.tif"], [
        "x/img10.tif.sam-session.labels-0123456789ab.tif", "o/img2_labels.tif"]) == [1, 0]
    # names that tell nothing: the given (sorted) order
    assert label_order(["a.tif", "b.tif"], ["mask_0.tif", "mask_1.tif"]) is None
    # one name in several folders: its label files in sorted order, the other names by name
    # (sorted order alone paired p/a.tif with g/a_1_labels.tif)
    assert label_order(["p/a.tif", "q/a.tif"], ["p_gt/a.tif", "q_gt/a.tif"]) == [0, 1]
    assert label_order(["p/a.tif", "q/a.tif", "p/a_1.tif", "q/a_1.tif"], [
        "g/a_1_labels.tif", "g/a_labels.tif", "h/a_1_labels.tif", "h/a_labels.tif"]) == [
        1, 3, 0, 2]


def test_label_order_refuses_names_that_match_only_in_part():
    from napari_sam.training.data import TrainingDataError, label_order

    with pytest.raises(TrainingDataError, match=r"only in part \(no label file is named after "
                       r"b\.tif; the label file mask\.tif is named after no image\)"):
        label_order(["a.tif", "b.tif"], ["a_labels.tif", "mask.tif"])
    with pytest.raises(TrainingDataError, match=r"2 label files are named after a\.tif: "
                       r"a_labels\.tif, a_old\.tif"):
        label_order(["a.tif", "b.tif"], ["a_labels.tif", "a_old.tif"])
    # more label files of a name than images of it, the other name without any
    with pytest.raises(TrainingDataError, match=r"2 label files are named after x/cells\.tif: "
                       r"y/cells_seg_1\.tif, y/cells_seg_2\.tif"):
        label_order(["x/cells.tif", "x/cells_2.tif"], ["y/cells_seg_1.tif", "y/cells_seg_2.tif"])


@pytest.fixture()
def crossed(tmp_path, samples):
    """``a.tif`` and ``a_1.tif`` (two different sample images, same shape) in ``img/`` and
    their labels as ``a_labels.tif``, ``a_1_labels.tif`` in ``gt/``."""
    names = sorted(samples.glob("*.tif"))[:2]
    (tmp_path / "img").mkdir()
    (tmp_path / "gt").mkdir()
    for src, stem in zip(names, ("a", "a_1")):
        shutil.copy(src, tmp_path / "img" / f"{stem}.tif")
        shutil.copy(samples / "ground_truth" / src.name, tmp_path / "gt" / f"{stem}_labels.tif")
    return tmp_path


def test_the_cli_trains_each_image_on_its_own_labels(crossed, tiny_model, capsys):
    out = crossed / "m.pt"
    rc, text, err = cli(_train(crossed / "img", crossed / "gt", out, tiny_model), capsys)
    assert rc == 0, err
    described = json.loads(out.with_suffix(".json").read_text())["data"]["description"]
    img, gt = crossed / "img", crossed / "gt"
    assert described == (f"2 images: {img / 'a.tif'} / {gt / 'a_labels.tif'}, "
                         f"{img / 'a_1.tif'} / {gt / 'a_1_labels.tif'}")


def test_the_python_api_pairs_globs_by_name(crossed):
    from napari_sam.training.data import load_pairs

    pairs = load_pairs(str(crossed / "img" / "*.tif"), str(crossed / "gt" / "*.tif"))
    for pair, stem in zip(pairs, ("a", "a_1")):
        assert pair.name.endswith(f"{stem}.tif / {crossed / 'gt' / stem}_labels.tif")
        assert np.array_equal(pair.labels, tifffile.imread(crossed / "gt" / f"{stem}_labels.tif"))
        assert np.array_equal(pair.image, tifffile.imread(crossed / "img" / f"{stem}.tif"))


def test_python_lists_keep_the_order_they_are_given_in(crossed):
    """A list is an order the user chose (e.g. sorted by acquisition): kept as given, also
    where the names would pair otherwise; two glob patterns are paired by name."""
    from napari_sam.training.data import load_pairs

    images = [str(crossed / "img" / "a.tif"), str(crossed / "img" / "a_1.tif")]
    labels = [str(crossed / "gt" / "a_labels.tif"), str(crossed / "gt" / "a_1_labels.tif")]
    listed = load_pairs(images, labels[::-1])
    assert [p.name.split(" / ")[1] for p in listed] == labels[::-1]


def test_label_names_that_match_only_in_part_stop_the_command(crossed, tiny_model, capsys):
    (crossed / "gt" / "a_1_labels.tif").rename(crossed / "gt" / "mask.tif")
    out = crossed / "m.pt"
    rc, _, err = cli(_train(crossed / "img", crossed / "gt", out, tiny_model), capsys)
    assert rc == 2 and not out.exists()
    assert error_line(err).startswith(
        "napari-sam: error: the label files are named after the images only in part (no label "
        f"file is named after {crossed / 'img' / 'a_1.tif'}; the label file "
        f"{crossed / 'gt' / 'mask.tif'} is named after no image)")
