"""The error an annotation session raises for something the user can fix (its message says
how); the GUI shows it as a notification, a script sees the exception."""

from __future__ import annotations

__all__ = ["UserError", "sentence"]


class UserError(Exception):
    """Something the user can fix; the message says how. ``level`` is "warning" or "error"."""

    def __init__(self, message: str, level: str = "warning"):
        super().__init__(message)
        self.level = level


def sentence(text) -> str:
    """``text`` (an error or a string) ending with one full stop, or a question or exclamation
    mark it already has ("... is it a session file?", not "...?.")."""
    text = str(text).rstrip()
    return text if text.endswith((".", "?", "!")) else text + "."
