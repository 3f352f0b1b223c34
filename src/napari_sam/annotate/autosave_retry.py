"""Autosave retrying on its own after a failed write (a full disk, a folder made read-only, a
share gone away), and saying so (a mixin of
:class:`~napari_sam.annotate.annotation_session.AnnotationSession`, before
:class:`~napari_sam.annotate.session_log.SessionLog`).

Before, a failed autosave (beside the image and under the cache folder) turned autosave off
until the user ticked the box again: space freed or the share back, nothing was written until
they did, and the status only reminded them. Now autosave stays on and tries again at the
next commit, undo, redo or brush stroke, and on a timer (the dock's:
:meth:`AutosaveRetry.autosave_retry_in`, :meth:`AutosaveRetry.retry_autosave`) after
:data:`RETRY_FIRST_S` seconds, twice as long after each failure up to :data:`RETRY_MAX_S`.
The status line says that it failed, why, and when it tries again; a warning says so the
first time; once a write succeeds again, the status line and a notification say so.
"""

from __future__ import annotations

import time
from pathlib import Path

from napari_sam.words import counted

__all__ = ["RETRY_EARLY_S", "RETRY_FIRST_S", "RETRY_MAX_S", "AutosaveRetry", "retry_words",
           "without_failure"]

#: A retry asked for more than this many seconds before it is due does nothing (a timer
#: that fires early is armed again for the time left)
RETRY_EARLY_S = 0.5
#: seconds before the first timed retry after a failed autosave (doubled after each failure)
RETRY_FIRST_S = 15.0
#: the longest wait between timed retries (seconds)
RETRY_MAX_S = 600.0


def retry_words(seconds: float) -> str:
    """``seconds`` as the status line says the wait: "15 s", "2 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class AutosaveRetry:
    """Autosave's retries after a failed write (needs :class:`~napari_sam.annotate.
    session_log.SessionLog`)."""

    _retry_why: str | None = None  # the last failure, while autosave fails
    _retry_delay: float = RETRY_FIRST_S
    _retry_at: float | None = None  # time.monotonic() of the next timed retry

    @property
    def autosave_failing(self) -> str | None:
        """Why the last autosave failed, while autosave fails (None once it writes)."""
        return self._retry_why

    def autosave_retry_in(self) -> float | None:
        """Seconds until the next timed retry of a failed autosave (0: due now); None when
        autosave does not fail, or is off."""
        if self._retry_at is None or self._retry_why is None or not self.autosave:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def retry_autosave(self) -> None:
        """The timer's: write the failed autosave again when its retry is due (a commit may
        have tried meanwhile: then its next retry is later); the status line says how it
        went."""
        due = self.autosave_retry_in()
        if due is None or due > RETRY_EARLY_S:
            return
        self.autosave_now()
        note = self.take_autosave_note().strip()
        if note:  # (in place of the failure the line said: as a write in the background)
            self._say(f"{without_failure(self.status)} {note}".strip())

    def _autosave_failed(self, job, target: Path | str, why) -> None:
        """(Overrides :meth:`SessionLog._autosave_failed`.) Autosave stays on and tries
        again: the status line says so; a warning the first time."""
        first = self._retry_why is None
        self._autosave_broken = False
        self._retry_delay = RETRY_FIRST_S if first else min(2 * self._retry_delay, RETRY_MAX_S)
        self._retry_why, self._retry_at = str(why), time.monotonic() + self._retry_delay
        text = (f"Autosave to {target} failed{'' if first else ' again'} ({why}); it tries "
                f"again at the next commit and in {retry_words(self._retry_delay)} (the labels "
                "layer keeps every commit; 'Save session' saves elsewhere).")
        if first:
            self.notify_warning(text)
        if job.inline:
            self._autosave_note += f" {text}"
        else:  # (the failure said before is replaced, not repeated)
            self._say(f"{without_failure(self.status)} {text}".strip())

    def _write_autosave(self, target: Path, job):
        """(Overrides :meth:`SessionLog._write_autosave`.) A write that succeeds after
        failed ones says that autosave works again."""
        written = super()._write_autosave(target, job)
        if self._retry_why is not None:
            self._retry_why = self._retry_at = None
            said = (f"Autosave works again: the session "
                    f"({counted(len(job.state.operations), 'commit')}) is autosaved in {{}}.")

            def say() -> None:
                if job.inline:
                    self._autosave_note += " " + said.format(Path(written[0]).name)
                else:  # (the failure said before is replaced)
                    self._say(f"{without_failure(self.status)} "
                              f"{said.format(Path(written[0]).name)}".strip())
                self.notify_info(said.format(written[0]))

            self._autosave_said_later(job, say)
        return written


def without_failure(status: str) -> str:
    """The status line ``status`` without the failed autosave it says at its end."""
    at = status.find("Autosave to ")
    return status[:at].rstrip() if at >= 0 and " failed" in status[at:] else status
