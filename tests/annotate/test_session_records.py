"""Each commit's autosave asks whose session file it is (its image record) on the calling
thread, napari's UI thread in the dock: the file is not parsed there after the session's own
write (the autosave worker parsed what it wrote), and a file someone else changed is read
again, even with its size and time stamp kept."""

from __future__ import annotations

import json
import os
import threading

from napari_sam import session as S
from napari_sam.annotate import autosave_writer
from napari_sam.annotate.autosave_writer import AutosaveWriter


def _commit(s, z: int, r: int = 20, c: int = 20) -> None:
    s.go_to_slice(z)
    s.add_point(z, r, c)
    s.update_preview()
    s.commit()


def _spy_session_parses(monkeypatch) -> list:
    """The threads that parse a session file's JSON (``json.loads`` of its text)."""
    threads, loads = [], json.loads

    def spy(text, *args, **kwargs):
        if S.FORMAT in (text.decode("utf-8", "replace") if isinstance(text, bytes) else text):
            threads.append(threading.get_ident())
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spy)
    return threads


def test_the_ui_thread_parses_no_session_file_after_its_own_writes(session, tmp_path,
                                                                   monkeypatch):
    """Before: every commit's autosave parsed the whole session file on the UI thread
    (about 3 ms for 300 commits here, 30+ ms under load; benchmarks/bench_session_records.py)."""
    s = session
    s.path = str(tmp_path / "blobs.tif")
    monkeypatch.setattr(autosave_writer, "BACKGROUND_BYTES", 0)  # written on the worker
    later = []
    s.autosave_writer = AutosaveWriter(later.append)  # (as the dock's: news posted)
    parses = _spy_session_parses(monkeypatch)
    for z in (1, 2, 3, 4):
        _commit(s, z, 10 + 10 * z)
        s.wait_autosave()
    assert len(S.read_session(S.session_file_for(s.path)).operations) == 4
    ui = threading.get_ident()
    assert parses.count(ui) == 1  # (the read just above: the test's own)
    assert len(parses) >= 5  # the worker parsed each file it wrote


def test_a_file_replaced_with_its_size_and_time_kept_is_read_again(session, tmp_path):
    """Another layer's session written over the file within one clock tick, of the same
    size: a cache keyed by inode, time stamp and size returned this layer's record (it was
    removed for that); the bytes are compared instead."""
    s = session
    s.path = str(tmp_path / "blobs.tif")
    _commit(s, 1)
    beside = S.session_file_for(s.path)
    assert s.own_session_file(beside) == beside
    st = os.stat(beside)
    record = json.loads(beside.read_text())
    image = record["image"]
    record["image"] = dict(image, name="blob2", hash="f" * len(image["hash"]))
    text = json.dumps(record, indent=2) + "\n"
    original = beside.read_text()
    text += " " * (len(original) - len(text))  # the same size
    assert len(text) == len(original)
    beside.write_text(text)  # in place: the same inode
    os.utime(beside, ns=(st.st_atime_ns, st.st_mtime_ns))  # the same time stamp
    now = os.stat(beside)
    assert (now.st_ino, now.st_size, now.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    own = s.own_session_file(beside)
    assert own != beside and own.name == "blobs.tif.blobs.sam-session.json"
