"""The dock on an image on a file system that cannot lock files (NFS without a lock daemon:
``flock`` fails with ENOLCK). Every autosave was refused there (the file and its alternates
"being written by other napari-sam sessions") and, after napari was killed, the session was
not offered at all. Now the dock autosaves beside the image, napari shows once that it
cannot tell whether another napari autosaves there, and the offer after a kill says napari
ended unexpectedly (the lock file left names a process of this host that runs no more)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import subprocess
import sys

from sam_qt_helpers import commit_on, dock_on


def test_a_dock_on_an_unlockable_file_system_autosaves_and_offers_after_a_kill(
        make_widget, stack_file, tiny_ckpt, notifications, monkeypatch):
    from napari.utils.notifications import notification_manager

    from napari_sam.annotate import session_claims
    from napari_sam.annotate.session_claims import lock_file_for

    def flock(fd, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(session_claims, "_UNLOCKABLE_NOTED", set(), raising=False)
    sidecar = stack_file.with_name("blobs.tif.sam-session.json")
    with notification_manager:  # (napari.run shows warnings so)
        viewer, widget = dock_on(make_widget, stack_file, tiny_ckpt)
        commit_on(viewer, widget, 3)
        commit_on(viewer, widget, 4)
    said = [m for _, m in notifications if "cannot lock" in m]
    assert said == [
        f"The file system of {stack_file.parent} cannot lock files (No locks available): "
        "napari-sam cannot tell whether another napari autosaves a session there, and "
        "autosaves there without a lock: open each image in one napari at a time."]
    assert not any("being written by other napari-sam sessions" in m for _, m in notifications)
    assert sorted(p.name for p in stack_file.parent.glob("*.sam-session.json")) == [
        sidecar.name]
    viewer.close()  # the dock closed: its lock file goes
    assert not lock_file_for(sidecar).exists()
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # a process that ended
    # as napari killed leaves it (another host's: "cannot tell", tests/annotate)
    lock_file_for(sidecar).write_text(f"{ended.stdout.strip()} {socket.gethostname()}\n")

    viewer, widget = dock_on(make_widget, stack_file, tiny_ckpt)
    assert widget._resume_row.isVisibleTo(widget)
    assert widget._resume_label.text().startswith(
        "napari ended unexpectedly (killed or crashed; its last autosave was at ")
    assert ": 2 commits since the last save (none was saved with 'Save session') can be " \
           "recovered. A saved session exists for this image (2 commits" in \
           widget._resume_label.text()
