"""What the next write of a session file removes beside it (``napari_sam.session_leftovers``):
only what a killed write of that file left, never a TIFF another session file names."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from napari_sam import session_leftovers
from napari_sam.session import Session, kept_stem, read_session, write_session

OLD = time.time() - 600  # the crash (or the user's rename) was ten minutes ago


def _session(value: int) -> Session:
    return Session(image={"shape": [1, 8, 8]}, model={"name": "vit_b"},
                   labels=np.full((1, 8, 8), value, np.uint16))


@pytest.fixture
def restart(monkeypatch):
    """Call it to act as a napari started again: the next write of each session file sweeps."""
    def again():
        monkeypatch.setattr(session_leftovers, "_SWEPT", set(), raising=False)
    again()
    return again


def _age(folder) -> None:
    for p in folder.iterdir():
        os.utime(p, (OLD, OLD))


def test_a_session_file_renamed_by_the_user_keeps_its_labels_tiff(tmp_path, restart):
    """A version kept by renaming ``foo.json`` to ``foo-v1.json`` (its TIFF stays beside it,
    named in it) lost that TIFF at the next save to ``foo.json``."""
    write_session(_session(1), tmp_path / "foo.json")
    os.rename(tmp_path / "foo.json", tmp_path / "foo-v1.json")
    _age(tmp_path)
    restart()
    write_session(_session(2), tmp_path / "foo.json")
    assert read_session(tmp_path / "foo-v1.json").labels.max() == 1
    assert read_session(tmp_path / "foo.json").labels.max() == 2


def test_no_whole_tiff_is_removed_while_a_json_beside_it_cannot_be_read(tmp_path, restart):
    """An unreadable ``*.json`` may be a session file naming the TIFF; a whole TIFF no
    readable file names goes once it can be read (and hidden temporaries go anyway)."""
    write_session(_session(1), tmp_path / "foo.json")
    orphan = tmp_path / "foo.labels-0123456789ab.tif"  # a killed write's, named by no file
    orphan.write_bytes((tmp_path / json.loads((tmp_path / "foo.json").read_text())[
        "labels"]["path"]).read_bytes())
    os.rename(tmp_path / "foo.json", tmp_path / "foo-v1.json")
    broken = tmp_path / "notes.json"
    broken.write_text('{"format": "napari-sam-session", "labels": {"pa')
    tmp = tmp_path / ".foo.labels-ba9876543210.tif.00aa11bb22cc.tmp"
    tmp.write_bytes(b"II*\x00")
    _age(tmp_path)
    restart()
    write_session(_session(2), tmp_path / "foo.json")
    assert orphan.exists() and not tmp.exists()
    assert read_session(tmp_path / "foo-v1.json").labels.max() == 1
    broken.write_text("{}")
    write_session(_session(3), tmp_path / "other.json")  # (a write of another file)
    restart()
    write_session(_session(4), tmp_path / "foo.json")
    assert not orphan.exists()
    assert read_session(tmp_path / "foo-v1.json").labels.max() == 1


def test_a_cut_short_kept_copy_of_a_long_named_session_goes_at_the_next_write(tmp_path,
                                                                             restart):
    """``keep_aside`` fits a long stem for its copies' names; their ``.part`` files (a kill
    while copying) matched the session's own stem only and stayed for good."""
    path = tmp_path / ("s" * 210 + ".json")
    write_session(_session(1), path)
    stem = kept_stem(path)
    assert stem != path.name[: -len(".json")]  # (fitted)
    part = tmp_path / f"{stem}.kept-20261207-025341.labels-0123456789ab.tif.part"
    part.write_bytes(b"II*\x00")
    _age(tmp_path)
    restart()
    write_session(_session(2), path)
    assert not part.exists()
    assert read_session(path).labels.max() == 2


def test_the_folder_is_swept_at_the_first_write_of_a_session_file_only(tmp_path, restart,
                                                                        monkeypatch):
    """The sweep listed the whole folder after every autosave (0.1 s per write with 20,000
    files beside it, on the UI thread for small labels); a crash's leftovers are there
    before napari starts, so its first write of the file removes them."""
    from pathlib import Path

    write_session(_session(1), tmp_path / "foo.json")
    listed = []
    real = Path.iterdir
    monkeypatch.setattr(Path, "iterdir", lambda self: listed.append(self) or real(self))
    tmp = tmp_path / ".foo.labels-ba9876543210.tif.00aa11bb22cc.tmp"
    tmp.write_bytes(b"II*\x00")
    os.utime(tmp, (OLD, OLD))
    for value in (2, 3, 4):
        write_session(_session(value), tmp_path / "foo.json")
    assert listed == [] and tmp.exists()
    restart()
    write_session(_session(5), tmp_path / "foo.json")
    assert not tmp.exists() and read_session(tmp_path / "foo.json").labels.max() == 5
