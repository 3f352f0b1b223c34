"""A lock file this user may read but not write (a shared, group-writable folder: another
user's napari made it, mode 644): opening it to lock it fails with EACCES, and the claim was
granted "within this process only", so a second user's dock autosaved over the live session
of the first one, the very thing claims are for. It is tried read-only then: held is held."""

from __future__ import annotations

import builtins
import errno
import os

from session_claim_helpers import another_process_claims


def _lock_files_not_writable(monkeypatch):
    """Opening a lock file (``.*.lock``) to write fails as for another user's file."""
    from napari_sam.annotate import file_locks

    def fake_open(path, mode="r", *args, **kwargs):
        if str(path).endswith(".lock") and mode != "r":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(file_locks, "open", fake_open, raising=False)


def test_a_live_claim_in_a_lock_file_this_user_cannot_write_is_held(tmp_path, monkeypatch):
    from napari_sam.annotate.session_claims import (
        SessionClaims,
        alternate_session_file,
        claim_session_file,
        lock_file_for,
    )

    sidecar = tmp_path / "blobs.tif.sam-session.json"
    with another_process_claims(sidecar):
        _lock_files_not_writable(monkeypatch)
        assert claim_session_file(sidecar) is None
        assert SessionClaims().writable(sidecar) == alternate_session_file(sidecar, 2)
    # a lock file its napari left when killed, not writable here: nobody holds it
    lock_file_for(sidecar).write_text("4000000 elsewhere\n")
    claim = claim_session_file(sidecar)
    assert claim is not None and claim.held
    claim.release()
    assert lock_file_for(sidecar).is_file()  # (not ours to remove)


def test_a_lock_file_this_user_cannot_even_read_is_not_claimed_over(tmp_path, monkeypatch):
    """Another user's lock file under a umask of 077 (mode 600): neither written nor read
    here, whether its napari lives cannot be told; the session file is left to it (this
    session autosaves in ``.session-2``), not written over."""
    from napari_sam.annotate import session_claims
    from napari_sam.annotate.session_claims import (
        SessionClaims,
        alternate_session_file,
        claim_session_file,
        lock_file_for,
    )

    sidecar = tmp_path / "blobs.tif.sam-session.json"
    lock = lock_file_for(sidecar)
    lock.write_text("4000000 elsewhere\n")
    _lock_files_not_writable(monkeypatch)

    def unreadable(path, mode="r", *args, **kwargs):
        if str(path) == str(lock):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return builtins.open(path, mode, *args, **kwargs)

    monkeypatch.setattr(session_claims, "open", unreadable, raising=False)
    assert claim_session_file(sidecar) is None
    assert SessionClaims().writable(sidecar) == alternate_session_file(sidecar, 2)
