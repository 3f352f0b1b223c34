"""What the next write of a session file removes beside it (``napari_sam.session_leftovers``):
only what a killed write of that file left, never a TIFF another session file names."""

from __future__ import annotations

import os
import time

import numpy as np

from napari_sam.session import Session, kept_stem, read_session, write_session

OLD = time.time() - 600  # the crash (or the user's rename) was ten minutes ago


def _session(value: int) -> Session:
    return Session(image={"shape": [1, 8, 8]}, model={"name": "vit_b"},
                   labels=np.full((1, 8, 8), value, np.uint16))


def _age(folder) -> None:
    for p in folder.iterdir():
        os.utime(p, (OLD, OLD))


def test_a_cut_short_kept_copy_of_a_long_named_session_goes_at_the_next_write(tmp_path):
    """``keep_aside`` fits a long stem for its copies' names; their ``.part`` files (a kill
    while copying) matched the session's own stem only and stayed for good."""
    path = tmp_path / ("s" * 210 + ".json")
    write_session(_session(1), path)
    stem = kept_stem(path)
    assert stem != path.name[: -len(".json")]  # (fitted)
    part = tmp_path / f"{stem}.kept-20261207-025341.labels-0123456789ab.tif.part"
    part.write_bytes(b"II*\x00")
    _age(tmp_path)
    write_session(_session(2), path)
    assert not part.exists()
    assert read_session(path).labels.max() == 2

