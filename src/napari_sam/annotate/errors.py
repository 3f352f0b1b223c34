"""The error an annotation session raises for something the user can fix (its message says
how); the GUI shows it as a notification, a script sees the exception."""

from __future__ import annotations

__all__ = ["Refusal", "UserError", "sentence"]


class UserError(Exception):
    """Something the user can fix; the message says how. ``level`` is "warning" or "error"."""

    def __init__(self, message: str, level: str = "warning"):
        super().__init__(message)
        self.level = level


class Refusal(UserError):
    """A job that was not started, or stopped before it changed anything, because it could
    not succeed here (e.g. it would not fit in the memory free:
    :mod:`~napari_sam.annotate.memory_checks`); the message says why, with numbers, and what
    to do instead. The GUI says it as the refusal it is, not as a job that failed, also
    where the job's own thread raised it (its first check)."""


def sentence(text) -> str:
    """``text`` (an error or a string) ending with one full stop, or a question or exclamation
    mark it already has ("... is it a session file?", not "...?.")."""
    text = str(text).rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."
