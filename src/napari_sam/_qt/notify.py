"""Turn problems into napari notifications that say what to do next, never tracebacks.

Handlers of the widget are wrapped with :func:`guarded`: a :class:`UserError` (or one of the
known error types of the core) becomes a warning or error notification with its message; any
other exception becomes an error notification naming it, and its traceback goes to the
``napari_sam`` logger at debug level only.
"""

from __future__ import annotations

import contextlib
import functools
import logging

from napari_sam.annotate.errors import Refusal, UserError
from napari_sam.io.write_errors import write_problem
from napari_sam.memory import is_out_of_memory

__all__ = ["UserError", "describe", "guarded", "job_end_words", "job_error_text", "not_again",
           "report", "status_text", "warn", "info"]

logger = logging.getLogger("napari_sam")

_SEEN: list[str | None] = []  # what report() does not notify again (not_again)


def warn(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _known_message(err: BaseException) -> str | None:
    """Messages of core errors that already say what to do."""
    from napari_sam.annotate.image_source import UnsupportedImage

    try:
        from napari_sam.models.registry import ModelDownloadError
    except ImportError:  # pragma: no cover - registry not installed
        ModelDownloadError = ()  # noqa: N806
    if isinstance(err, ModelDownloadError):
        return (
            f"The model could not be downloaded. {err} Meanwhile you can pick the bundled "
            "'demo' model or a checkpoint file in 'Model'."
        )
    if is_out_of_memory(err):
        if _on_a_gpu(err):
            return (
                f"Out of memory ({type(err).__name__}: {err}). Pick 'cpu' in 'Device', close "
                "other programs using the GPU, or use a smaller model or image; then try again."
            )
        return (
            f"Out of memory ({type(err).__name__}: {err}). This computer (or this job's "
            "memory limit) has too little free memory for it: close other programs and images, "
            "pick a smaller model, or crop the image (fewer slices, a smaller region); then "
            "try again."
        )
    if isinstance(err, UnsupportedImage):
        return str(err)
    written = write_problem(err, instead=(
        "pick a folder on another disk (for the 'Embedding store': or clear it to keep the "
        "embeddings in memory), then try again"))
    if written is not None:  # a full or read-only disk
        return f"{written[0].upper()}{written[1:]}."
    if isinstance(err, FileNotFoundError):
        return f"{err}. Pick another model or a checkpoint file in 'Model'."
    if isinstance(err, (ValueError, TypeError, OverflowError)):
        return str(err)
    return None


def _on_a_gpu(err: BaseException) -> bool:
    """Whether out-of-memory ``err`` is a GPU's (CUDA, MPS), not the computer's memory."""
    text = str(err).lower()
    return "cuda" in text or "mps" in text or "gpu" in text


def describe(err: BaseException) -> tuple[str, str]:
    """``(level, message)`` for ``err``: level "warning" or "error"; the message says what
    happened and what to do next (see the module docstring)."""
    if isinstance(err, UserError):
        return err.level, str(err)
    message = _known_message(err)
    if message is None:
        logger.debug("napari-sam: unexpected error", exc_info=err)
        message = (
            f"Segment Anything: unexpected {type(err).__name__}: {err}. Please report it at "
            "the project's issue tracker (run napari with --log-level debug for details)."
        )
    return "error", message


def report(err: BaseException) -> str:
    """Show ``err`` as a napari notification (see the module docstring); returns the
    message shown."""
    from napari.utils.notifications import show_error, show_warning

    level, message = describe(err)
    if message not in _SEEN:
        (show_error if level == "error" else show_warning)(message)
    return message


@contextlib.contextmanager
def not_again(message: str | None):
    """Within it, :func:`report` shows no notification saying ``message`` (one the user has
    seen already: e.g. an image refused again, for the same reason, when the viewer's axes
    are renamed); its handler's status line is still set. ``None``: every one is shown."""
    _SEEN.append(message)
    try:
        yield
    finally:
        _SEEN.pop()


def status_text(err: BaseException, message: str) -> str:
    """What the dock's status line says of ``err``, whose notification says ``message``: the
    same, but for a failed download a short line (its message, with the URL, the path to
    put the file at by hand and its checksums, filled half the dock, and its unbreakable URL
    widened it for good)."""
    from napari_sam.models.download import ModelDownloadError

    if isinstance(err, ModelDownloadError):
        return (f"The model could not be downloaded ({err.summary}); the notification says "
                "how to install its file by hand.")
    return message


def job_end_words(err: BaseException) -> str:
    """How a job that ended with ``err`` ended, in words: "was refused" for a
    :class:`~napari_sam.annotate.errors.Refusal` (it did not start: too little memory),
    "failed" for anything else."""
    return "was refused" if isinstance(err, Refusal) else "failed"


def job_error_text(description: str, phase: str, err: BaseException, message: str) -> str:
    """The status line of job ``description`` that ended with ``err`` during ``phase`` (""
    before its first), ``message`` what :func:`status_text` says of it: "Failed:
    Computing SAM embeddings (loading the model 'vit_b'). ...", but a
    :class:`~napari_sam.annotate.errors.Refusal` says only its own words ("Not started:
    ... needs about 167 MB of memory, more than the 150 MB free here ... Instead: ..."):
    it was "Failed: ... Not started: ...", a failure of a job that did not start."""
    if isinstance(err, Refusal):
        return message
    during = f" ({phase})" if phase else ""  # e.g. "(loading the model 'vit_b')"
    return f"Failed: {description}{during}. {message}"


def guarded(fn):
    """Decorator: run a handler, report exceptions as notifications, return None on error.

    A :class:`UserError` (an action refused, e.g. "Nothing to undo.") also becomes the status
    line of the handler's annotation session (the handler's ``controller``, or the handler's
    object itself where it has ``refused``), so the status never keeps a line the refusal
    made stale."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - every error becomes a notification
            message = report(err)
            owner = args[0] if args else None
            refused = getattr(getattr(owner, "controller", owner), "refused", None)
            if isinstance(err, UserError) and callable(refused):
                refused(message)
            return None

    return wrapper
