"""The dock's job row: a progress bar that names the phase of the running job
("embedding 3/8", then "propagating 5/12") and the Cancel button.

Within a phase the bar never goes backwards (the progress it gets comes through
:class:`~napari_sam.annotate.jobs.ProgressTracker` in :func:`.workers.run_job`); when a job
starts a new phase the bar starts from 0 under that phase's name. A phase that has run for
:data:`ESTIMATE_AFTER_S` says about how long it has left ("embedding tiles 12/441, about
4 min left"), from its pace so far.
"""

from __future__ import annotations

import time

from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

__all__ = ["JobBar"]

#: The bar's text between jobs (Qt's default: the percentage)
IDLE_FORMAT = "%p%"
#: Seconds a phase runs before the bar says how long it has left (its pace is known then)
ESTIMATE_AFTER_S = 5.0


def time_left_text(seconds: float) -> str:
    """``seconds`` left as the bar says it: "about 40 s", "about 4 min", "about 1 h 10 min"
    (rounded: an estimate from the pace so far)."""
    s = max(0.0, float(seconds))
    if s < 55:
        return f"about {max(5, int(round(s / 5.0)) * 5)} s"
    minutes = int(round(s / 60.0))
    if minutes < 60:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60} min"


class JobBar(QWidget):
    """Progress bar and Cancel of the dock's jobs.

    Parameters
    ----------
    on_cancel : callable
        Called (no arguments) when Cancel is pressed.
    """

    def __init__(self, on_cancel):
        super().__init__()
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel = QPushButton("Cancel")
        self.cancel.setEnabled(False)
        self.cancel.clicked.connect(lambda *_: on_cancel())
        row.addWidget(self.progress)
        row.addWidget(self.cancel)
        self.job = None
        self.closed = False
        self._phase = ("", 0.0)  # the phase under way and when it started (time.monotonic)

    def on_job_changed(self, job) -> None:
        """A job started (busy until its first progress report) or ended (``job`` None):
        full when it succeeded (work such as propagation may end before its last planned
        slice), empty when it failed or was cancelled."""
        ended, self.job = self.job, job
        running = job is not None and job.running
        self.cancel.setEnabled(running)
        self.progress.setFormat(IDLE_FORMAT)
        self._phase = ("", time.monotonic())
        if running:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(int(ended is not None and ended.succeeded))

    def on_phase(self, name: str) -> None:
        """The running job's next phase started: busy, then counted from 0 under ``name``."""
        if self.closed or self.job is None or not self.job.running:
            return
        self._phase = (name, time.monotonic())
        self.progress.setFormat(f"{name} %v/%m")
        self.progress.setRange(0, 0)

    def on_progress(self, done: int, total: int) -> None:
        """``done`` of ``total`` of the phase under way (``total`` 0: busy)."""
        # a report queued by the job's thread may arrive after the job has ended (a busy
        # machine): the ended job's bar stays as on_job_changed left it
        if self.closed or self.job is None or not self.job.running:
            return
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
            name, start = self._phase
            spent = time.monotonic() - start
            counts = f"{name} %v/%m" if name else "%p%"
            if 0 < done < total and spent >= ESTIMATE_AFTER_S:
                left = time_left_text(spent * (total - done) / done)
                self.progress.setFormat(f"{counts}, {left} left")
            else:
                self.progress.setFormat(counts)
