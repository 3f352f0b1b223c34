"""A session file claimed by another process, for the session-claim tests (imported as a
plain module: tests/ has no packages)."""

from __future__ import annotations

import contextlib
import subprocess
import sys


@contextlib.contextmanager
def another_process_claims(path, kill: bool = False):
    """A Python process that claims the session file ``path``
    (``session_claims.claim_session_file``) and holds it while the block runs; yields the
    process (its ``pid``). Afterwards it ends: killed (``kill``) or by closing its input."""
    code = ("import sys; from napari_sam.annotate.session_claims import claim_session_file; "
            f"c = claim_session_file({str(path)!r}); print(c is not None, flush=True); "
            "sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "True"
        yield other
    finally:
        if kill:
            other.kill()
            other.wait()
        else:
            other.communicate("")


def commit_at(s, z: int, r: int, c: int) -> None:
    """Session ``s``: a click at (``r``, ``c``) on slice ``z``, previewed and committed."""
    s.go_to_slice(z)
    s.add_point(z, r, c)
    s.update_preview()
    s.commit()


def on_image(session, image):
    """``session``, its image's path set to ``image`` (its session file goes beside it)."""
    session.path = str(image)
    return session
