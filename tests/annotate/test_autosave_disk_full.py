"""A full disk while the session autosaves: autosave tries again at each commit and when its
retry is due, the status says so and says when it works again, and a failed save leaves no
label TIFF behind that no session file names."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from session_claim_helpers import commit_at


def _full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _commit(s, z, row, col):
    commit_at(s, z, row, col)
    s.wait_autosave(60)


def test_autosave_retries_after_a_full_disk_at_each_commit_and_says_so(
        session, tmp_path, monkeypatch):
    """A failed autosave turned autosave off until the user ticked it again: space freed,
    nothing was written until they did. It stays on now, tries again at the next commit, and
    the status says that it will, then that it works again."""
    from napari_sam import session as S
    from napari_sam.annotate.session_places import fallback_session_file

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    write = S.write_session
    _commit(s, 3, 20, 20)
    monkeypatch.setattr(S, "write_session", _full)
    with pytest.warns(UserWarning, match="it tries again") as warned:
        _commit(s, 3, 44, 44)
    # both places tried are named (it named the cache folder's only: the image's disk is full)
    both = f"{S.session_file_for(s.path)} and to {fallback_session_file(s.path)}"
    assert str(warned[0].message) == (
        f"Autosave to {both} failed (No space left on device); it tries again at the next "
        "commit and in 15 s (the labels layer keeps every commit; 'Save session' saves "
        "elsewhere).")
    _commit(s, 2, 44, 44)  # tried again: fails again (no second warning)
    assert s.autosave and s.autosave_failing == "No space left on device"
    assert s.status.endswith(
        f"Autosave to {both} failed again (No space left on device); it tries again at the "
        "next commit and in 30 s (the labels layer keeps every commit; 'Save session' saves "
        "elsewhere).")
    monkeypatch.setattr(S, "write_session", write)  # space freed
    _commit(s, 4, 20, 20)
    assert s.status.endswith(" Autosave works again: the session (4 commits) is autosaved "
                             "in blobs.tif.sam-session.json.")
    assert s.autosave_failing is None and s.autosave_retry_in() is None
    saved = S.read_session(S.session_file_for(s.path))
    assert len(saved.operations) == 4
    assert np.array_equal(saved.labels, s.labels)
    _commit(s, 4, 44, 44)
    assert "Autosave" not in s.status


def test_a_failed_autosave_is_written_on_its_own_once_its_retry_is_due(
        session, tmp_path, monkeypatch):
    """Without another commit, the retry (the dock's timer calls it) writes the commits once
    space is freed; before its time it does nothing; the wait doubles after each failure."""
    import napari_sam.annotate.autosave_retry as R
    from napari_sam import session as S

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    write = S.write_session
    monkeypatch.setattr(S, "write_session", _full)
    with pytest.warns(UserWarning):
        _commit(s, 3, 20, 20)
    assert 14 < s.autosave_retry_in() <= 15
    monkeypatch.setattr(S, "write_session", write)  # space freed
    s.retry_autosave()  # not due yet: nothing written
    assert not S.session_file_for(s.path).exists()
    clock = R.time.monotonic
    monkeypatch.setattr(R.time, "monotonic", lambda: clock() + 16)
    monkeypatch.setattr(S, "write_session", _full)
    s.retry_autosave()
    assert 29 < s.autosave_retry_in() <= 30 and s.status.count("Autosave to ") == 1
    assert s.status.startswith("Committed") and "failed again" in s.status
    monkeypatch.setattr(R.time, "monotonic", lambda: clock() + 50)
    monkeypatch.setattr(S, "write_session", write)
    s.retry_autosave()
    assert s.status.startswith("Committed") and "failed" not in s.status
    assert s.status.endswith(" Autosave works again: the session (1 commit) is autosaved in "
                             "blobs.tif.sam-session.json.")
    assert len(S.read_session(S.session_file_for(s.path)).operations) == 1
    assert s.autosave_retry_in() is None


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


def test_background_retries_replace_the_failure_in_the_status_line(session, tmp_path,
                                                                  monkeypatch):
    """A write on the worker thread added its failure to the status line shown; each timed
    retry of it added another ("... failed ... failed again ... failed again")."""
    import napari_sam.annotate.autosave_retry as R
    import napari_sam.annotate.autosave_writer as AW
    from napari_sam import session as S

    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(AW, "BACKGROUND_BYTES", 1)
    s.autosave_writer.post = lambda fn: fn()  # (said on the worker: no UI thread here)
    write = S.write_session
    monkeypatch.setattr(S, "write_session", _full)
    with pytest.warns(UserWarning):
        _commit(s, 3, 20, 20)
    clock = R.time.monotonic
    for ahead in (16, 50):
        monkeypatch.setattr(R.time, "monotonic", lambda ahead=ahead: clock() + ahead)
        s.retry_autosave()
        s.wait_autosave(60)
        assert s.status.count("Autosave to ") == 1 and "failed again" in s.status, s.status
        assert s.status.startswith("Committed")
    monkeypatch.setattr(R.time, "monotonic", lambda: clock() + 200)
    monkeypatch.setattr(S, "write_session", write)
    s.retry_autosave()
    s.wait_autosave(60)
    assert s.status.startswith("Committed") and "failed" not in s.status
    assert s.status.endswith(" Autosave works again: the session (1 commit) is autosaved in "
                             "blobs.tif.sam-session.json.")


def _told_to_end_while_autosave_fails(s, tmp_path, monkeypatch, space_freed: bool) -> Path:
    """3 commits, the last 2 not autosaved (a full disk; ``space_freed``: then freed, before
    the next retry), then what SIGTERM runs on the event loop (the process not ended);
    returns the session file beside the image."""
    import napari_sam._qt.terminate_saves as T
    from napari_sam import session as S

    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    write = S.write_session
    _commit(s, 3, 20, 20)
    monkeypatch.setattr(S, "write_session", _full)  # the disk fills up
    with pytest.warns(UserWarning, match="it tries again"):
        _commit(s, 3, 44, 44)
    _commit(s, 2, 44, 44)
    if space_freed:
        monkeypatch.setattr(S, "write_session", write)
    monkeypatch.setattr(T, "_SESSIONS", {s})
    monkeypatch.setattr(T, "flush_all", lambda: None)
    monkeypatch.setattr(T, "_end", lambda signum: None)  # (the process is not ended here)
    T._save_and_end(15, float("inf"), True)  # what SIGTERM runs on the event loop
    return S.session_file_for(s.path)


def test_sigterm_keeps_a_session_whose_autosave_fails_marked_as_ended(
        session, tmp_path, monkeypatch):
    """napari told to end (SIGTERM) while autosave failed on a full disk: "saved" only meant
    no write was under way, so the session was released as a closed one and the next offer
    read as after a normal close, with 1 of its 3 commits on disk. Its lock file stays now:
    the offer says napari ended unexpectedly (it was also let go by the failed autosave to the
    cache folder, which claimed that file instead)."""
    pytest.importorskip("qtpy")
    from napari_sam import session as S
    from napari_sam.annotate.session_claims import lock_file_for
    from napari_sam.annotate.session_places import fallback_session_file

    target = _told_to_end_while_autosave_fails(session, tmp_path, monkeypatch, False)
    assert lock_file_for(target).is_file()  # (left when the process ends: "ended unexpectedly")
    # (the failed write to the cache folder had moved the claim there, letting this one go)
    assert not lock_file_for(fallback_session_file(session.path)).exists()
    assert len(S.read_session(target, load_labels=False).operations) == 1


def test_sigterm_writes_a_failed_autosave_again_before_napari_ends(
        session, tmp_path, monkeypatch):
    """Autosave failed (a full disk), the user freed space, and napari was told to end (a
    logout) before the next timed retry (up to 10 min away): the commits made since the
    failure were lost, though the write would now work. SIGTERM tries the failed autosave
    once more, so all 3 commits are on disk, and the session ends as a closed one."""
    pytest.importorskip("qtpy")
    from napari_sam import session as S
    from napari_sam.annotate.session_claims import lock_file_for

    target = _told_to_end_while_autosave_fails(session, tmp_path, monkeypatch, True)
    saved = S.read_session(target)
    assert len(saved.operations) == 3
    assert np.array_equal(saved.labels, session.labels)
    assert session.autosave_failing is None
    assert not lock_file_for(target).exists()  # (all on disk: released as a closed session)
