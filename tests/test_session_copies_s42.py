"""Saving a session file never removes a label TIFF that another ``*.json`` beside it names
(a session file the user copied): "nothing removes a file another user file names"."""

from __future__ import annotations

import json
import shutil

import numpy as np

from napari_sam.session import Session, read_session, write_session


def _session(labels: np.ndarray) -> Session:
    return Session(image={"shape": list(labels.shape)}, model={"name": "vit_b"},
                   labels=labels)


def test_saving_a_session_keeps_the_tiff_a_copy_of_it_names(tmp_path):
    """The user copied A.json to B.json, then saved A again with fewer objects: the save
    removed A's earlier labels TIFF, which B.json names, and B could no longer be read
    ("its labels TIFF ... is missing")."""
    two = np.zeros((2, 8, 8), np.uint16)
    two[0, :4], two[1, 4:] = 1, 2
    write_session(_session(two), tmp_path / "A.json")
    shutil.copy(tmp_path / "A.json", tmp_path / "B.json")
    one = np.where(two == 2, 0, two).astype(np.uint16)
    write_session(_session(one), tmp_path / "A.json")
    assert np.array_equal(read_session(tmp_path / "B.json").labels, two)
    assert np.array_equal(read_session(tmp_path / "A.json").labels, one)


def test_a_tiff_no_other_file_names_is_still_removed(tmp_path):
    """Without a copy, the TIFF the file named before goes at the next save (one per
    session file, not one per save)."""
    labels = np.zeros((1, 8, 8), np.uint16)
    for value in (1, 2, 3):
        labels[0, 0, 0] = value
        write_session(_session(labels.copy()), tmp_path / "A.json")
    assert len(list(tmp_path.glob("*.tif"))) == 1
    assert read_session(tmp_path / "A.json").labels[0, 0, 0] == 3


def test_a_save_elsewhere_of_the_same_labels_does_not_keep_the_old_tiff(tmp_path):
    """*Save session...* to work.json, then a commit: the autosave's earlier TIFF (the same
    content as work.json's own TIFF, another name) goes; only a file naming it keeps it, or
    a ``*.json`` that cannot be parsed mentioning its content."""
    labels = np.zeros((1, 8, 8), np.uint16)
    labels[0, 0, 0] = 1
    write_session(_session(labels.copy()), tmp_path / "auto.json")
    write_session(_session(labels.copy()), tmp_path / "work.json")
    old = {p.name for p in tmp_path.glob("auto.labels-*.tif")}
    labels[0, 0, 0] = 2
    write_session(_session(labels.copy()), tmp_path / "auto.json")
    assert not old & {p.name for p in tmp_path.glob("*.tif")}
    shutil.copy(tmp_path / "auto.json", tmp_path / "copy.json")
    write_session(_session(labels * 0 + 3), tmp_path / "auto.json")
    assert read_session(tmp_path / "copy.json").labels[0, 0, 0] == 2
    assert len(list(tmp_path.glob("auto.labels-*.tif"))) == 2  # (copy.json names one)
    named = json.loads((tmp_path / "auto.json").read_text())["labels"]["path"]
    (tmp_path / "notes.json").write_text(f'{{"labels": "{named}", ')  # broken: mentions it
    write_session(_session(labels * 0 + 4), tmp_path / "auto.json")
    assert (tmp_path / named).exists() and len(list(tmp_path.glob("auto.labels-*.tif"))) == 3


def test_a_large_json_beside_the_session_is_not_parsed(tmp_path, monkeypatch):
    """Each ``*.json`` beside a session file was parsed in full to see whether it names the
    session's TIFFs: a 47 MiB COCO ``annotations.json`` beside the images took 1.5 s at the
    first commit. Only one whose start holds the session format's name is read now; a copy
    of the session file still keeps its TIFF."""
    from napari_sam import session_leftovers

    coco = {"images": [], "annotations": [{"id": i, "bbox": [1.5, 2.5, 3.0, 4.0]}
                                          for i in range(20_000)]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    parsed = []

    class Spy:
        @staticmethod
        def loads(text, **kw):
            parsed.append(len(text))
            return json.loads(text, **kw)

    monkeypatch.setattr(session_leftovers, "json", Spy)
    two = np.full((1, 8, 8), 2, np.uint16)
    write_session(_session(two), tmp_path / "A.json")
    (tmp_path / "B.json").write_bytes((tmp_path / "A.json").read_bytes())
    write_session(_session(two * 0 + 1), tmp_path / "A.json")
    write_session(_session(two * 0 + 5), tmp_path / "A.json")
    assert max(parsed) < 10_000, parsed  # the session files only (B.json)
    assert np.array_equal(read_session(tmp_path / "B.json").labels, two)
