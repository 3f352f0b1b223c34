"""How the command reports problems: :class:`CLIError` (printed as ``napari-sam: error: ...``
with its exit code), usage errors (exit code 2: the usage line, then the error line, whether
argparse or a check after parsing found them) and one-line errors and notes on stderr."""

from __future__ import annotations

import sys

PROG = "napari-sam"


class CLIError(Exception):
    """An error to print as ``napari-sam: error: ...`` with exit code ``code``."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def print_error(msg: str) -> None:
    """Print ``napari-sam: error: MSG`` (on one line) to stderr."""
    print(f"{PROG}: error: {' '.join(str(msg).split())}", file=sys.stderr)


def print_note(msg: str) -> None:
    """Print ``napari-sam: MSG`` to stderr."""
    print(f"{PROG}: {msg}", file=sys.stderr)


def print_usage_error(command: str | None, msg: str) -> None:
    """Print a usage error to stderr as every command does: ``usage: napari-sam COMMAND --help``
    (``napari-sam --help`` without a command), then ``napari-sam: error: MSG`` on one line."""
    print(f"usage: {PROG}{' ' + command if command else ''} --help", file=sys.stderr)
    print_error(msg)
