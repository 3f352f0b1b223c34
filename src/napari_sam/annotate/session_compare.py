"""Whether two sessions hold the same work: their pending prompts (:func:`same_prompts`: a
session loaded twice keeps its own prompts), or a session file and a session loaded
(:func:`holds_the_same_work`: a copy saved with *Save session...*, so that autosave may go on
in the autosave file without keeping it aside). Used by
:meth:`napari_sam.annotate.session_log.SessionLog.load_session`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_sam import session as S

__all__ = ["holds_the_same_work", "same_prompts"]


def same_prompts(a: dict, b: dict) -> bool:
    """Whether two pending-prompt records ({"points", "labels", "boxes"}) hold the same
    prompts: labels exactly, coordinates to 1e-3 px (napari's layers hold float32)."""
    def arr(d, key):
        return np.asarray(d.get(key) or [], np.float64)

    for key in ("points", "boxes"):
        x, y = arr(a, key), arr(b, key)
        if x.shape != y.shape or not np.allclose(x, y, atol=1e-3, rtol=0):
            return False
    return np.array_equal(arr(a, "labels"), arr(b, "labels"))


def holds_the_same_work(path: Path, sess: S.Session) -> bool:
    """Whether the session file at ``path`` holds ``sess``'s work: its commits, labels and
    base labels (a copy saved with *Save session...*), so that autosave may go on there
    without keeping it aside. Pending prompts are not compared: the autosave is written at
    commits, undo, redo and painting, so it need not hold the clicks a saved copy kept
    uncommitted (lost work is committed work, which is compared)."""
    if not path.is_file():
        return False
    try:
        other = S.read_session(path)
    except S.SessionError:
        return False

    def same(a, b) -> bool:
        return (a is None) == (b is None) and (a is None or np.array_equal(a, b))

    def text(value) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    return (text(other.operations) == text(sess.operations)
            and same(other.labels, sess.labels) and same(other.base, sess.base))
