"""Jobs whose result can no longer be applied: the image, the model or a setting the
embeddings depend on changed while the job ran (or the image layer was removed). They are
cancelled then, instead of running on for minutes while clicks on the new image wait, and the
status line says why they stopped (a mixin of
:class:`~napari_sam.annotate.annotation_session.AnnotationSession`)."""

from __future__ import annotations

from .click_first import EMBEDDING_DESCRIPTION
from .embedding_cache import missing_slices

__all__ = ["StaleJobs"]


class StaleJobs:
    """Job keys, Cancel, the cancelling of stale jobs and what a cancelled job says."""

    #: why the image went, said by a job it stopped (its layer removed, or given pixels the
    #: dock refused: set by the dock)
    image_gone = "its image layer was removed"

    def job_key(self):
        """What a job started now is for: ``(cache key, (model choice, device, precision))``
        of the image, model and settings chosen now (None without both); it applies its
        result only while they stay chosen."""
        if self.source is None or self.model_choice is None:
            return None
        return self._cache_key(), (self.model_choice, self.device, self.precision)

    def cancel_stale_job(self) -> None:
        """Cancel the running job when its result can no longer be applied: the image (or
        its removal), the model or a setting its embeddings depend on changed since it
        started (its ``key``, :meth:`job_key` then). It ran on for minutes before, and clicks
        on the new image waited for it. A job whose model is not loaded yet is let finish
        (the model is kept for the next one)."""
        job = self.job
        if job is None or not job.running or job.cancelled or job.key is None:
            return
        key = job.key
        now = self.job_key()
        if now is not None and now[0] == key[0]:
            return
        # its model loads first when not cached (the cache gets it when the job ends); the
        # phase comes from the worker, so "" may be a load whose phase is on its way
        loading = self.models.get(*key[1]) is None and (
            job.phase == "" or job.phase.startswith("loading the model"))
        if not loading:
            job.stale = True
            job.cancel()

    def cancel_job(self, say: bool = True) -> None:
        """Cancel the running job (the Cancel button); the status line says so at once
        (unless not ``say``: the dock closes), as the job stops only when the step under
        way ends (a SAM 2 block, an embedding batch: seconds on a CPU), and its end says
        "Cancelled: ..." (:meth:`job_cancelled`)."""
        job = self.job
        if job is None or not job.running:
            return
        if say and not job.cancelled:
            self._say(f"Cancelling: {job.description} stops when the step under way ends; "
                      "the labels and prompts stay as they were.")
        job.cancel()

    def job_cancelled(self, job):
        """Main thread, ``job`` ended cancelled: say so; returns what to run next (None, or
        for a job stopped by :meth:`cancel_stale_job`, the preview of prompts given
        meanwhile, which follows this line)."""
        pending, self._pending = self._pending, False
        if not job.stale:  # it said "Nothing was changed" while the slices it embedded stayed
            self.keep_made_embeddings()  # (they were dropped: "cancelled: 0 of 8 slices")
            tiled = getattr(self.emb, "tiling", None) is not None
            kept = ("" if not self.embedded_any() else
                    f" (the {'tiles' if tiled else 'slices'} it had embedded are kept)")
            self._say(f"Cancelled: {job.description}. The labels and prompts are as they "
                      f"were{kept}.")
            # an action on a tiled image (Propagate, Segment everything, which the background
            # embedding of the visible slice made way for) was cancelled: that embedding goes
            # on, and says so; a cancelled embedding itself stays stopped
            embedding = (getattr(job, "pause", None) is not None
                         or job.description == EMBEDDING_DESCRIPTION)
            return self.resume_preload if tiled and not embedding else None
        made, self.made_embeddings = self.made_embeddings, []
        moved, channels = False, ()
        if self.source is None:  # (removed, or given pixels the dock refused)
            why, kept = self.image_gone, "nothing of that image is kept"
        else:  # the embeddings it made are kept for that image, as a finished job's were
            for key, emb in made:
                self.embeddings.put(key, emb)
            channels = job.key[0][2] if job.key else ()  # (channel axis, channel, time point)
            moved = (len(channels) > 2 and channels[2] != self.source.time_point
                     and job.key[0][0] == self.image_identity()[0])  # (not another image's)
            why = ("the time point shown changed" if moved else  # (not "changed to 2": the
                   "the image, the model or a setting changed")  # line may be said later)
            kept = "the slices it had embedded are kept"
        # on a movie, which time point it ran for (was: "... because the time point shown
        # changed", naming none, while the other lines say "time point 3")
        what = f"{job.description} at time point {channels[2]}" if moved else job.description
        text = job.note = (f"Stopped: {what}, because {why} while it ran (its "
                           f"result could not have been applied; {kept}).")
        if pending:
            self.preview_lead = text
            return self.update_preview
        self._say(f"{text} {self.next_step()}")
        return None

    def job_failed(self) -> None:
        """Main thread: the running job failed (e.g. the disk filled while it stored the
        embeddings): the slices it had embedded are kept (:meth:`keep_made_embeddings`), so
        that the line beside 'Compute embeddings' counts them ("failed: 3 of 8 slices
        embedded"; it said "0 of 8" although 3 were embedded and stored) and the next job
        goes on from them."""
        self.keep_made_embeddings()

    def keep_made_embeddings(self) -> None:
        """Main thread: the running job ended without its result (failed, or cancelled with
        Cancel): the embeddings it made are kept for their image, as those of a job stopped
        by a change are, and become the current ones when they are of the image, model and
        settings chosen now (nothing is kept once the image layer was removed)."""
        made, self.made_embeddings = self.made_embeddings, []
        if self.source is None:
            return
        for key, emb in made:
            self.embeddings.put(key, emb)
        if made and self.emb is None and self.model_choice is not None:
            self.emb = self.embeddings.get(self._cache_key())

    def embedded_any(self) -> bool:
        """Whether the current embeddings exist and hold a slice (tiled: exist; a slice
        counts only once all its windows are embedded)."""
        emb = self.emb
        if emb is None or getattr(emb, "tiling", None) is not None:
            return emb is not None
        return len(missing_slices(emb, range(len(emb)))) < len(emb)
