"""What ``flock``'s errors say is written once, in the core (``napari_sam.io.lock_errors``):
the batch's output locks had ``BUSY_ERRNOS`` and the annotation session's file locks a copy,
``HELD_ERRNOS`` (and the words of an error twice), which could drift apart: one layer taking
an error for "held by another" that the other took for "this file system cannot lock"."""

from __future__ import annotations

import errno
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "napari_sam"


def test_the_errnos_of_a_held_lock_are_defined_once_in_the_core():
    found = sorted(str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                   if re.search(r"\bEWOULDBLOCK\b", p.read_text("utf-8")))
    assert found == ["io/lock_errors.py"], found


def test_a_held_lock_is_told_from_a_file_system_that_cannot_lock():
    from napari_sam.io.lock_errors import lock_error_text, lock_is_held

    for code in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        assert lock_is_held(OSError(code, "busy"))
    for code in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
        assert not lock_is_held(OSError(code, "cannot lock"))
    assert lock_error_text(OSError(errno.ENOLCK, "No locks available")) == "No locks available"
    assert lock_error_text(OSError(errno.ENOLCK, None)) == "ENOLCK"
