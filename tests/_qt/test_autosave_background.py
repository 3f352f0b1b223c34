"""The dock's autosave of large labels (20 MiB and more: BACKGROUND_BYTES) runs off napari's UI
thread: the labels are hashed, compressed and written on the autosave worker, two quick
commits leave the second on disk, an older state never follows a newer one, napari quitting
during a write leaves the newest state, and a failed write still warns (on the UI thread) and
turns autosave off; one that falls back to the cache folder says so in a notification; a dock
waits for its writes on quit only while it is open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sam_qt_helpers import blob_stack, open_from_menu, pick_checkpoint

HERE = Path(__file__).resolve().parent


@pytest.fixture
def big_file(tmp_path):
    """(20, 512, 512): the dock's labels layer of it (uint32) holds 20 MiB."""
    import tifffile

    path = tmp_path / "data" / "big.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, blob_stack(z=20, size=512))
    return path


def open_big(make_widget, big_file, tiny_ckpt):
    viewer, widget = make_widget()
    pick_checkpoint(widget, tiny_ckpt)
    viewer.open(str(big_file), plugin="napari")
    return viewer, widget


def commit_on(widget, z: int):
    c = widget.controller
    c.viewer.dims.set_point(0, z)
    c.points_layer.add([[z, 40 + 30 * z, 40]])
    commit = widget._on_commit()
    assert commit is not None, c.status
    return commit


def autosaved(big_file) -> dict | None:
    path = big_file.with_name(big_file.name + ".sam-session.json")
    return json.loads(path.read_text()) if path.is_file() else None


def spy_threads(monkeypatch, delay: float = 0.0) -> list:
    """Record (what, thread id) of every labels hash and labels TIFF write; ``delay``: each
    TIFF write takes that much longer (a slow disk)."""
    from napari_sam import io as nio
    from napari_sam import session as S

    calls = []
    hash_, write = S.labels_hash, nio.write_labels

    def labels_hash(a):
        calls.append(("hash", threading.get_ident()))
        return hash_(a)

    def write_labels(*args, **kwargs):
        calls.append(("write", threading.get_ident()))
        time.sleep(delay)
        return write(*args, **kwargs)

    monkeypatch.setattr(S, "labels_hash", labels_hash)
    monkeypatch.setattr(nio, "write_labels", write_labels)
    return calls


def test_large_labels_are_hashed_and_written_off_the_ui_thread(make_widget, big_file, tiny_ckpt,
                                                               monkeypatch, qtbot):
    viewer, widget = open_big(make_widget, big_file, tiny_ckpt)
    calls = spy_threads(monkeypatch)
    commit_on(widget, 1)
    target = widget.controller.target_layer
    assert np.asarray(target.data).nbytes >= 16 * 2**20
    qtbot.waitUntil(lambda: autosaved(big_file) is not None
                    and len(autosaved(big_file)["operations"]) == 1, timeout=60000)
    main = threading.get_ident()
    assert {what for what, _ in calls} == {"hash", "write"}
    assert all(tid != main for _, tid in calls), calls  # not on the UI thread
    from napari_sam import session as S

    saved = S.read_session(big_file.with_name(big_file.name + ".sam-session.json"))
    assert np.array_equal(saved.labels, np.asarray(target.data))


def test_two_quick_commits_leave_the_second_and_never_go_back(make_widget, big_file, tiny_ckpt,
                                                              monkeypatch):
    from napari_sam import session as S

    viewer, widget = open_big(make_widget, big_file, tiny_ckpt)
    spy_threads(monkeypatch, delay=1.0)
    written, write_session = [], S.write_session

    def spy(session, path, **kwargs):
        out = write_session(session, path, **kwargs)
        written.append(len(session.operations))
        return out

    monkeypatch.setattr(S, "write_session", spy)
    commit_on(widget, 1)
    commit_on(widget, 2)  # while the first is being written
    c = widget.controller
    assert c.wait_autosave(60)
    assert written == sorted(written) and written[-1] == 2, written
    saved = S.read_session(big_file.with_name(big_file.name + ".sam-session.json"))
    assert len(saved.operations) == 2
    assert np.array_equal(saved.labels, np.asarray(c.target_layer.data))


def test_a_failed_background_write_warns_on_the_ui_thread_and_is_tried_again(
        make_widget, big_file, tiny_ckpt, monkeypatch, qtbot, notifications):
    import errno

    from napari_sam import session as S

    viewer, widget = open_big(make_widget, big_file, tiny_ckpt)
    c = widget.controller
    tries = []

    def full(session, path, **kwargs):
        tries.append(threading.get_ident())
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(S, "write_session", full)
    warned = []
    monkeypatch.setattr(c, "notify_warning",
                        lambda text: warned.append((text, threading.get_ident())))
    commit_on(widget, 1)
    qtbot.waitUntil(lambda: c.autosave_failing is not None, timeout=60000)
    main = threading.get_ident()
    assert tries and all(t != main for t in tries)  # written on the worker ...
    assert len(warned) == 1 and warned[0][1] == main  # ... said on the UI thread, once
    assert "failed (No space left on device); it tries again at the next commit" in warned[0][0]
    assert "it tries again" in c.status and widget._autosave.isChecked()  # autosave stays on
    commit_on(widget, 2)  # tried again (target, then fallback, for each commit)
    qtbot.waitUntil(lambda: "failed again" in c.status, timeout=60000)
    assert c.wait_autosave(60) and len(tries) == 4 and len(warned) == 1


_CHILD = r"""
import sys, time
import numpy as np
sys.path[:0] = [{helpers!r}, {tests!r}]
import napari
from napari_sam import io as nio
from sam_qt_helpers import open_from_menu, pick_checkpoint
write = nio.write_labels
def slow(*args, **kwargs):
    time.sleep(2.0)  # a slow disk: napari quits while the writes are under way
    return write(*args, **kwargs)
nio.write_labels = slow
viewer = napari.Viewer(show=False)
dock, widget = open_from_menu(viewer)
widget.controller.sync = True
pick_checkpoint(widget, {ckpt!r})
viewer.open({stack!r}, plugin="napari")
c = widget.controller
for z in (1, 2):
    viewer.dims.set_point(0, z)
    c.points_layer.add([[z, 40 + 30 * z, 40]])
    assert widget._on_commit() is not None, c.status
np.save({expected!r}, np.asarray(c.target_layer.data))
assert not c.autosave_writer.idle, "the autosave was written before napari quit"
viewer.close()
print("CLOSED", flush=True)
"""


def test_napari_quitting_during_a_write_leaves_the_newest_state(big_file, tiny_ckpt, tmp_path):
    from napari_sam import session as S

    expected = tmp_path / "expected.npy"
    script = _CHILD.format(helpers=str(HERE), tests=str(HERE.parent), stack=str(big_file),
                           ckpt=str(tiny_ckpt), expected=str(expected))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "CLOSED" in proc.stdout, proc.stderr[-3000:]
    saved = S.read_session(big_file.with_name(big_file.name + ".sam-session.json"),
                           load_labels=True)
    assert len(saved.operations) == 2
    assert np.array_equal(saved.labels, np.load(expected))


def quit_receivers(app) -> int:
    return app.receivers(app.aboutToQuit)


def test_each_dock_waits_on_quit_only_while_it_is_open(make_napari_viewer, qtbot):
    from qtpy.QtCore import QCoreApplication

    app = QCoreApplication.instance()
    viewer = make_napari_viewer()
    before = quit_receivers(app)
    waited = []
    docks = []
    for name in ("first", "second"):
        dock, widget = open_from_menu(viewer)
        c = widget.controller  # (kept alive: a closed dock's controller may outlive it)
        c.wait_autosave = lambda timeout=None, name=name: waited.append(name) or True
        docks.append((dock, c))
        assert quit_receivers(app) == before + 1  # one handler per open dock
        if name == "first":
            viewer.window.remove_dock_widget(dock)  # closed before the second opens
            assert quit_receivers(app) == before
    app.aboutToQuit.emit()  # napari quitting
    assert waited == ["second"]  # the closed dock's handler is gone; the open one waits
    viewer.window.remove_dock_widget(docks[1][0])
    assert quit_receivers(app) == before
    app.aboutToQuit.emit()
    assert waited == ["second"]


def test_a_background_autosave_falling_back_says_so_in_a_notification(
        make_widget, big_file, tiny_ckpt, monkeypatch, tmp_path, notifications, qtbot):
    """The write beside the image fails (a read-only mount): the session goes to the cache
    folder, and a notification says where (the status line it was added to is replaced by
    the next news, e.g. the preview's)."""
    from napari_sam import session as S
    from napari_sam.annotate.session_places import fallback_session_file

    monkeypatch.setenv("NAPARI_SAM_CACHE_DIR", str(tmp_path / "cache"))
    viewer, widget = open_big(make_widget, big_file, tiny_ckpt)
    c = widget.controller
    write = S.write_session

    def refuse_beside(sess, path, **kwargs):
        if path.parent == big_file.parent:
            raise PermissionError(13, "Permission denied")
        return write(sess, path, **kwargs)

    monkeypatch.setattr(S, "write_session", refuse_beside)
    commit_on(widget, 1)
    fallback = fallback_session_file(big_file)
    qtbot.waitUntil(lambda: fallback.is_file() and c.autosave_writer.idle, timeout=60000)
    said = f"the session is autosaved in {fallback}."
    qtbot.waitUntil(lambda: any(said in m for _, m in notifications), timeout=30000)
    assert c.autosave
    c.say("Something else.")  # the status line moves on; the notification stays listed
    assert [m for _, m in notifications if said in m] and said not in c.status
