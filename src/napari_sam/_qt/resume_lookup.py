"""The look-up of an image's autosaved session when it is picked, off the UI thread where it
reads pixels (a mixin of :class:`~napari_sam._qt.controller.AnnotationController`).

An image without a file (a script's dask or zarr array) has its session autosaved under the
cache folder by a hash of its pixels (:mod:`napari_sam.annotate.memory_sessions`): 16 of its
slices are read. Once any such image had been autosaved, picking a lazy image in the dock read
them on the UI thread, to find its session: seconds of a frozen napari for a remote zarr. The
hash is now read in a worker thread (:func:`napari_sam.session.image_hash` remembers it for
the image's stack), and the offer to resume follows on the UI thread when it is known, which
then reads nothing (a movie's: 16 slices sampled across its time points, ``hashed_stack``).
An array in memory, an image file, or no autosave of an image without a file yet: looked up at
once, as before (nothing slow to read).
"""

from __future__ import annotations

from napari_sam import session as S
from napari_sam.annotate.memory_sessions import in_memory, memory_sessions_folder

from .notify import guarded
from .workers import run_job

__all__ = ["ResumeLookup"]


class ResumeLookup:
    """:meth:`offer_resume` after the image's pixels were hashed in a worker thread, where
    that reads a lazy image (needs the session's ``source``, ``hashed_stack``, ``sync``,
    ``image_path``, ``image_identity``, ``image_name`` and the dock's ``_closed``)."""

    _pixel_lookup = None  # the Job hashing the picked image's pixels (kept while it runs)

    def offer_resume(self):
        """The session's :meth:`offer_resume` now, or once a worker has hashed the picked
        lazy image's pixels (returns None then: the offer comes as a signal, as always)."""
        if not self.lookup_reads_pixels():
            return super().offer_resume()
        source, name = self.source, self.image_name()  # (the one read: others may be
        # picked before it ends)

        def hashed(_):
            if self._closed or self.source is not source:  # another image picked meanwhile
                return
            guarded(lambda c: c.after_lookup())(self)

        def failed(err):
            if self._closed:  # (the dock closed meanwhile: nothing to retry in it)
                return
            self.notify_warning(f"Could not read '{name}' to look for its "
                                f"autosaved session ({err}): pick the image again to retry.")

        self._pixel_lookup = run_job(
            _hash_pixels(self.hashed_stack()), description="Looking for an autosaved session",
            on_returned=hashed, on_error=failed, sync=False, progress_bar=False)
        return None

    def after_lookup(self) -> None:
        """Once the picked image was hashed: the labels layer holding its autosave becomes
        the target (the controller's ``forget_mismatched_target`` skipped that check, which
        reads the pixels), then the offer to resume."""
        self.forget_mismatched_target()
        super().offer_resume()

    def lookup_reads_pixels(self) -> bool:
        """Whether looking for the picked image's autosaved session reads its pixels, and
        would on this thread: a lazy image without a file (dask, zarr, memory-mapped) not
        hashed yet, once an image without a file has been autosaved (jobs run threaded)."""
        source = self.source
        if self.sync or source is None or self.image_path() is not None:
            return False
        if in_memory(self.image_identity()[1]):
            return False
        return not S.image_hash_known(self.hashed_stack()) and memory_sessions_folder().is_dir()


def _hash_pixels(stack):
    """The job: :func:`napari_sam.session.image_hash` of ``stack``, remembered for it."""
    yield from ()  # (a generator: a job; it reads when the worker starts it)
    S.image_hash(stack, remember=True)
