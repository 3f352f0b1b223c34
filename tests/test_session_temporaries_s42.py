"""The hidden temporaries of a session write killed half-way go at the next session saved or
loaded in their folder once their writer is provably dead (``napari_sam.session_temporaries``),
not only when the same session file is written again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from napari_sam.session import Session, read_session, write_session
from napari_sam.session_temporaries import remove_dead_session_temporaries, session_tmp_name

_CHILD = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    from napari_sam.session import Session, write_session

    def stuck(src, dst):  # the TIFF is written whole; the save never gets further
        print("written", flush=True)
        time.sleep(600)

    os.replace = stuck
    write_session(Session(image={"shape": [2, 64, 64]}, model={"name": "vit_b"},
                          labels=np.ones((2, 64, 64), np.uint16)), sys.argv[1])
""")


def _saving(path):
    """A process saving a session to ``path``, stopped after its labels TIFF is written."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], env=env,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    return proc


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _session(value: int) -> Session:
    return Session(image={"shape": [1, 8, 8]}, model={"name": "vit_b"},
                   labels=np.full((1, 8, 8), value, np.uint16))


def test_a_save_killed_is_cleaned_by_the_next_save_in_its_folder(tmp_path, monkeypatch):
    """``kill -9`` during *Save session...* to ``work.json``, never saved to again: its
    hidden label TIFF (a whole copy of the labels) stayed beside it for good. A live
    writer's temporary is kept."""
    from napari_sam import session_temporaries

    proc = _saving(tmp_path / "work.json")
    try:
        left = _hidden(tmp_path)
        assert len(left) == 1 and left[0].startswith(".work.labels-")
        write_session(_session(1), tmp_path / "other.json")  # its writer runs: kept
        assert _hidden(tmp_path) == left
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    write_session(_session(2), tmp_path / "other.json")  # (looked at a moment ago)
    assert _hidden(tmp_path) == left
    monkeypatch.setattr(session_temporaries, "_SWEPT_AT", {})  # 10 minutes later
    write_session(_session(2), tmp_path / "other.json")
    assert _hidden(tmp_path) == []
    assert not (tmp_path / "work.json").exists()
    assert read_session(tmp_path / "other.json").labels.max() == 2


def test_loading_a_session_in_the_folder_removes_them_too(tmp_path):
    write_session(_session(3), tmp_path / "kept.json")
    proc = _saving(tmp_path / "work.json")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_hidden(tmp_path)) == 1
    assert read_session(tmp_path / "kept.json").labels.max() == 3  # a plain read: kept
    assert len(_hidden(tmp_path)) == 1
    assert read_session(tmp_path / "kept.json", sweep_temporaries=True).labels.max() == 3
    assert _hidden(tmp_path) == []


def test_another_hosts_temporaries_wait_a_day_and_others_files_stay(tmp_path):
    """A temporary of another host or container (or a random name of before) goes only once
    unwritten for 24 hours; a file of another form is never touched."""
    ours = session_tmp_name(tmp_path / "a.json").name
    foreign = tmp_path / f".a.json.{ours[-16:-10]}ffffff.tmp"
    if foreign.name == ours:
        foreign = tmp_path / f".a.json.{ours[-16:-10]}000000.tmp"
    old_foreign = tmp_path / ".b.sam-session.labels-0123456789ab.tif.00aa11bb22cc.tmp"
    other_form = tmp_path / ".notes.txt.00aa11bb22cc.tmp"
    for p in (foreign, old_foreign, other_form):
        p.write_text("x")
    day = time.time() - 25 * 3600
    os.utime(old_foreign, (day, day))
    os.utime(other_form, (day, day))
    assert remove_dead_session_temporaries(tmp_path) == [old_foreign]
    assert foreign.exists() and other_form.exists()


def test_an_autosave_lists_its_folder_once_per_commit(tmp_path, monkeypatch):
    """Every write of a session file listed its folder twice (the dead temporaries of any
    session file there, and the copies naming its old TIFF): 56 ms per commit beside 20,000
    files. The temporaries are looked for at the first write in a folder (then every 10
    minutes)."""
    from napari_sam import session_temporaries

    monkeypatch.setattr(session_temporaries, "_SWEPT_AT", {})
    listed = []
    scandir = os.scandir

    def counting(path="."):
        listed.append(os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", counting)
    for value in range(1, 6):  # five commits, each a new labels TIFF: the old one goes
        write_session(_session(value), tmp_path / "auto.json")
    assert listed.count(str(tmp_path)) == 1 + 4, listed
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tif") == [
        next(p.name for p in tmp_path.iterdir() if p.suffix == ".tif")]


@pytest.mark.skipif(os.name == "nt", reason="flock: POSIX")
def test_a_session_labels_tiff_is_written_under_its_writers_lock(tmp_path, monkeypatch):
    """The hidden temporary of a session's label TIFF was written without the writer's
    ``flock``: a sweep of another container (whose process ids mean nothing here) could
    remove it mid-write. A sweep that runs while it is written keeps it now."""
    import tifffile

    from napari_sam.io.dead_temporaries import remove_unless_held

    kept, real = [], tifffile.imwrite

    def write_and_sweep(tmp, *args, **kwargs):
        real(tmp, *args, **kwargs)
        kept.append((os.path.basename(tmp), remove_unless_held(tmp) is False))

    monkeypatch.setattr(tifffile, "imwrite", write_and_sweep)
    write_session(_session(7), tmp_path / "a.json")
    assert [k for name, k in kept if ".labels-" in name] == [True], kept
    assert read_session(tmp_path / "a.json").labels.max() == 7


def test_on_windows_this_hosts_dead_temporaries_go_after_a_day(tmp_path, monkeypatch):
    """Windows cannot be asked harmlessly whether a process runs (``is_running`` says True
    for every one): this host's temporaries of a killed write were kept for good there. They
    go once unwritten for 24 hours now, as another host's."""
    from napari_sam.io import dead_temporaries

    old = session_tmp_name(tmp_path / "a.json")  # this process's name: its writer "runs"
    new = session_tmp_name(tmp_path / "b.json")
    for p in (old, new):
        p.write_text("x")
    day = time.time() - 25 * 3600
    os.utime(old, (day, day))
    class WindowsOs:  # what io.dead_temporaries sees of os on Windows
        name = "nt"

        def __getattr__(self, attr):
            return getattr(os, attr)

    monkeypatch.setattr(dead_temporaries, "os", WindowsOs())
    monkeypatch.setattr(dead_temporaries, "fcntl", None)  # (no flock on Windows)
    gone = remove_dead_session_temporaries(tmp_path)
    assert gone == [old] and new.exists()


def test_a_users_files_named_like_temporaries_stay(tmp_path):
    """Any ``.<name>.json.<12 hex>.tmp`` a day old was removed by the next session saved or
    loaded in the folder (a user's or another tool's file, named like a temporary of
    another host's). Only a session file's are now: an autosave's name, or the temporary of
    a ``*.json`` there that is a session file, or of the label TIFF of one."""
    write_session(_session(1), tmp_path / "work.json")
    mine = [tmp_path / ".settings.json.0123456789ab.tmp",
            tmp_path / ".scan.labels-0123456789ab.tif.abcdefabcdef.tmp"]
    theirs = [tmp_path / ".work.json.0123456789ab.tmp",
              tmp_path / ".work.labels-0123456789ab.tif.abcdefabcdef.tmp",
              tmp_path / ".img.tif.sam-session.json.0123456789ab.tmp"]
    (tmp_path / "settings.json").write_text('{"theme": "dark"}')
    day = time.time() - 25 * 3600
    for p in mine + theirs:
        p.write_text("x")
        os.utime(p, (day, day))
    assert sorted(remove_dead_session_temporaries(tmp_path)) == sorted(theirs)
    assert all(p.read_text() == "x" for p in mine)
