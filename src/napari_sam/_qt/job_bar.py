"""The dock's job row: a progress bar that names the phase of the running job
("embedding 3/8", then "propagating 5/12") and the Cancel button.

Within a phase the bar never goes backwards (the progress it gets comes through
:class:`~napari_sam.annotate.jobs.ProgressTracker` in :func:`.workers.run_job`); when a job
starts a new phase the bar starts from 0 under that phase's name.
"""

from __future__ import annotations

from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QWidget

__all__ = ["JobBar"]

#: The bar's text between jobs (Qt's default: the percentage)
IDLE_FORMAT = "%p%"


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

    def on_job_changed(self, job) -> None:
        """A job started (busy until its first progress report) or ended (``job`` None):
        full when it succeeded (work such as propagation may end before its last planned
        slice), empty when it failed or was cancelled."""
        ended, self.job = self.job, job
        running = job is not None and job.running
        self.cancel.setEnabled(running)
        self.progress.setFormat(IDLE_FORMAT)
        if running:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1)
            self.progress.setValue(int(ended is not None and ended.succeeded))

    def on_phase(self, name: str) -> None:
        """The running job's next phase started: busy, then counted from 0 under ``name``."""
        if self.closed or self.job is None or not self.job.running:
            return
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
