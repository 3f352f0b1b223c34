"""The line beside 'Compute embeddings': what is embedded for the image and model picked, and,
while a job embeds, how far it is.

While a job embeds, the line counts what it has done: "embedding tiles 12/441" on a tiled
image (windows over all the slices it embeds), "embedding slices 3/8" on a stack ("embedding
the slice" on a 2D image). Once the job ends it says what is embedded now, e.g. "6 of 6
slices embedded" (:meth:`~napari_sam.annotate.annotation_session.AnnotationSession.embedding_summary`;
on a movie of volumes after the time point whose volume it is: "time point 2: 12 of 12 slices
embedded"), after "cancelled: ", "refused: " (too little memory) or "failed: " when the job did
not finish; the next job, or another image, model or setting, clears that. Before, the line was
only redrawn when the status line changed: it kept "0 of 6 slices embedded" while slices were
embedded, and an old count once they were (or once the image changed without a status line).
"""

from __future__ import annotations

from napari_sam.annotate.errors import Refusal
from napari_sam.words import in_frames

__all__ = ["EmbeddingLine", "progress_words", "time_words"]


def time_words(source) -> str:
    """"time point 2: " before the line on a movie of volumes (whose time point shown is
    the one embedded; each has its own embeddings), "" on any other image."""
    return "" if source.time_point is None else f"time point {source.time_point}: "


def progress_words(phase: str, done: int, total: int, n_slices: int,
                   axis_kind: str = "z") -> str:
    """The line while a job's ``phase`` ("embedding", "embedding tiles") has embedded
    ``done`` of ``total`` (slices, or windows of tiles) of an image of ``n_slices`` slices
    (frames where ``axis_kind`` is "t": "embedding frames 3/12")."""
    if total <= 0:
        return f"{phase} ..."
    if phase == "embedding tiles":
        return f"embedding tiles {done}/{total}"
    if n_slices == 1:
        return f"embedding the slice {done}/{total}"
    return f"embedding {in_frames('slices', axis_kind)} {done}/{total}"


class EmbeddingLine:
    """Keeps the label beside 'Compute embeddings' following the session and its jobs.

    Parameters
    ----------
    session : napari_sam._qt.controller.AnnotationController
    label : QLabel
        The line.
    links : list
        The dock's (signal, slot) pairs, disconnected when it closes: the connections made
        here are kept in it.
    """

    def __init__(self, session, label, links: list):
        self.session = session
        self.label = label
        self.progress = (0, 0)  # done, total of the embedding phase under way
        self.ended = ""  # "cancelled", "refused" or "failed": how the last embedding job ended
        self.embedding = False  # the running job has started an embedding phase
        self.key = None  # the image, model and settings the line is about
        self.job = None  # the job under way
        for signal, slot in ((session.status_changed, self.refresh),
                             (session.job_changed, self.on_job_changed),
                             (session.job_phase, self.on_phase),
                             (session.job_progress, self.on_progress),
                             (session.viewer.layers.events.removed, self.refresh)):
            links.append((signal, slot))
            signal.connect(slot)
        self.refresh()

    def on_job_changed(self, job) -> None:
        """A job started (its embedding not begun yet) or ended (None): the line says how
        an embedding job ended."""
        if job is not None:
            self.ended, self.embedding, self.progress = "", False, (0, 0)
        else:
            ended = self.job
            # (a job stopped by a change, stale, was of another image, setting or time
            # point: "time point 1: cancelled" was said of the time point it left)
            if self.embedding and ended is not None and not ended.succeeded and not ended.stale:
                self.ended = ("cancelled" if ended.cancelled else
                              "refused" if isinstance(ended.error, Refusal) else "failed")
            self.embedding = False
        self.job = job
        self.refresh()

    def on_phase(self, name: str) -> None:
        self.embedding = name.startswith("embedding")
        self.progress = (0, 0)
        self.refresh()

    def on_progress(self, done: int, total: int) -> None:
        if self.embedding:
            self.progress = (int(done), int(total))
            self.refresh()

    def text(self) -> str:
        """The line now."""
        s = self.session
        job = s.job
        # the image, model and settings: not job_key(), whose embedding key resolves the
        # device and imports torch on the main thread (the dock imports it in a thread)
        key = (None if s.source is None else
               (s.image_identity()[0], s.model_choice, s.device, s.precision, s.tiling,
                s.channel_axis, s.channel, s.store, s.source.time_point))  # (the layer's id:
        # its source is remade)
        if key != self.key:  # another image, model, setting or time point: a cancellation
            self.key, self.ended = key, ""  # is old news
        if job is not None and job.running and self.embedding and s.source is not None:
            return time_words(s.source) + progress_words(job.phase, *self.progress,
                                                         s.source.n_slices, s.axis_kind)
        summary = s.embedding_summary()
        summary = f"{self.ended}: {summary}" if self.ended else summary
        return summary if s.source is None else time_words(s.source) + summary

    def refresh(self, *_) -> None:
        """Redraw the line (on every change of the session or its job)."""
        try:
            self.label.setText(self.text())
        except RuntimeError:  # (its Qt object was deleted with the dock)
            pass
