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

The read stops between two slices when the dock closes (or napari deletes it with its
window) or another look-up starts (:meth:`ResumeLookup.cancel_pixel_reads`): a closed dock's
look-up read every slice of a remote zarr to its end, for nothing, and napari's exit waited
for it. A commit's autosave waiting for the hash follows the look-up's end
(:meth:`ResumeLookup.lookup_ended`, :mod:`.hashed_autosave`).
"""

from __future__ import annotations

from napari_sam import session as S
from napari_sam.annotate.memory_sessions import in_memory, memory_sessions_folder

from .notify import guarded
from .workers import run_job

__all__ = ["ResumeLookup"]


class ResumeLookup:
    """:meth:`offer_resume` after the image's pixels were hashed in a worker thread, where
    that reads a lazy image (needs the session's ``source``, ``hashed_stack``, ``same_hash``,
    ``sync``, ``image_path``, ``image_identity``, ``image_name`` and the dock's ``_closed``)."""

    _pixel_lookup = None  # the Job hashing the picked image's pixels (kept while it runs)
    _lookup_source = None  # the source it hashes

    def offer_resume(self):
        """The session's :meth:`offer_resume` now, or once a worker has hashed the picked
        lazy image's pixels (returns None then: the offer comes as a signal, as always)."""
        if not self.lookup_reads_pixels():
            return super().offer_resume()
        source, name = self.source, self.image_name()  # (the one read: others may be
        # picked before it ends)

        def hashed(_):
            if self._closed or not self.same_hash(self.source, source):  # another image
                return  # picked meanwhile (a movie's time slider moved: its hash, offered)
            guarded(lambda c: c.after_lookup())(self)

        def failed(err):
            if self._closed:  # (the dock closed meanwhile: nothing to retry in it)
                return
            self.notify_warning(f"Could not read '{name}' to look for its "
                                f"autosaved session ({err}): pick the image again to retry.")

        if self._pixel_lookup is not None:  # (an earlier look-up: no longer offered)
            self._pixel_lookup.cancel()
        self._lookup_source = source
        self._pixel_lookup = run_job(
            S.image_hash_steps(self.hashed_stack(), remember=True),
            description="Looking for an autosaved session", on_returned=hashed,
            on_error=failed, on_finished=lambda _: guarded(lambda c: c.lookup_ended(source))(
                self), sync=False, progress_bar=False)
        return None

    def looking_up(self, source) -> bool:
        """Whether a worker is hashing ``source``'s pixels to look for its session (a movie's
        look-up at another time point reads the same hash, ``same_hash``)."""
        job = self._pixel_lookup
        return (job is not None and job.running and not job.cancelled
                and self.same_hash(self._lookup_source, source))

    def lookup_ended(self, source) -> None:
        """The look-up of ``source``'s autosaved session ended (after its result or error,
        or cancelled): nothing more here (:mod:`.hashed_autosave` chains its hash to it)."""

    def cancel_pixel_reads(self) -> None:
        """Stop the look-up's read at its next slice (the dock closes): nothing is offered
        from it."""
        if self._pixel_lookup is not None:
            self._pixel_lookup.cancel()

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

