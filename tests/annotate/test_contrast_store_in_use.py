"""A contrast store another live session uses is never deleted (annotate.contrast_stores):
two docks of one process sharing an Embedding store, or another napari-sam process holding
the store. Before: the session that made the store deleted it after three other contrasts,
and the dock that reused it failed at its next embedding (KeyError 'slice_hash')."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

from napari_sam.embeddings import is_embedding_store
from stacks import blob_session

#: what makes ``flock`` fail as on a file system that cannot lock (NFS without a lock daemon)
_NO_LOCKS = ("import errno, fcntl, os\n"
             "def flock(fd, how):\n"
             "    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))\n"
             "fcntl.flock = flock\n")


@contextlib.contextmanager
def another_process_holds(store, unlockable: bool = False, setup: str = ""):
    """A Python process whose session holds the contrast store ``store`` (its
    ``ContrastStores.use``) while the block runs; then it ends (its input closed).
    ``unlockable``: its ``flock`` fails as on a file system that cannot lock; ``setup``:
    code it runs first."""
    code = ((_NO_LOCKS if unlockable else "") + setup
            + "import sys; from napari_sam.annotate.contrast_stores import ContrastStores; "
            f"c = ContrastStores(); c.use({str(store)!r}); print('held', flush=True); "
            "sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        yield other
    finally:
        other.communicate("")


def _embedded_at_contrast_60(session, tmp_path) -> Path:
    """``session`` with the Embedding store ``emb.zarr`` in ``tmp_path`` and the contrast
    (0, 60): slice 3 embedded into that contrast's store, whose path is returned."""
    session.set_store(str(tmp_path / "emb.zarr"))
    session.set_model_contrast((0, 60))
    session.compute_embeddings([3])
    return tmp_path / "emb.contrast-0-60.zarr"


def _three_other_contrasts(session) -> None:
    """Set three other contrasts (0, 70), (0, 80), (0, 90) on ``session``: the store of
    (0, 60) is then past the most recent ones it keeps, deleted unless held."""
    for hi in (70, 80, 90):
        session.set_model_contrast((0, hi))


def test_a_store_another_dock_uses_is_kept_and_that_dock_keeps_working(tiny_sam, tmp_path):
    store = tmp_path / "emb.contrast-0-60.zarr"
    a, b = blob_session(tiny_sam), blob_session(tiny_sam)
    for s in (a, b):
        s.set_store(str(tmp_path / "emb.zarr"))
        s.set_model_contrast((0, 60))
        s.compute_embeddings([3])  # a makes the store, b reuses it
    _three_other_contrasts(a)
    b.compute_embeddings([4])  # before: KeyError 'slice_hash' (the store was deleted)
    assert b.ready([3, 4]) and b.emb.store == store
    assert is_embedding_store(store) and b.emb.stored()[[3, 4]].all()  # b uses it: kept
    b.set_model_contrast((0, 120))
    b.release_contrast_stores()  # b closes: nobody uses it now
    a.set_model_contrast((0, 100))  # a made it: deleted at its next change
    assert not store.exists()


def test_a_store_another_process_holds_is_kept(session, tmp_path):
    s = session
    store = _embedded_at_contrast_60(s, tmp_path)
    with another_process_holds(store):
        _three_other_contrasts(s)
        assert is_embedding_store(store)
    s.set_model_contrast((0, 100))  # the other process ended: deleted now
    assert not store.exists()
    assert not list(tmp_path.glob(".emb.contrast-0-60.zarr.in-use"))


def test_a_store_deleted_under_a_session_is_made_again(session, tmp_path):
    """A store deleted by hand (or by another program) while the session keeps its
    embeddings: the next embedding makes it again. Before: KeyError 'slice_hash'."""
    import shutil

    s = session
    store = _embedded_at_contrast_60(s, tmp_path)
    shutil.rmtree(store)
    s.compute_embeddings([4])
    assert s.ready([4]) and is_embedding_store(store)
    assert s.emb.stored()[4]


def test_looking_whether_a_store_is_in_use_leaves_no_file(tmp_path):
    """``store_in_use`` made the marker to try its lock and left it: an empty
    ``.emb.contrast-0-60.zarr.in-use`` beside every store looked at."""
    from napari_sam.annotate.contrast_stores import ContrastStores, store_in_use

    store = tmp_path / "emb.contrast-0-60.zarr"
    assert not store_in_use(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    left = tmp_path / ".emb.contrast-0-60.zarr.in-use"  # by a process that ended (a crash)
    left.write_text("")
    assert not store_in_use(store) and not left.exists()
    with another_process_holds(store):
        # before: False (a shared lock was tried, and the holders share theirs)
        assert store_in_use(store) and store_in_use(store)
        assert not ContrastStores().delete(store)  # the holder still holds it
        assert left.exists()
    assert not left.exists() and not store_in_use(store)  # its holder let go: removed
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_on_a_file_system_that_cannot_lock_a_store_is_kept_while_held_then_deleted(
        session, tmp_path, monkeypatch):
    """There, whether another process holds a store cannot be told by a lock: every store
    counted as in use for good, and none was ever deleted. Each holder now leaves a marker of
    its own: kept while another process holds it, deleted once that process ended (also
    one killed, whose marker stays), never while this process holds it."""
    from napari_sam.io.dead_temporaries import host_tag, pid_namespace, tagged_path

    _no_locks_here(monkeypatch)
    s = session
    store = _embedded_at_contrast_60(s, tmp_path)
    with another_process_holds(store, unlockable=True) as other:
        _three_other_contrasts(s)
        assert is_embedding_store(store)  # another process holds it: kept
    s.set_model_contrast((0, 100))  # the other process ended: deleted now
    assert not store.exists()

    s.compute_embeddings([3])
    latest = tmp_path / "emb.contrast-0-100.zarr"
    ns = pid_namespace()  # a marker as a killed holder leaves it (that process ended)
    (tmp_path / (f".{latest.name}.in-use-{host_tag()}-{other.pid}"
                 + (f"-{ns}" if ns else ""))).write_text("1\n")
    for hi in (110, 120):
        s.set_model_contrast((0, hi))
    assert is_embedding_store(latest)  # this process holds it (its three latest): kept
    s.set_model_contrast((0, 130))
    assert not latest.exists()
    assert sorted(p.name for p in tmp_path.glob(".*in-use*")) == sorted(
        tagged_path(tmp_path / f"emb.contrast-0-{hi}.zarr", "in-use").name
        for hi in (110, 120, 130))  # this process's holds alone


def _no_locks_here(monkeypatch):
    """``flock`` of this process fails as on a file system that cannot lock (ENOLCK)."""
    import errno
    import fcntl
    import os

    def flock(fd, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)


def test_a_store_a_process_that_can_lock_holds_is_kept_by_one_that_cannot(
        session, tmp_path, monkeypatch):
    """One NFS folder, two hosts: one's lock daemon runs (its napari holds the store with a
    shared ``flock`` on ``.<store>.in-use``), the other's does not (``flock``: ENOLCK). The
    second removed the first's marker and deleted the store it was using."""
    s = session
    store = _embedded_at_contrast_60(s, tmp_path)
    marker = tmp_path / ".emb.contrast-0-60.zarr.in-use"
    with another_process_holds(store):  # (it can lock)
        _no_locks_here(monkeypatch)
        _three_other_contrasts(s)
        assert is_embedding_store(store) and marker.exists()  # before: both gone
        s.set_model_contrast((0, 60))  # held again here (own marker): theirs left
        assert marker.exists()


def test_on_a_file_system_that_cannot_lock_another_hosts_store_held_over_a_day_is_kept(
        session, tmp_path, monkeypatch):
    """A marker of another host counts as left by a process that ended once unwritten for a
    day; a napari holding a store that long (left open overnight) never rewrote its marker,
    and the store was deleted under it. Holders now rewrite their markers."""
    import os
    import time

    _no_locks_here(monkeypatch)
    s = session
    store = _embedded_at_contrast_60(s, tmp_path)
    setup = ("import socket; socket.gethostname = lambda: 'otherhost'\n"
             "import napari_sam.annotate.contrast_stores as cs; cs.MARKER_REFRESH = 0.1\n")
    with another_process_holds(store, unlockable=True, setup=setup):
        (theirs,) = tmp_path.glob(".emb.contrast-0-60.zarr.in-use-otherhost-*")
        day_ago = time.time() - 25 * 3600  # as it is after a day held: rewritten soon
        os.utime(theirs, (day_ago, day_ago))
        end = time.monotonic() + 60  # (rewritten within 0.1 s; a loaded machine: later)
        while theirs.stat().st_mtime < day_ago + 3600 and time.monotonic() < end:
            time.sleep(0.05)
        _three_other_contrasts(s)
        assert is_embedding_store(store) and theirs.exists()  # before: both deleted
    assert not theirs.exists()  # let go when it ended


def test_where_no_process_can_lock_a_marker_made_again_meanwhile_is_not_left(
        tmp_path, monkeypatch):
    """Where no process can lock, each makes the shared ``.<store>.in-use`` for a moment (it
    opens it to try its lock) and removes it. One seen there just before this process opened
    it, removed meanwhile by its maker, was taken as a locking process's and left: the store
    beside it counted as held for good."""
    from napari_sam.annotate import contrast_stores
    from napari_sam.annotate.contrast_stores import StoreHold, store_in_use

    _no_locks_here(monkeypatch)
    store = tmp_path / "emb.contrast-0-60.zarr"
    marker = tmp_path / ".emb.contrast-0-60.zarr.in-use"
    real = contrast_stores.open_locked

    def removed_by_its_maker_first(path, how, unlockable=None):
        Path(path).unlink(missing_ok=True)  # (the other process let its moment go)
        return real(path, how, unlockable=unlockable)

    monkeypatch.setattr(contrast_stores, "open_locked", removed_by_its_maker_first)
    marker.write_text("")  # another process's moment
    hold = StoreHold(store)
    assert not marker.exists()  # before: left, and the store held for good
    hold.release()
    assert not store_in_use(store)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
