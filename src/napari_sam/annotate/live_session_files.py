"""Session files another live session autosaves in, and this session's own claims when its
autosave is off (a mixin of :class:`~napari_sam.annotate.session_log.SessionLog`).

Only one live session autosaves into a session file (:mod:`napari_sam.annotate.session_claims`),
but an explicit "Load session..." of another dock's (or process's) live file was carried
out: the loading session went on with that log in an alternate file while the other went on
in the file, one log forked into two diverging files; "Save session..." onto such a file
wrote it under the other session's autosave, each replacing the other's commits. Both are
refused now, naming the file, who writes it and what to do (:meth:`LiveSessionFiles.
refuse_live_file`), before anything is read or written.

A session whose autosave is off writes no session file, so it holds no claim: turning
autosave off lets its files go (once the write under way ends), and loading or resuming a
session with autosave off does not claim the file, so another dock may resume it. Turning
autosave on again claims the file at the next autosave; while another session holds it by
then, this one autosaves in an alternate and says so.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError
from .session_claims import claim_holder

__all__ = ["LiveSessionFiles"]

#: what a refused action left undone, by action ("loaded", "saved")
_WHY = {
    "loaded": ("loading it here too would carry its log on in two docks at once, each in "
               "its own file. Close that dock (or that napari) first, then load it here; to "
               "work on a copy beside it, save one with that dock's 'Save session...' and "
               "load the copy. Nothing was changed."),
    "saved": ("saving over it would replace that session's commits with these (and its next "
              "autosave would replace these). Save under another name, or close that dock "
              "(or that napari) first. Nothing was written."),
}


class LiveSessionFiles:
    """Refusals of other live sessions' files, and autosave's claims following the switch."""

    @property
    def autosave(self) -> bool:
        """Whether the session is autosaved after each commit, undo and redo (the dock's
        'Autosave next to the image' box). Turning it off lets this session's session files
        go (another dock may resume and autosave them); the next autosave after turning it
        on claims its file again."""
        return getattr(self, "_autosave_on", True)

    @autosave.setter
    def autosave(self, on: bool) -> None:
        self._autosave_on = bool(on)
        claims = getattr(self, "_claims", None)
        if not on and claims is not None:
            claims.release()

    def refuse_live_file(self, path, done: str) -> None:
        """Raise ``UserError`` when another live session (another dock, another napari)
        autosaves into the session file ``path``: it cannot be ``done`` ("loaded", "saved")
        here. This session's own file is not refused."""
        if self._claims.taken(Path(path)):
            raise UserError(f"Not {done}: {path} is being autosaved by "
                            f"{claim_holder(Path(path))} right now: {_WHY[done]}")
