"""``napari-sam train d/ d/`` after annotating ``d/img.tif`` in the GUI (docs/gui.md, "Train
on what you annotated"): the folder holds the image's labels several times over (the
autosaved session's label TIFF, a session saved under another name, ``img_labels.tif`` saved
by hand). The documented command stopped with "1 image file but 2 label files ... give a
label file for every image" (helper walk-through of the data engine); now each image is
trained on one label file: the one named after it over the sessions', else the newest
session's, a session's label TIFF paired with the image its session file names."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tifffile

from cli_runner import cli, error_line, tiny_train_argv


def _labels(discs=(1, 2)) -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    out = np.zeros((3, 64, 64), np.uint16)
    for oid, (r, c) in zip(discs, ((20, 20), (44, 44))):
        out[:, (yy - r) ** 2 + (xx - c) ** 2 < 64] = oid
    return out


def _session(image, path, labels):
    from napari_sam import session as S

    sess = S.Session(image={"path": str(image), "name": "blobs", "shape": [3, 64, 64]},
                     model={"name": "demo", "is_file": False}, labels=labels)
    return S.write_session(sess, path)


@pytest.fixture
def annotated(tmp_path):
    """``d/blobs.tif`` annotated in the GUI: its autosaved session, the same session saved as
    ``d/my_session.json`` and the labels saved by hand as ``d/blobs_labels.tif``."""
    from napari_sam import session as S
    from stacks import blob_stack

    d = tmp_path / "d"
    d.mkdir()
    image = d / "blobs.tif"
    tifffile.imwrite(image, blob_stack(z=3), photometric="minisblack")
    _session(image, S.session_file_for(image), _labels())
    _session(image, d / "my_session.json", _labels())
    tifffile.imwrite(d / "blobs_labels.tif", _labels((5, 6)), photometric="minisblack")
    return d


def _names(paths):
    return [p.name for p in paths]


def test_labels_saved_by_hand_are_preferred_over_the_session_label_tiffs(annotated, capsys):
    from napari_sam.cli.train_command import collect_pairs

    images, labels = collect_pairs(str(annotated), str(annotated))
    assert _names(images) == ["blobs.tif"] and _names(labels) == ["blobs_labels.tif"]
    err = capsys.readouterr().err
    assert "(the labels of an annotation session of " in err and (
        "blobs_labels.tif is named after it and is trained on") in err, err


def test_a_session_newer_than_the_labels_saved_by_hand_is_said_even_quiet(annotated, capsys):
    """Labels saved by hand win, but a session saved after them (annotated on after
    saving: it may hold more) was left out with a note that ``-q`` hid: training on the
    older labels without a word. Now that line is said with ``-q`` too, naming the newer
    session and how to train on it."""
    from napari_sam import session as S
    from napari_sam.cli.train_command import collect_pairs

    hand = annotated / "blobs_labels.tif"
    day_ago = hand.stat().st_mtime - 86400
    os.utime(hand, (day_ago, day_ago))
    os.utime(annotated / "my_session.json", (day_ago, day_ago))
    _session(annotated / "blobs.tif", S.session_file_for(annotated / "blobs.tif"),
             _labels((1, 2, 3)))  # the autosave, after the labels were saved by hand
    images, labels = collect_pairs(str(annotated), str(annotated), quiet=True)
    assert _names(labels) == ["blobs_labels.tif"]
    err = capsys.readouterr().err
    assert f"trained on {hand} (named after" in err and "not on the newer labels" in err, err
    assert "blobs.tif.sam-session.labels-" in err and "my_session" not in err, err


def test_without_labels_saved_by_hand_the_newest_session_is_trained_on(annotated, capsys):
    from napari_sam import session as S
    from napari_sam.cli.train_command import collect_pairs

    (annotated / "blobs_labels.tif").unlink()
    images, labels = collect_pairs(str(annotated), str(annotated))
    # the same labels in both sessions: one of them, said as a plain note
    assert _names(images) == ["blobs.tif"] and len(labels) == 1
    assert labels[0].name.endswith(".tif") and ".labels-" in labels[0].name
    assert "has 2 label files; trained on" in capsys.readouterr().err
    # other labels in the saved session, written later: that one, said even with -q
    json_path = annotated / "my_session.json"
    _session(annotated / "blobs.tif", json_path, _labels((7, 8)))
    now = json.loads(json_path.read_text())
    later = os.stat(S.session_file_for(annotated / "blobs.tif")).st_mtime + 10
    os.utime(json_path, (later, later))  # saved after the autosave, whatever the clock says
    images, labels = collect_pairs(str(annotated), str(annotated), quiet=True)
    assert _names(labels) == [now["labels"]["path"]]
    assert tifffile.imread(labels[0]).max() == 8
    err = capsys.readouterr().err
    assert f"trained on {labels[0]} (the newest)" in err and (
        "which may hold other labels") in err, err


def test_a_session_saved_under_another_name_pairs_with_the_image_it_names(annotated, tmp_path,
                                                                          capsys):
    """``my_session.labels-<hash>.tif`` is named after no image: its session file names the
    image (also when the folder was copied elsewhere: the image of that name beside it).
    Beside another image with its ``_labels.tif`` this stopped with "the label files are
    named after the images only in part"."""
    import shutil

    from napari_sam import session as S
    from napari_sam.cli.train_command import collect_pairs

    copy = tmp_path / "copied"
    shutil.copytree(annotated, copy)
    (copy / "blobs_labels.tif").unlink()
    os.remove(S.session_file_for(copy / "blobs.tif"))
    for tif in copy.glob("blobs.tif.sam-session.labels-*.tif"):
        tif.unlink()
    shutil.copy(copy / "blobs.tif", copy / "other.tif")  # and another image, named labels
    tifffile.imwrite(copy / "other_labels.tif", _labels(), photometric="minisblack")
    images, labels = collect_pairs(str(copy), str(copy))
    assert _names(images) == ["blobs.tif", "other.tif"] and labels[0].parent == copy
    assert labels[0].name.startswith("my_session.labels-") and labels[1].name == (
        "other_labels.tif")


def test_the_documented_command_trains_after_annotating(annotated, tmp_path, tiny_model,
                                                        capsys):
    """docs/gui.md's steps as written: `napari-sam train data/ data/ -o my_model.pt`."""
    out = tmp_path / "m.pt"
    rc, _, err = cli(tiny_train_argv(annotated, annotated, out, tiny_model), capsys)
    assert rc == 0 and out.is_file(), err
    data = json.loads(out.with_suffix(".json").read_text())["data"]
    assert data["description"].endswith("blobs.tif / " + str(annotated / "blobs_labels.tif"))


def test_two_label_files_named_after_one_image_are_named_with_the_fix(annotated, tmp_path,
                                                                      capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    tifffile.imwrite(gt / "blobs.tif", _labels(), photometric="minisblack")
    tifffile.imwrite(gt / "blobs_labels.tif", _labels(), photometric="minisblack")
    rc, _, err = cli(tiny_train_argv(annotated / "blobs.tif", gt, tmp_path / "m.pt",
                                     "demo"), capsys)
    line = error_line(err)
    assert rc == 2 and (f"1 image file but 2 label files: 2 label files are named after "
                        f"{annotated / 'blobs.tif'}: {gt / 'blobs.tif'}, "
                        f"{gt / 'blobs_labels.tif'}") in line, line
    assert "give one label file per image: leave the others out of LABELS" in line
    assert "give a label file for every image" not in line


def test_an_unedited_auto_output_and_a_newer_session_train_on_the_session(annotated, capsys):
    """`auto d/ -o d/` wrote blobs_labels.tif (with its napari-sam sidecar), then the image
    was annotated in the GUI: the session's labels are the newer work; an output edited by
    hand (saved over) counts as labels saved by hand and wins."""
    from napari_sam import io as nio
    from napari_sam import session as S
    from napari_sam.cli.train_command import collect_pairs

    out = annotated / "blobs_labels.tif"
    (annotated / "my_session.json").unlink()
    for tif in annotated.glob("my_session.labels-*.tif"):
        tif.unlink()
    nio.write_labels(out, _labels((5, 6)), axes="ZYX", overwrite=True)
    nio.write_output_metadata(out, model="demo", version="0", parameters=None, objects=[],
                              input_path=annotated / "blobs.tif")
    assert not nio.output_edited(out)
    later = out.stat().st_mtime + 10
    os.utime(S.session_file_for(annotated / "blobs.tif"), (later, later))
    _, labels = collect_pairs(str(annotated), str(annotated), quiet=True)
    assert labels[0].name.startswith("blobs.tif.sam-session.labels-"), labels
    assert f"left out {out}, which may hold other labels" in capsys.readouterr().err
    tifffile.imwrite(out, _labels((5, 9)), photometric="minisblack")  # corrected by hand
    assert nio.output_edited(out)
    _, labels = collect_pairs(str(annotated), str(annotated), quiet=True)
    assert labels == [out]
