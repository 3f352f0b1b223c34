"""The autosaves of images without a file, under the cache folder by their pixels
(:mod:`napari_sam.annotate.memory_sessions`), do not pile up: beyond the newest 20 images and
after 30 days unwritten they are removed, but never the open image's, nor one a live session
autosaves in, and only session files (a file of anyone else's stays, and its folder)."""

from __future__ import annotations

import os
import time

from session_claim_helpers import another_process_claims, commit_at
from stacks import blob_session, blob_stack

DAY = 86400.0


def _autosave_folder(name: str, age_days: float, extra: str | None = None):
    """A folder of memory_sessions as an autosave leaves it (session file, labels TIFF),
    last written ``age_days`` ago; ``extra``: a file of someone else's in it too."""
    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    folder = memory_sessions_folder() / name
    folder.mkdir(parents=True)
    names = ["image.sam-session.json", "image.sam-session.labels-0123456789ab.tif",
             ".image.sam-session.json.lock"] + ([extra] if extra else [])
    for n in names:
        (folder / n).write_text("x")
    _age(folder, age_days)
    return folder


def _age(folder, age_days: float) -> None:
    then = time.time() - age_days * DAY
    for p in folder.iterdir():
        os.utime(p, (then, then))


def test_old_and_surplus_autosaves_go_and_the_protected_ones_stay():
    from napari_sam.annotate.memory_sessions import KEPT_IMAGES, prune_memory_sessions

    young = [_autosave_folder(f"{i:016x}", 2 + i) for i in range(KEPT_IMAGES + 2)]
    open_image = _autosave_folder("a" * 16, 40)
    foreign = _autosave_folder("b" * 16, 40, extra="notes.txt")
    not_ours = _autosave_folder("my-sessions", 40)  # no folder memory_session_file makes
    live = _autosave_folder("c" * 16, 40)
    with another_process_claims(live / "image.sam-session.json"):
        _age(live, 40)  # (the claim wrote its lock file now)
        removed = prune_memory_sessions(keep=open_image)
    assert sorted(removed) == sorted([*young[KEPT_IMAGES:], foreign])
    assert all(f.is_dir() for f in young[:KEPT_IMAGES])
    assert not any(f.exists() for f in young[KEPT_IMAGES:])
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]  # not ours: kept
    for kept in (open_image, not_ours, live):
        assert (kept / "image.sam-session.json").is_file()


def test_a_new_image_autosaved_prunes_the_old_ones(tiny_sam):
    from napari_sam.annotate.memory_sessions import memory_image_key, memory_session_file

    old = _autosave_folder("d" * 16, 40)
    s = blob_session(tiny_sam)
    commit_at(s, 1, 20, 20)
    mine = memory_session_file(memory_image_key(s.session_state().image["hash"],
                                                s.source.stack, s.image_data))
    assert s.autosave_path() == mine and mine.is_file()
    assert not old.exists()


def test_an_image_picked_with_no_autosave_of_any_array_is_not_hashed(tiny_sam, monkeypatch):
    """Finding an image's autosave by its pixels hashes up to 16 slices (0.7 s for 2048 x
    2048 ones here): not done while no image without a file was ever autosaved."""
    from napari_sam import session as S

    hashed = []
    real = S.image_hash
    monkeypatch.setattr(S, "image_hash", lambda stack: hashed.append(1) or real(stack))
    s = blob_session(tiny_sam)  # (its image picked: the offer to resume looked)
    assert s.saved_session_path() is None and s.offer_resume() is None and hashed == []
    commit_at(s, 1, 20, 20)  # the autosave records the hash
    assert hashed == [1]
    s.release_session_file()  # (its dock closed)
    other = blob_session(tiny_sam)
    assert other.saved_session_path() == s.autosave_path() and len(hashed) == 2


def test_an_array_differing_only_in_slices_the_image_hash_skips_is_offered_nothing(tiny_sam):
    """The image hash reads 16 of 20 slices: an array that differs from one autosaved only on
    slice 2 (one not read) was offered the other's session, and Resume put labels drawn on
    other pixels on it. An array in memory is known by all its pixels."""
    from napari_sam.annotate.memory_sessions import memory_sessions_folder
    from stacks import blob_stack

    raw = blob_stack(z=20)
    edited = raw.copy()
    edited[2] += 50  # (the image hash samples slices 0, 1, 3, ...: not 2)
    s = blob_session(tiny_sam)
    s.set_image(raw, name="raw")
    commit_at(s, 1, 20, 20)
    s.release_session_file()  # (its dock closed)
    other = blob_session(tiny_sam)
    other.set_image(edited, name="edited")
    assert other.saved_session_path() is None and other.offer_resume() is None
    same = blob_session(tiny_sam)
    same.set_image(raw.copy(), name="raw again")  # the same pixels: its session is found
    assert same.saved_session_path() == s.autosave_path()
    assert len(list(memory_sessions_folder().iterdir())) == 1


def test_save_session_into_the_pruned_folder_is_refused(tiny_sam, tmp_path):
    """After Resume of an array's autosave the dock's *Save session...* dialog starts at that
    autosave (``session_path``): accepting it, or naming a file there, saved the user's work
    where the autosaves of images without a file are removed after 30 days."""
    import pytest

    from napari_sam.annotate import UserError
    from napari_sam.annotate.memory_sessions import memory_sessions_folder

    s = blob_session(tiny_sam)
    commit_at(s, 1, 20, 20)
    auto = s.autosave_path()
    before = auto.read_bytes()
    for asked in (auto, auto.parent / "cells.sam-session.json", auto.parent / "mine.json"):
        with pytest.raises(UserError) as said:
            s.save_session(asked)
        assert str(said.value) == (
            f"Could not save the session to {asked}: {memory_sessions_folder()} holds the "
            "autosaves of images without a file, removed after 30 days unwritten. Pick "
            "another folder to keep it.")
    assert auto.read_bytes() == before and sorted(p.name for p in auto.parent.iterdir()
                                                  if not p.name.startswith(".")) == sorted(
        p.name for p in auto.parent.glob("image.sam-session*"))
    assert s.save_session(tmp_path / "mine.json") == tmp_path / "mine.json"


def test_a_memory_mapped_array_is_not_read_whole(tmp_path):
    """A script's ``np.load(..., mmap_mode="r")`` or ``tifffile.memmap`` (also a view of it)
    is a numpy array on disk: the key of an array in memory would read all of it (20 GB:
    minutes, with the dock frozen) when it is picked; it is known by its image hash."""
    import numpy as np

    from napari_sam.annotate.memory_sessions import memory_image_key

    np.save(tmp_path / "big.npy", np.arange(20 * 8 * 8, dtype=np.uint16).reshape(20, 8, 8))
    mapped = np.load(tmp_path / "big.npy", mmap_mode="r")
    for data in (mapped, np.asarray(mapped), mapped[2:]):
        assert memory_image_key("0123456789abcdef" * 2, data, data) == "0123456789abcdef" * 2
    in_memory = np.array(mapped)
    assert memory_image_key("0123456789abcdef" * 2, in_memory, in_memory) != "0123456789abcdef" * 2


def test_a_float_array_with_nan_pixels_is_autosaved(tiny_sam):
    """A script's float array with NaN pixels (a registration's padding, a masked image): the
    session recorded its contrast limits as ``[nan, nan]`` (``min`` of slice 0), which JSON
    cannot hold, so every autosave of it failed ("Out of range float values are not JSON
    compliant: nan") and *Save session* too. The limits are those of its finite pixels."""
    import numpy as np

    from napari_sam.session import read_session
    from stacks import blob_stack

    padded = blob_stack()
    padded[:, :4, :] = np.nan
    s = blob_session(tiny_sam)
    s.set_image(padded, name="padded")
    warned = []
    s.notify_warning = warned.append
    commit_at(s, 1, 20, 20)
    assert warned == [] and s.autosave
    finite = padded[0, 4:]
    assert read_session(s.autosave_path(), load_labels=False).image["contrast_limits"] == [
        float(finite.min()), float(finite.max())]


def test_going_back_to_an_array_does_not_hash_it_again(tiny_sam, monkeypatch):
    """Picking an image without a file hashes its pixels on the UI thread (0.5 s for a
    (100, 2048, 2048) uint16 array here) to find its autosave: going back and forth between
    two arrays hashed each again at every pick."""
    from napari_sam import session as S
    from napari_sam.annotate import memory_sessions
    from stacks import blob_stack

    s = blob_session(tiny_sam)
    commit_at(s, 1, 20, 20)  # (an autosave by pixels exists: picks look for theirs)
    first, other = s.image_data, blob_stack(seed=1)
    hashed, keyed = [], []
    real_hash, real_key = S.image_hash, memory_sessions.memory_image_key
    monkeypatch.setattr(S, "image_hash", lambda stack: hashed.append(1) or real_hash(stack))
    monkeypatch.setattr("napari_sam.annotate.session_places.memory_image_key",
                        lambda *a: keyed.append(1) or real_key(*a))
    mine = s.autosave_path()
    for data, name in ((other, "other"), (first, "blobs"), (other, "other")):
        s.set_image(data, name=name)
        s.offer_resume()
    assert (len(hashed), len(keyed)) == (1, 1)  # 'other' once; 'blobs' known from its commit
    s.set_image(first, name="blobs")
    assert s.autosave_path() == mine and s.saved_session_path() == mine


def test_the_session_of_an_image_left_for_another_is_not_pruned(tiny_sam):
    """A session resumed (or autosaved) more than a day ago lets its claim go when another
    image is picked in its dock, but it is still open (its labels, its log): the first
    autosave of that other image, with more than :data:`KEPT_IMAGES` folders, removed it."""
    from napari_sam.annotate.memory_sessions import KEPT_IMAGES
    from napari_sam.session import read_session

    s = blob_session(tiny_sam)
    commit_at(s, 1, 20, 20)
    s.wait_autosave()
    first = s.autosave_path()
    _age(first.parent, 2)  # written 2 days ago
    newer = [_autosave_folder(f"{i:016x}", 1.1 + i / 100) for i in range(KEPT_IMAGES)]
    s.set_image(blob_stack(seed=1), name="other")  # its claim on `first` is let go
    commit_at(s, 1, 20, 20)  # the other image's first autosave prunes
    s.wait_autosave()
    assert s.autosave_path().is_file() and s.autosave_path() != first
    assert first.is_file() and len(read_session(first, load_labels=False).operations) == 1
    assert not newer[-1].exists()  # (the prune ran: the oldest of the others went)


def test_on_a_file_system_that_cannot_lock_another_live_naparis_autosave_is_not_pruned(
        monkeypatch):
    """A home folder on NFS without a lock daemon: whether another napari holds an autosave
    cannot be told by its lock, and the autosave of an image another napari (of this host,
    running; or of another host) still had open was pruned as anyone's. Now only one whose
    lock file names a process of this host that ended is."""
    import errno
    import fcntl
    import socket
    import subprocess
    import sys
    import warnings

    from napari_sam.annotate import session_claims
    from napari_sam.annotate.memory_sessions import KEPT_IMAGES, prune_memory_sessions
    from napari_sam.io.dead_temporaries import pid_namespace

    def flock(fd, how):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(session_claims, "_UNLOCKABLE_NOTED", set())
    for i in range(KEPT_IMAGES):
        _autosave_folder(f"{i:016x}", 2 + i)
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    running = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                               stdin=subprocess.PIPE, text=True)
    host, ns = socket.gethostname(), pid_namespace()
    owners = {"c" * 16: f"{running.pid} {host} {ns}", "d" * 16: "4000000 elsewhere",
              "e" * 16: f"{ended} {host} {ns}"}
    folders = {}
    for name, owner in owners.items():
        folders[name] = _autosave_folder(name, 25)  # beyond the newest 20
        (folders[name] / ".image.sam-session.json.lock").write_text(owner + "\n")
        _age(folders[name], 25)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the note that the file system cannot lock)
            removed = prune_memory_sessions()
    finally:
        running.communicate("")
    assert removed == [folders["e" * 16]]  # its napari ended: pruned
    for name in ("c" * 16, "d" * 16):  # before: both pruned
        assert (folders[name] / "image.sam-session.json").is_file()


def test_a_session_resumed_while_autosave_is_off_is_not_pruned(tiny_sam):
    """A session resumed while *Autosave* is off claims no file (until it autosaves), and
    was not counted as used here: the first autosave of another image in this process, with
    more than :data:`KEPT_IMAGES` folders, removed the file of the session open in it."""
    import gc

    from napari_sam.annotate.memory_sessions import KEPT_IMAGES
    from napari_sam.session import read_session

    s = blob_session(tiny_sam)
    commit_at(s, 1, 20, 20)
    s.wait_autosave()
    first = s.autosave_path()
    s.release_session_file()  # (its dock closed; the session gone)
    del s
    gc.collect()
    _age(first.parent, 2)  # written 2 days ago
    newer = [_autosave_folder(f"{i:016x}", 1.1 + i / 100) for i in range(KEPT_IMAGES)]
    resumed = blob_session(tiny_sam)
    resumed.autosave = False
    assert len(resumed.resume().operations) == 1 and resumed.session_path == first
    other = blob_session(tiny_sam)  # (another dock of this napari)
    other.set_image(blob_stack(seed=1), name="other")
    commit_at(other, 1, 20, 20)  # its first autosave prunes
    other.wait_autosave()
    assert other.autosave_path().is_file() and other.autosave_path() != first
    assert first.is_file() and len(read_session(first, load_labels=False).operations) == 1
    assert not newer[-1].exists()  # (the prune ran: the oldest of the others went)
