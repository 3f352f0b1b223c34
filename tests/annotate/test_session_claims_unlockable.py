"""A session file on a file system that cannot lock files (NFS without a lock daemon:
``flock`` fails with ENOLCK; some FUSE and Lustre mounts: EOPNOTSUPP, ENOSYS). Any ``flock``
error read as "held by another napari": every autosave was refused (the file and all its
alternates "being written by other napari-sam sessions"), and a session that napari left
when it was killed was not offered at all, never "napari ended unexpectedly". Such a file
system cannot tell: the session autosaves there with a claim of this process only, says so
once, and no file there reads as another napari's."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys

import pytest

from session_claim_helpers import commit_at, on_image
from stacks import blob_session


@pytest.fixture(params=[errno.ENOLCK, errno.EOPNOTSUPP])
def unlockable(request, monkeypatch):
    """``flock`` fails as on a file system that cannot lock (the errno of the param)."""
    from napari_sam.annotate import session_claims

    def flock(fd, how):
        raise OSError(request.param, os.strerror(request.param))

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(session_claims, "_UNLOCKABLE_NOTED", set(), raising=False)
    return request.param


def test_a_session_on_a_file_system_that_cannot_lock_autosaves_and_is_offered_after_a_kill(
        tiny_sam, tmp_path, unlockable):
    from napari_sam.annotate.session_claims import claimed, lock_file_for

    image = tmp_path / "blobs.tif"
    sidecar = tmp_path / "blobs.tif.sam-session.json"
    s = on_image(blob_session(tiny_sam), image)
    with pytest.warns(UserWarning) as said:
        commit_at(s, 3, 20, 20)
        s.wait_autosave(60)
    notes = [str(w.message) for w in said if "cannot lock" in str(w.message)]
    assert notes == [
        f"The file system of {tmp_path} cannot lock files ({os.strerror(unlockable)}): "
        "napari-sam cannot tell whether another napari autosaves a session there, and "
        "autosaves there without a lock: open each image in one napari at a time."]
    assert sorted(p.name for p in tmp_path.glob("*.sam-session.json")) == [sidecar.name]
    assert lock_file_for(sidecar).read_text().split()[0] == str(os.getpid())
    commit_at(s, 4, 44, 44)  # (said once)
    s.wait_autosave(60)
    assert claimed(sidecar)  # (this process holds it: its table)

    s.release_session_file()  # a dock closed: its lock file goes, offered as any session
    assert not lock_file_for(sidecar).exists() and not claimed(sidecar)
    again = on_image(blob_session(tiny_sam), image)
    offers = []
    again.notify_resume = lambda path, offer: offers.append(offer)
    assert again.offer_resume() is not None
    assert offers[-1].startswith("A saved session exists for this image (2 commits")

    # another host's napari, open or killed: cannot tell (it was said to have ended)
    lock_file_for(sidecar).write_text("4000000 elsewhere\n")
    assert not claimed(sidecar)  # (cannot tell: not another napari's)
    third = on_image(blob_session(tiny_sam), image)
    third.notify_resume = lambda path, offer: offers.append(offer)
    assert third.offer_resume() is not None
    assert offers[-1].startswith(
        "napari-sam cannot tell whether another napari has this session open (the file system "
        f"of {tmp_path} cannot lock files; its last autosave was at ")
    assert (", by process 4000000 on elsewhere): resume it only if no other napari has this "
            "image open (otherwise both autosave into one file). A saved session exists for "
            "this image (2 commits") in offers[-1]
    assert "ended unexpectedly" not in offers[-1]

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # a process that ended
    lock_file_for(sidecar).write_text(f"{ended.stdout.strip()} {socket.gethostname()}\n")
    fourth = on_image(blob_session(tiny_sam), image)
    fourth.notify_resume = lambda path, offer: offers.append(offer)
    assert fourth.offer_resume() is not None
    assert offers[-1].startswith("napari ended unexpectedly (killed or crashed; its last "
                                 "autosave was at ")


def test_the_note_is_said_once_per_file_system_not_per_folder(tmp_path, unlockable):
    """On a home folder on NFS without a lock daemon, every image without a file autosaves
    in a folder of its own under the cache folder (``sessions/in-memory/<hex>``): the note
    that the file system cannot lock came again for each new image."""
    from napari_sam.annotate.session_claims import claim_session_file

    claims = []
    with pytest.warns(UserWarning) as said:
        for name in ("0123456789abcdef", "fedcba9876543210"):
            (tmp_path / name).mkdir()
            claims.append(claim_session_file(tmp_path / name / "image.sam-session.json"))
    assert all(c is not None for c in claims)
    notes = [str(w.message) for w in said if "cannot lock" in str(w.message)]
    assert len(notes) == 1 and notes[0].startswith(
        f"The file system of {tmp_path / '0123456789abcdef'} cannot lock files")
    for c in claims:
        c.release()


def test_a_lock_file_of_another_pid_namespace_of_this_host_name_is_not_said_to_have_ended(
        tmp_path, unlockable):
    """Two containers of one host name sharing an NFS folder that cannot lock: a napari of
    the other container, still open, was said to have 'ended unexpectedly' (its process id
    runs no more here, where process ids are another namespace's). A lock file now records
    its writer's PID namespace; one of another namespace cannot be told."""
    from napari_sam.annotate.ended_sessions import ended_without_closing, maybe_open_elsewhere
    from napari_sam.annotate.session_claims import claim_session_file, lock_file_for
    from napari_sam.io.dead_temporaries import pid_namespace

    sidecar = tmp_path / "blobs.tif.sam-session.json"
    with pytest.warns(UserWarning):
        claim = claim_session_file(sidecar)
    ns, host = pid_namespace(), socket.gethostname()
    assert lock_file_for(sidecar).read_text() == f"{os.getpid()} {host} {ns}\n"
    claim.release()

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    sidecar.write_text("{}")
    for written, gone in ((f"{ended} {host} {ns}\n", True),  # this namespace: it ended
                          (f"{ended} {host}\n", True),  # (written before namespaces were)
                          (f"{ended} {host} 1{ns}\n", False)):  # another container's
        lock_file_for(sidecar).write_text(written)
        assert ended_without_closing(sidecar) is gone, written
        assert maybe_open_elsewhere(sidecar) is not gone, written
