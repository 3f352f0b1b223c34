"""What the errors of ``flock`` say: another handle holds the lock (:data:`HELD_ERRNOS`,
:func:`lock_is_held`), or the file system cannot lock at all (any other error: ENOLCK on an
NFS mount without a lock daemon, ENOSYS or EOPNOTSUPP on a Lustre mount without ``flock``),
and the words of that error (:func:`lock_error_text`). One definition for every lock of
napari-sam: the batch's output locks (:class:`napari_sam.batch.jobs.OutputLock`), the
annotation session's claims and contrast store holds
(:mod:`napari_sam.annotate.file_locks`), the writer locks of temporaries
(:func:`napari_sam.io.dead_temporaries.remove_unless_held`)."""

from __future__ import annotations

import errno

__all__ = ["HELD_ERRNOS", "lock_error_text", "lock_is_held"]

#: What ``flock`` answers when another handle holds the lock (``LOCK_NB``); any other error
#: means the file system cannot lock at all.
HELD_ERRNOS = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES})


def lock_is_held(exc: OSError) -> bool:
    """Whether the error ``exc`` of ``flock`` says another handle holds the lock (else: the
    file system cannot lock, and whether one holds it cannot be told)."""
    return exc.errno in HELD_ERRNOS


def lock_error_text(exc: OSError) -> str:
    """What ``flock``'s error says (``No locks available``), or its errno's name."""
    return exc.strerror or errno.errorcode.get(exc.errno, str(exc.errno))
