"""``napari-sam train`` inputs after a new user's report:

* an intensity image given as LABELS (a raw image, or IMAGES and LABELS swapped) is refused
  before training, naming the file and what to pass; real label images (the real nuclei
  stack, every synthetic sample's ground truth, label TIFFs of GUI sessions, labels written by
  ``auto``) are still accepted;
* a folder or glob given as both IMAGES and LABELS pairs each image with the label files
  beside it, and unequal numbers of images and label files name the files without a partner;
* ``--val-fraction 1`` is refused when the command line is read (exit code 2);
* ``-o newdir/`` is said to be a folder.

The command-line cases run ``napari_sam.cli.main`` in-process on a tiny model and 64x64
sample images for one step, and assert the exit code, the line the user reads, that no
checkpoint was written and that the inputs are byte for byte as they were.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, md5s
from cli_runner import tiny_train_argv as _train

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real-nuclei-3d"
SAMPLES = ("nuclei-2d", "cells-2d", "em-2d", "xray-2d", "underwater", "nuclei-3d", "cells-3d",
           "em-3d", "xray-3d")


@pytest.fixture(scope="module")
def every_sample(tmp_path_factory) -> Path:
    """One image of every synthetic sample kind, small, with its ground truth."""
    import napari_sam.cli as C

    root = tmp_path_factory.mktemp("every")
    for name in SAMPLES:
        shape = "6,64,64" if name.endswith("-3d") else "96,96"
        assert C.main(["sample", name, "-o", str(root), "--shape", shape, "-q"]) == 0
    return root


@pytest.fixture(autouse=True)
def _offline(offline_cli):
    """Every test here runs in :func:`offline_cli`'s surroundings (tests/conftest.py)."""




def _tree_md5(folder: Path) -> dict:
    return md5s(*sorted(p for p in folder.rglob("*") if p.is_file()))


def _no_model_load(monkeypatch, what: str):
    import napari_sam.cli.train_command as T

    def fail(*args, **kwargs):
        raise AssertionError(f"the model was loaded before {what} was checked")

    monkeypatch.setattr(T, "resolve_model", fail)


def _annotate(folder: Path, images: list[Path], ground_truth: Path, *, base: bool = False
              ) -> list[Path]:
    """Copy ``images`` into ``folder`` and save a GUI session (autosave) with the ground
    truth as labels for each: ``<image>.sam-session.labels-<hash>.tif`` beside it (and a
    ``.base-<hash>.tif``, the labels before the first commit, with ``base``)."""
    from napari_sam.session import Session, session_file_for, write_session

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for src in images:
        image = folder / src.name
        shutil.copy(src, image)
        labels = tifffile.imread(ground_truth / src.name)[None]
        session = Session(image={"path": str(image), "shape": list(labels.shape)},
                          model={"name": "demo"}, labels=labels,
                          base=(labels == labels.max()).astype(labels.dtype) if base else None)
        write_session(session, session_file_for(image))
        written += sorted(folder.glob(image.name + ".sam-session.*.tif"))
    return written


# ----------------------------------------------------------------------------- 1: labels


def test_an_intensity_image_as_labels_is_refused_naming_the_file(
        tmp_path, samples, tiny_model, capsys):
    first, second = sorted(samples.glob("*.tif"))[:2]
    before = _tree_md5(samples)
    out = tmp_path / "imglab.pt"
    rc, _, err = cli(_train(first, second, out, tiny_model), capsys)
    line = error_line(err)
    assert rc == 2
    assert (f"napari-sam: error: {first} / {second}: the label image {second} looks like an "
            "intensity image, not instance labels: ") in line
    assert "distinct values come in " in line and " separate pieces (" in line
    assert "pass the label image as LABELS" in line
    assert "check that IMAGES and LABELS are not swapped" in line
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert _tree_md5(samples) == before


def test_an_image_swapped_with_its_session_labels_is_refused(
        tmp_path, samples, tiny_model, capsys):
    image = sorted(samples.glob("*.tif"))[0]
    (session_labels,) = _annotate(tmp_path / "gui", [image], samples / "ground_truth")
    shown = tmp_path / "gui" / image.name
    before = _tree_md5(tmp_path / "gui")
    out = tmp_path / "swapped.pt"
    rc, _, err = cli(_train(session_labels, shown, out, tiny_model), capsys)
    assert rc == 2
    assert (f"{session_labels} / {shown}: the label image {shown} looks like an intensity "
            "image") in error_line(err)
    assert not out.exists() and _tree_md5(tmp_path / "gui") == before
    rc, text, _ = cli(_train(shown, session_labels, out, tiny_model), capsys)  # the right way
    assert rc == 0 and f"wrote {out}" in text


def test_labels_with_fractional_values_are_called_an_intensity_image():
    from napari_sam.training.data import TrainingDataError, load_pairs

    image = np.random.default_rng(0).random((32, 32), np.float32)
    with pytest.raises(TrainingDataError, match=r"^images\[0\] / labels\[0\]: the label image "
                       r"labels\[0\] holds values that are not whole numbers \(dtype float32\)"
                       r": an intensity image, not instance labels; pass the label image"):
        load_pairs([image], [image * 1000])
    whole = np.zeros((32, 32), np.float32)
    whole[4:12, 4:12] = 1
    with pytest.raises(TrainingDataError, match=r"labels must be an integer array .* "
                       r"labels\.astype\(np\.int32\)"):  # whole numbers: convert them
        load_pairs([image], [whole])


@pytest.mark.parametrize("kind", ["uint16 noise", "uint8", "smoothed uint8", "stack",
                                  "class map", "random ids"])
def test_label_images_that_are_no_instance_labels_are_refused(kind):
    from scipy import ndimage

    from napari_sam.training.data import TrainingDataError, load_pairs

    rng = np.random.default_rng(1)
    grey = ndimage.gaussian_filter(rng.random((96, 96)), 1) * 4000
    lab = {"uint16 noise": (grey + rng.normal(0, 30, grey.shape)).astype(np.uint16),
           "uint8": np.clip(grey / 16 + rng.normal(0, 3, grey.shape), 0, 255).astype(np.uint8),
           "smoothed uint8": ndimage.gaussian_filter(grey / 16, 3).astype(np.uint8),
           "stack": (np.stack([grey] * 5) + rng.normal(0, 30, (5, 96, 96))).astype(np.uint16),
           "class map": (np.indices((96, 96)).sum(0) // 6 % 3 + 1).astype(np.uint8)
           * (rng.random((96, 96)) > 0.5),
           "random ids": rng.integers(0, 1000, (96, 96))}[kind]
    with pytest.raises(TrainingDataError, match=r"looks like an intensity image, not instance "
                       r"labels: \d+ distinct values.* come in \d+ separate pieces"):
        load_pairs([np.zeros(lab.shape, np.uint8)], [lab])


def _accepted(image, labels) -> None:
    from napari_sam.training.data import load_pairs

    assert len(load_pairs([image], [labels])) == 1


@pytest.mark.skipif(not (REAL / "labels.tif").is_file(), reason=f"{REAL} is missing")
def test_the_real_label_stack_is_accepted_and_its_image_as_labels_refused():
    from napari_sam.training.data import TrainingDataError, label_pieces, load_pairs

    image, labels = (tifffile.imread(REAL / f) for f in ("image.tif", "labels.tif"))
    assert len(load_pairs(str(REAL / "image.tif"), str(REAL / "labels.tif"))) == 1
    ids, pieces, _, planes = label_pieces(labels)
    assert planes == 8 and pieces <= 1.05 * ids  # about one piece per id and slice
    with pytest.raises(TrainingDataError, match=r"on 8 of its 31 slices\) come in"):
        load_pairs(str(REAL / "image.tif"), str(REAL / "image.tif"))
    # a stack labelled slice by slice (ids reused on every slice) is accepted too
    from skimage.measure import label

    _accepted(image, np.stack([label(z > 0) for z in labels]).astype(np.uint16))


def test_every_samples_ground_truth_is_accepted_and_its_image_refused(every_sample):
    from napari_sam.training.data import TrainingDataError, load_pairs

    for name in SAMPLES:
        (path,) = every_sample.glob(f"{name}_seed*.tif")
        pair = load_pairs(str(path), str(every_sample / "ground_truth" / path.name))
        assert len(pair) == 1, name
        image = tifffile.imread(path)
        grey = image[..., 0] if image.ndim == pair[0].labels.ndim + 1 else image
        with pytest.raises(TrainingDataError, match="looks like an intensity image"):
            load_pairs([image], [grey])


def test_session_labels_auto_labels_and_small_objects_are_accepted(tmp_path, samples):
    from napari_sam.session import read_session, session_file_for

    images = sorted(samples.glob("*.tif"))
    _annotate(tmp_path / "gui", images, samples / "ground_truth", base=True)
    for image in images:
        session = read_session(session_file_for(tmp_path / "gui" / image.name))
        _accepted(tifffile.imread(image)[None], session.labels)  # what the GUI wrote
    # labels as auto writes them: fragments beside whole objects
    lab = tifffile.imread(samples / "ground_truth" / images[0].name)
    lab[lab == lab.max()] = 0
    lab[0:2, 0:2] = lab[60:62, 60:62] = lab.max()  # an id in two small fragments
    _accepted(tifffile.imread(images[0]), lab)
    # 256 objects of 2 x 2 pixels, apart and touching
    ids = np.arange(1, 257, dtype=np.uint16).reshape(16, 16)
    touching = np.kron(ids, np.ones((2, 2), np.uint16))
    _accepted(np.zeros((32, 32), np.uint8), touching)
    apart = np.zeros((64, 64), np.uint16)
    apart.reshape(16, 4, 16, 4)[:, 1:3, :, 1:3] = ids[:, None, :, None]
    _accepted(np.zeros((64, 64), np.uint8), apart)


# ----------------------------------------------------------------------------- 2: pairing


def test_a_folder_with_an_image_without_labels_names_it(tmp_path, samples, tiny_model, capsys,
                                                        monkeypatch):
    _no_model_load(monkeypatch, "the pairing")
    images = sorted(samples.glob("*.tif"))
    engine = tmp_path / "engine"
    _annotate(engine, [images[0], images[2]], samples / "ground_truth")
    shutil.copy(images[1], engine / images[1].name)  # not annotated
    before = _tree_md5(engine)
    out = tmp_path / "m.pt"
    for labels in (f"{engine}/*.labels-*.tif", engine):
        rc, _, err = cli(_train(engine, labels, out, tiny_model), capsys)
        assert rc == 2
        assert error_line(err) == (
            f"napari-sam: error: 3 image files but 2 label files: no label file is named "
            f"after {engine / images[1].name}; IMAGES and LABELS are paired by name (or in sorted "
            "order where the names tell nothing) and "
            "must match one to one: give a label file for every image, or leave the images "
            "without labels out of IMAGES")
    assert not out.exists() and _tree_md5(engine) == before


def test_unrelated_names_list_both_sides(tmp_path, samples, tiny_model, capsys, monkeypatch):
    _no_model_load(monkeypatch, "the pairing")
    lab = tmp_path / "masks"
    lab.mkdir()
    for i, f in enumerate(sorted((samples / "ground_truth").glob("*.tif"))[:2]):
        shutil.copy(f, lab / f"mask_{i}.tif")
    rc, _, err = cli(_train(samples, lab, tmp_path / "m.pt", tiny_model), capsys)
    names = sorted(samples.glob("*.tif"))
    assert rc == 2
    assert (f"3 image files but 2 label files: IMAGES: {names[0]}, {names[1]}, {names[2]}; "
            f"LABELS: {lab / 'mask_0.tif'}, {lab / 'mask_1.tif'}; IMAGES and LABELS are "
            "paired") in error_line(err)


def test_the_same_folder_as_images_and_labels_pairs_the_session_labels(
        tmp_path, samples, tiny_model, capsys):
    images = sorted(samples.glob("*.tif"))
    d3 = tmp_path / "d3"
    session_tiffs = _annotate(d3, images[:2], samples / "ground_truth", base=True)
    assert len(session_tiffs) == 4  # a labels and a base TIFF per image
    before = _tree_md5(d3)
    out = tmp_path / "d3.pt"
    rc, text, err = cli(_train(d3, d3, out, tiny_model)[:-1], capsys)  # not quiet: the note
    assert rc == 0 and f"wrote {out}" in text
    assert (f"note: LABELS: left out 2 files IMAGES selected (e.g. {d3 / images[0].name}); "
            "2 label files remain") in err
    data = json.loads(out.with_suffix(".json").read_text())
    used = json.dumps(data)
    assert ".sam-session.labels-" in used and ".sam-session.base-" not in used
    assert _tree_md5(d3) == before


def test_only_images_as_labels_is_refused(tmp_path, samples, tiny_model, capsys):
    rc, _, err = cli(_train(samples, samples, tmp_path / "m.pt", tiny_model), capsys)
    assert rc == 2
    assert (f"IMAGES and LABELS select the same files, e.g. {sorted(samples.glob('*.tif'))[0]}"
            ", and LABELS holds nothing else; point LABELS at the label files") \
        in error_line(err)


def test_the_python_api_names_unpaired_files(tmp_path, samples):
    from napari_sam.training.data import TrainingDataError, load_pairs, unpaired_files

    images = sorted(str(p) for p in samples.glob("*.tif"))
    labels = sorted(str(p) for p in (samples / "ground_truth").glob("*.tif"))
    with pytest.raises(TrainingDataError, match=r"^got 3 images but 2 label images \(no label "
                       r"file is named after .*" + Path(images[2]).name + r"\); they are "
                       r"paired one to one \(glob patterns by name, lists in their order\)"):
        load_pairs(images, labels[:2])
    assert unpaired_files(["a.tif"], ["a_labels.tif", "b_labels.tif"]) == \
        "the label file b_labels.tif is named after no image"
    assert unpaired_files(["img1.tif", "img10.tif"], ["img10.tif.sam-session.labels-0.tif"]) \
        == "no label file is named after img1.tif"


# ----------------------------------------------------------------------------- 3, 4: options


@pytest.mark.parametrize("value", ["1", "1.5", "-0.1", "nan"])
def test_val_fraction_outside_0_to_1_is_refused_before_reading_the_data(
        tmp_path, samples, tiny_model, capsys, monkeypatch, value):
    import napari_sam.training.data as D

    def fail(*args, **kwargs):
        raise AssertionError("the data was read before --val-fraction was checked")

    monkeypatch.setattr(D, "load_pairs", fail)
    _no_model_load(monkeypatch, "--val-fraction")
    out = tmp_path / "m.pt"
    rc, _, err = cli(_train(samples, samples / "ground_truth", out, tiny_model,
                            "--val-fraction", value), capsys)
    assert rc == 2
    assert ("error: argument --val-fraction: expected a number from 0 to below 1 (the share of "
            "the images held out for validation; 0 holds none out, 1 would leave none to train "
            "on), got ") in err
    assert "Traceback" not in err and not out.exists()


def test_output_ending_in_a_slash_is_said_to_be_a_folder(tmp_path, samples, tiny_model, capsys,
                                                         monkeypatch):
    _no_model_load(monkeypatch, "-o")
    for given, said in ((f"{tmp_path / 'newdir'}/",
                         f"-o {tmp_path / 'newdir'}/ is a folder (the name ends in /); give the "
                         f"checkpoint file to write, e.g. -o {tmp_path / 'newdir' / 'my_model.pt'}"
                         " (the folder is created)"),
                        (str(tmp_path / "newdir"),
                         f"-o {tmp_path / 'newdir'}: the checkpoint name must end in .pt or "
                         f".pth, e.g. -o {tmp_path / 'newdir.pt'}"),
                        ("", "-o is empty; give the checkpoint file to write, e.g. -o "
                         "my_model.pt")):
        rc, _, err = cli(_train(samples, samples / "ground_truth", given, tiny_model), capsys)
        assert rc == 2
        assert error_line(err) == f"napari-sam: error: {said}"
    assert not (tmp_path / "newdir").exists() and not list(tmp_path.glob("*.pt"))


@pytest.mark.parametrize("value", [1, 1.5, -0.1, float("nan"), True])
def test_the_python_api_refuses_val_fraction_before_reading_the_data(
        tmp_path, samples, tiny_model, monkeypatch, value):
    """``ns.train(val_fraction=1)`` read the data and loaded the model first (a late
    failure, minutes into a large run)."""
    import napari_sam.training.run as R
    from napari_sam.training import train

    def fail(*args, **kwargs):
        raise AssertionError("the data was read before val_fraction was checked")

    monkeypatch.setattr(R, "load_pairs", fail)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\) \(the share of the "
                       r"images held out for validation; 0 holds none out, 1 would leave none "
                       r"to train on\), got "):
        train(str(samples / "*.tif"), str(samples / "ground_truth" / "*.tif"),
              model=tiny_model, out=tmp_path / "m.pt", val_fraction=value, epochs=1)
    assert not (tmp_path / "m.pt").exists()
