"""Whose temporary file is dead (io.dead_temporaries, session 41 review): two containers on
one host share the host name and the folder but not their process ids. A writer holds an
exclusive ``flock`` on its file while it writes, and the sweep never removes a file whose
lock is taken, whatever process id its name has; names carry the PID namespace, so a file of
another container is judged by its age, not by a process id that means nothing here."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from dead_process import dead_pid
from napari_sam.io.dead_temporaries import host_tag, pid_namespace, remove_dead
from napari_sam.io.writers import write_atomic

pytestmark = pytest.mark.skipif(os.name == "nt", reason="flock and PID namespaces: POSIX")

#: ``python -c HOLDER FILE``: hold an exclusive flock on FILE until stdin closes.
HOLDER = """
import fcntl, sys
with open(sys.argv[1], "ab") as fh:
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
"""


def _ns_suffix() -> str:
    ns = pid_namespace()
    return f"-{ns}" if ns else ""


def _dead_writers_part(tmp_path, suffix: str):
    """A partial download of ``sam_vit_b.pth`` in ``tmp_path`` (1000 bytes) named for a dead
    process id of this host (``suffix``: its PID namespace's part, or none)."""
    part = tmp_path / f".sam_vit_b.pth.part-{host_tag()}-{dead_pid()}{suffix}"
    part.write_bytes(b"x" * 1000)
    return part


def _kept_while_locked(tmp_path, suffix: str):
    """A partial download named for a dead process id of this host (``suffix``: its PID
    namespace's part, or none), locked by a live writer: not removed while the lock is held;
    returns its path once the writer let the lock go."""
    part = _dead_writers_part(tmp_path, suffix)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(part)], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == "locked\n"
        assert remove_dead(tmp_path / "sam_vit_b.pth", "part") == []
        assert part.read_bytes() == b"x" * 1000
    finally:
        holder.communicate("", timeout=60)
    return part


@pytest.mark.parametrize("form", ["namespace", "before"])
def test_a_file_its_writer_holds_locked_is_not_removed(tmp_path, form):
    """A partial file whose name's process id looks dead here (a writer in another container
    with the same host name, or an id that ran here and exited) but whose writer holds its
    lock is kept; once the lock is let go, it is removed (was: removed mid-download)."""
    suffix = _ns_suffix() if form == "namespace" else ""
    part = _kept_while_locked(tmp_path, suffix)
    assert remove_dead(tmp_path / "sam_vit_b.pth", "part") == [part]
    assert not part.exists()


def test_a_checkpoint_being_written_is_kept_by_a_sweep_meanwhile(tmp_path):
    """``write_atomic`` (a checkpoint save) holds the lock of its temporary file while it
    writes: a sweep that runs meanwhile keeps it, and the save completes."""
    out = tmp_path / "m.pt"
    tmp = tmp_path / f".m.pt.tmp-{host_tag()}-{dead_pid()}{_ns_suffix()}"
    swept = []

    def write(fh):
        fh.write(b"first half ")
        swept.extend(remove_dead(out, "tmp"))
        fh.write(b"second half")

    write_atomic(out, write, tmp=tmp)
    assert swept == []
    assert out.read_bytes() == b"first half second half"


@pytest.mark.skipif(pid_namespace() is None, reason="no /proc/self/ns/pid to read")
def test_names_carry_the_pid_namespace_and_another_ones_files_are_judged_by_age(tmp_path):
    """Two containers' process 1 write two names; a file of another PID namespace of this
    host is removed only once unwritten for 24 h, like another host's (its process id means
    nothing here); this namespace's of a dead process at once."""
    from napari_sam.io.dead_temporaries import tagged_path

    here, ns = host_tag(), pid_namespace()
    assert tagged_path(tmp_path / "m.pt").name == f".m.pt.tmp-{here}-{os.getpid()}-{ns}"
    other = str(int(ns) + 1)
    made = {
        "ours_dead": tmp_path / f".m.pt.tmp-{here}-{dead_pid()}-{ns}",
        "other_ns_pid1": tmp_path / f".m.pt.tmp-{here}-1-{other}",
        "other_ns_dead": tmp_path / f".m.pt.tmp-{here}-{dead_pid()}-{other}",
        "other_ns_old": tmp_path / f".m.pt.tmp-{here}-2-{other}",
        "not_ours": tmp_path / f".m.pt.tmp-{here}-x-{ns}",
    }
    for path in made.values():
        path.write_bytes(b"partial")
    day_ago = time.time() - 25 * 3600
    os.utime(made["other_ns_old"], (day_ago, day_ago))
    assert sorted(remove_dead(tmp_path / "m.pt")) == sorted(
        [made["ours_dead"], made["other_ns_old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        made[k].name for k in ("other_ns_pid1", "other_ns_dead", "not_ours"))


def test_a_locked_file_is_kept_where_flock_needs_a_writable_descriptor(tmp_path, monkeypatch):
    """NFS grants an exclusive ``flock`` only on a descriptor open for writing: the sweep
    opened the file read-only, got EBADF, took it for a file system without locks, and
    removed a running writer's file."""
    import errno
    import fcntl

    from napari_sam.io import dead_temporaries

    real = fcntl.flock

    def nfs_flock(fd, op):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY and op & fcntl.LOCK_EX:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real(fd, op)

    monkeypatch.setattr(dead_temporaries.fcntl, "flock", nfs_flock)
    part = _kept_while_locked(tmp_path, _ns_suffix())
    os.chmod(part, 0o444)  # not writable (another user's, say): asked read-only, still removed
    assert remove_dead(tmp_path / "sam_vit_b.pth", "part") == [part]


@pytest.mark.parametrize(("code", "kept"), [("EACCES", True), ("EAGAIN", True),
                                            ("ENOLCK", False)])
def test_a_file_whose_lock_is_held_by_another_is_kept_whatever_errno_says_held(
        tmp_path, monkeypatch, code, kept):
    """``flock`` emulated with ``fcntl`` locks (where there is no flock(2)) says a lock held
    by another with EACCES as well as EAGAIN, as io.lock_errors defines for every lock of
    napari-sam: the sweep took only BlockingIOError (EAGAIN) for held, EACCES for a file
    system without locks, and removed the running writer's file. ENOLCK (no locks there):
    its name decides, a dead process's file is removed."""
    import errno

    from napari_sam.io import dead_temporaries

    def flock(fd, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    monkeypatch.setattr(dead_temporaries.fcntl, "flock", flock)
    part = _dead_writers_part(tmp_path, _ns_suffix())
    assert remove_dead(tmp_path / "sam_vit_b.pth", "part") == ([] if kept else [part])
    assert part.exists() is kept
