"""The library's warnings on the terminal while a command runs (:func:`library_warnings_shown`):
what a ``napari_sam.*`` logger warns (a model file downloaded again, an embedding store not
reused, a note of loading a checkpoint) is printed to stderr as a ``napari-sam: MESSAGE`` line,
above any progress bar. Without a handler of ours, Python's last-resort handler printed them
raw, glued to the line of a progress bar (``train``'s epoch bar), and nowhere a caller's
capture of stderr (tests) could see them."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

from napari_sam.cli.errors import PROG

#: The logger whose records (and its children's: ``napari_sam.models.registry``, ...) are shown.
LIBRARY_LOGGER = "napari_sam"


class TerminalLines(logging.Handler):
    """Prints each record as ``napari-sam: MESSAGE`` on ``sys.stderr`` (the stream of the
    moment: a test's capture too) with ``tqdm.write``, which clears the progress bars drawn
    there, prints the line and draws them again."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(f"{PROG}: {self.format(record)}", file=sys.stderr)
        except Exception:  # noqa: BLE001  (logging's rule: a handler never raises)
            self.handleError(record)


@contextlib.contextmanager
def library_warnings_shown(level: int = logging.WARNING) -> Iterator[TerminalLines]:
    """While the block runs, print the records of ``level`` and above of the library's loggers
    (:data:`LIBRARY_LOGGER`) to stderr (:class:`TerminalLines`); they still reach the handlers
    of the root logger (an application's, pytest's), and the filters of a logger (the demo
    model's line the command prints itself) still drop theirs first."""
    handler = TerminalLines(level)
    logger = logging.getLogger(LIBRARY_LOGGER)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
