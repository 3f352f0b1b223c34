"""A full disk while the session autosaves: the status keeps saying that autosave is off
until it is turned on again, turning it on writes what was committed meanwhile, and a failed
save leaves no label TIFF behind that no session file names."""

from __future__ import annotations

import errno

import numpy as np
import pytest

from session_claim_helpers import commit_at


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _commit(s, z, row, col):
    commit_at(s, z, row, col)
    s.wait_autosave(60)


def test_autosave_off_after_a_full_disk_is_said_at_every_commit_and_on_again_saves(
        session, tmp_path, monkeypatch):
    """The failure was said once, in the status of the commit whose autosave failed: the next
    commit's status no longer said autosave was off; ticking it again wrote nothing until the
    next commit (closing napari before that lost the commits made meanwhile)."""
    from napari_sam import session as S
    from napari_sam.annotate.session_log import fallback_session_file

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    write = S.write_session
    _commit(s, 3, 20, 20)
    monkeypatch.setattr(S, "write_session", _full)
    with pytest.warns(UserWarning, match="autosave is off") as warned:
        _commit(s, 3, 44, 44)
    # both places tried are named (it named the cache folder's only: the image's disk is full)
    assert str(warned[0].message) == (
        f"Autosave to {S.session_file_for(s.path)} and to {fallback_session_file(s.path)} "
        "failed (No space left on device); autosave is off. Use 'Save session' to save "
        "elsewhere.")
    _commit(s, 2, 44, 44)
    assert not s.autosave
    assert s.status.endswith(
        "Autosave is still off since it failed (No space left on device): turn it on again "
        "once it can write (space, permissions; it saves at once), or use 'Save session'.")
    monkeypatch.setattr(S, "write_session", write)  # space freed
    s.autosave_on_again()
    assert s.status == "Autosave is on: the session (3 commits) is autosaved."
    saved = S.read_session(S.session_file_for(s.path))
    assert len(saved.operations) == 3
    assert np.array_equal(saved.labels, s.labels)
    assert sorted(np.unique(saved.labels)) == [0, 1, 2, 3]
    _commit(s, 4, 20, 20)
    assert "Autosave is still off" not in s.status


def test_a_session_write_failing_on_a_full_disk_leaves_no_label_tiff(session, tmp_path,
                                                                     monkeypatch):
    """The labels TIFF was written, then the JSON failed (the disk full): the TIFF stayed,
    named by no session file, filling the disk further; an earlier save stays whole."""
    from napari_sam import io as nio
    from napari_sam import session as S

    s = session
    s.autosave = False
    _commit(s, 3, 20, 20)
    path = tmp_path / "mine.json"
    s.save_session(path)
    before = sorted(p.name for p in tmp_path.iterdir())
    earlier = path.read_bytes()
    _commit(s, 3, 44, 44)
    monkeypatch.setattr(nio, "write_json_atomic", _full)
    with pytest.raises(Exception, match="No space left on device"):
        s.save_session(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert path.read_bytes() == earlier
    assert len(S.read_session(path).operations) == 1


def test_save_session_on_a_full_disk_says_to_free_space(session, tmp_path, monkeypatch):
    """It said "No space left on device. Pick a folder you can write to." of a folder one can
    write to (the disk is full)."""
    from napari_sam.annotate import UserError
    from napari_sam.io import writers

    s = session
    s.autosave = False
    _commit(s, 3, 20, 20)
    monkeypatch.setattr(writers, "_write_tiff", _full)
    path = tmp_path / "mine.json"
    with pytest.raises(UserError) as info:
        s.save_session(path)
    assert str(info.value) == (f"Could not save the session to {path}: No space left on "
                               "device. Free space there, or pick a folder on another disk.")
    assert list(tmp_path.iterdir()) == []
