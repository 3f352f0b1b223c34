"""Saving a session file never removes a label TIFF that another ``*.json`` beside it names
(a session file the user copied): "nothing removes a file another user file names"."""

from __future__ import annotations

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
