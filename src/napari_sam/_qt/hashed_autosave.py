"""The autosave of a commit on a lazy image without a file, written once a worker thread has
hashed its pixels (a mixin of :class:`~napari_sam._qt.controller.AnnotationController`).

An image without a file (a script's dask or zarr array) is autosaved under the cache folder
by a hash of its pixels (:mod:`napari_sam.annotate.memory_sessions`), which reads 16 of its
slices. Picking it hashes them in a worker (:mod:`.resume_lookup`), but a commit made before
that worker ended (or any first commit, where no autosave of an image without a file existed
yet: nothing was looked up) hashed them again on the UI thread, to name and fill its autosave:
seconds of a frozen napari for a remote zarr. The commit (undo, redo) is now made at once and
its autosave written when a worker has hashed the pixels: when the look-up under way ends
(its hash reused, read once; its end is the signal, nothing polls it), else by a job of its
own (a movie's read under way for another time point is the same hash: followed too,
``same_hash``). Until then the commits are in memory only: napari killed meanwhile loses
them (as it loses those of an autosave write under way, :mod:`napari_sam.annotate.
autosave_writer`). What reads or replaces the autosave file (saving, loading, resuming, a
new labels target, waiting for the autosave as napari quits), another image picked and the
dock closing write the waiting autosave first, hashing on the UI thread if still needed
(the autosave's worker then stops at its next slice: it read on, for nothing, after another
image was picked); the dock closing also stops the look-up's read at its next slice
(:meth:`HashedAutosave.cancel_pixel_reads`): it read on to its end, for nothing, and
napari's exit waited for it.
"""

from __future__ import annotations

from napari_sam import session as S
from napari_sam.annotate.memory_sessions import in_memory

from .notify import guarded
from .workers import run_job

__all__ = ["HashedAutosave"]


class HashedAutosave:
    """:meth:`hash_pending` and :meth:`autosave_when_hashed` of the session (see the module
    docstring; needs the session's ``source``, ``sync``, ``image_path``, ``image_identity``,
    ``hashed_stack``, ``same_hash``, ``autosave_now``, the look-up's ``looking_up`` and the
    dock's ``_closed``)."""

    _autosave_waits = None  # the source whose autosave waits for its pixels' hash
    _hashing_here = False  # the waiting autosave is written now: the hash is read here
    _hash_job = None  # the Job hashing them for the autosave (kept while it runs)

    def hash_pending(self) -> bool:
        """Whether the autosave waits for the image's pixel hash: a lazy image without a
        file (dask, zarr, memory-mapped), not hashed yet, in the threaded GUI."""
        source = self.source
        if self._hashing_here or self.sync or source is None or self.image_path() is not None:
            return False
        if in_memory(self.image_identity()[1]):
            return False
        return not S.image_hash_known(self.hashed_stack())

    def autosave_when_hashed(self) -> None:
        """Write the autosave once a worker has hashed the image's pixels: when the look-up
        of its autosaved session under way ends (:meth:`lookup_ended`; its hash then reads
        nothing), else once a job of its own has read them."""
        source, waits = self.source, self._autosave_waits
        job = self._hash_job
        if waits is not None and self.same_hash(waits, source) and (self.looking_up(waits) or (
                job is not None and job.running and not job.cancelled)):
            return  # (what ends writes the newest state; a movie's read under way for a
            # commit at another time point reads the hash of this one too: not read twice)
        self._autosave_waits = source
        if not self.looking_up(source):
            self._hash_for_autosave(source)

    def lookup_ended(self, source) -> None:
        """(The look-up's, :mod:`.resume_lookup`.) The autosave waiting for ``source``'s
        hash: written (the look-up's result wrote it already, :meth:`after_lookup`), or,
        the look-up having failed or been stopped, hashed by a job of its own. Also where
        the image's ``source`` was replaced meanwhile by one of the same image (a movie's
        time slider moved: another image picked writes the waiting autosave first): its
        commits were left unwritten until the next one."""
        super().lookup_ended(source)
        if self._closed or not self.same_hash(self._autosave_waits, source) or (
                self.source is None):
            return
        if self.looking_up(source):  # (a look-up of it started again: its end follows)
            return
        if S.image_hash_known(self.hashed_stack()):
            self.write_waiting_autosave(source)
        else:
            self._hash_for_autosave(source)

    def _hash_for_autosave(self, source) -> None:
        name = self.image_name()

        def failed(err):
            if self.same_hash(self._autosave_waits, source):
                self._autosave_waits = None
            if self._closed:  # (the dock's close wrote the autosave, hashing there)
                return
            self.notify_warning(f"Could not read '{name}' to autosave its session ({err}): "
                                "the next commit tries again; 'Save session...' saves it now.")

        self._hash_job = run_job(
            S.image_hash_steps(self.hashed_stack(), remember=True),
            description="Hashing for the autosave",
            on_returned=lambda _: guarded(lambda c: c.write_waiting_autosave(source))(self),
            on_error=failed, sync=False, progress_bar=False)

    def cancel_pixel_reads(self) -> None:
        """(The look-up's too.) The hash for the autosave stops at its next slice as well:
        the dock closes, having written the autosave."""
        super().cancel_pixel_reads()
        if self._hash_job is not None:
            self._hash_job.cancel()

    def write_waiting_autosave(self, source=None) -> None:
        """Write the autosave waiting for the pixels' hash (``source``: only if it waits for
        that image's), reading the hash here if it is still unknown; the status line says
        what the write has to say."""
        waits = self._autosave_waits
        if waits is None or (source is not None and not self.same_hash(waits, source)):
            return
        self._autosave_waits = None
        job = self._hash_job
        if job is not None and job.running and (
                self.source is None or not S.image_hash_known(self.hashed_stack())):
            job.cancel()  # (read here now, or no image: its read stops at its next slice)
        self._hashing_here = True
        try:
            self.autosave_now()
        finally:
            self._hashing_here = False
        note = self.take_autosave_note().strip()
        if note:
            self._say(f"{self.status} {note}".strip())

    def after_lookup(self) -> None:
        """(The look-up's, :mod:`.resume_lookup`.) The waiting autosave first: the offer to
        resume then finds this dock's commits in it, not an earlier session to offer."""
        self.write_waiting_autosave(self.source)
        super().after_lookup()

    def wait_autosave(self, timeout: float | None = None) -> bool:
        """(The session's.) The waiting autosave is written first."""
        self.write_waiting_autosave()
        return super().wait_autosave(timeout)

