"""Several saved sessions of one image: its session file and the alternates
(``<image>.session-2.sam-session.json``, :mod:`napari_sam.annotate.session_claims`) that docks
wrote while another dock had that file.

Found by a walkthrough: a second dock on an image autosaved in ``.session-2``; closed and
opened again, it was offered the first dock's session (its labels layer still held its own
``.session-2`` labels: the dock only looked for them in the main file), resumed it into a second
labels layer drawn over the first, and went on committing into the main file while
``.session-2`` was left behind; a third window was offered one of the two without a word of
the other. Now the dock that finds its labels in an alternate goes on in that file
(:func:`session_holding`), and the offer names every session of the image and says that they
are separate (:func:`resume_offer`): napari-sam has no merge of two sessions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_sam import session as S

from .ended_sessions import (
    ended_without_closing,
    ended_words,
    maybe_open_elsewhere,
    maybe_open_words,
)

__all__ = ["other_sessions_note", "resume_offer", "session_holding"]


def session_holding(files: Sequence[Path], candidates: Sequence, image_hash: str
                    ) -> tuple[int, S.Session] | None:
    """Which of ``candidates`` ((Z, Y, X) labels arrays) holds exactly the labels of one of the
    session ``files`` (in their order: the image's session file, then its alternates) made on
    the pixels whose :func:`napari_sam.session.image_hash` is ``image_hash``: ``(index,
    session)``, the session read with its labels (its ``path``: the file), else None."""
    for path in files:
        try:
            sess = S.read_session(path)
        except (S.SessionError, OSError):
            continue
        if sess.labels is None or sess.image.get("hash") != image_hash:
            continue
        for i, data in enumerate(candidates):
            data = np.asarray(data)
            if sess.labels.shape == data.shape and np.array_equal(sess.labels, data):
                return i, sess
    return None


def _summaries(files: Sequence[Path]) -> list[tuple[Path, str]]:
    """``(file, its summary)`` of the readable session ``files`` (labels not read)."""
    out = []
    for path in files:
        try:
            out.append((Path(path), S.read_session(path, load_labels=False).summary()))
        except (S.SessionError, OSError):
            continue
    return out


_ALTERNATE = re.compile(r".+\.session-\d+" + re.escape(S.SESSION_FILE_SUFFIX))


def _alternate(path: Path) -> str:
    """What the summary of the session file ``path`` adds when it is an alternate."""
    return "; made while another dock had the file" if _ALTERNATE.fullmatch(path.name) else ""


def _listed(found: Sequence[tuple[Path, str]], full: bool) -> str:
    names = [f"{p if full else p.name} ({summary}{_alternate(p)})" for p, summary in found]
    return ", ".join(names[:-1]) + " and " + names[-1]


def resume_offer(newest: Path, files: Sequence[Path], image_name: str) -> tuple[str, str] | None:
    """The dock's offer to resume the session file ``newest`` (what *Resume* loads) and its
    notification, naming the other sessions of the image among ``files`` (``newest`` too) and
    saying that they are separate; None when ``newest`` cannot be read."""
    found = _summaries([newest] + [p for p in files if Path(p) != Path(newest)])
    if not found or found[0][0] != Path(newest):
        return None
    offer, note = _offer(newest, found, image_name)
    ended = _ended(newest)  # napari killed: say so, and what resuming recovers
    return (f"{ended}. {offer}", f"{ended}. {note}") if ended else (offer, note)


def _ended(path: Path) -> str:
    """:func:`~napari_sam.annotate.ended_sessions.ended_words` of the session file ``path``
    when its napari ended without closing it;
    :func:`~napari_sam.annotate.ended_sessions.maybe_open_words` when whether another napari
    has it open cannot be told (a file system that cannot lock); else ""."""
    ended = ended_without_closing(path)
    if not ended and not maybe_open_elsewhere(path):
        return ""
    try:
        sess = S.read_session(path, load_labels=False)
    except (S.SessionError, OSError):
        return ""
    return ended_words(sess) if ended else maybe_open_words(sess, path)


def _offer(newest: Path, found: Sequence[tuple[Path, str]], image_name: str
           ) -> tuple[str, str]:
    if len(found) == 1:
        summary = found[0][1]
        return (f"A saved session exists for this image ({summary}): resume it?",
                f"A saved session of '{image_name}' exists ({summary}): Resume or Ignore it in "
                "the dock's Session panel.")
    separate = ("They are separate sessions (napari-sam cannot merge them): Resume loads the "
                f"newest, {Path(newest).name}; File > IO Utilities > Load SAM session... opens "
                "another (its labels go into a labels layer of their own).")
    return (f"{len(found)} saved sessions for this image: {_listed(found, False)}. {separate} "
            "Resume it?",
            f"{len(found)} saved sessions of '{image_name}': {_listed(found, True)}. {separate} "
            "Resume or Ignore it in the dock's Session panel.")


def other_sessions_note(going_on: Path, files: Sequence[Path]) -> str:
    """After a dock opened again goes on with the session in ``going_on``: the other saved
    sessions of the image among ``files``, which stay separate ("" when there is none)."""
    found = _summaries([p for p in files if Path(p) != Path(going_on)])
    if not found:
        return ""
    names = "; ".join(f"{p} ({summary}{_alternate(p)})" for p, summary in found)
    other = ("Another saved session of this image is" if len(found) == 1
             else f"{len(found)} other saved sessions of this image are")
    return (f"This dock goes on with its session in {Path(going_on).name}. {other} separate "
            f"(napari-sam cannot merge them): {names}. File > IO Utilities > Load SAM "
            "session... opens one.")
