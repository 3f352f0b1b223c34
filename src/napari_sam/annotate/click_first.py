"""A click on a large (tiled) image is answered before the whole slice is embedded (a mixin
of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`).

A slice larger than the model input is embedded in windows (:mod:`napari_sam.tiled_stack`):
196 of them for a 3000 x 3000 image and the demo model, seconds on a CPU (minutes with
SAM ViT-B). The preload (:meth:`ClickFirst.preload`) embeds the visible slice as soon as an
image and a model are chosen; a click waited for every window before. Now:

- the preload's job can make way (``job.pause``, a :class:`threading.Event`): a click during
  it sets the event (:meth:`ClickFirst.pause_for_click`) and the embedding stops after the
  window under way, keeping what it embedded;
- the click is decoded in a job through
  :meth:`~napari_sam.tiled_stack.TiledStackEmbeddings.slice_on_demand`, which encodes only
  the windows holding the prompts (and a zoomed-out view where the object needs one)
  (:meth:`ClickFirst.decode_on_demand`): the masks are those of the whole slice's
  embeddings, as the windows are the same;
- then the slice's other windows are embedded in the background
  (:meth:`ClickFirst.resume_preload`), a job that makes way for the next click again and
  leaves the preview's status line as it was. A commit does not wait for such a job
  (:meth:`ClickFirst.job_blocks_commit`).
"""

from __future__ import annotations

import threading
from collections.abc import Generator

from napari_sam.annotation import decode_slice
from napari_sam.words import counted, in_frames

from .jobs import Phase
from .memory_checks import embedding_problem

__all__ = ["EMBEDDING_DESCRIPTION", "RESUME_DESCRIPTION", "ClickFirst"]

#: what the job that embeds a slice's other windows after a click is called
RESUME_DESCRIPTION = "Embedding the other tiles of this slice"
#: what the job of :meth:`ClickFirst.compute_embeddings` (the preload's) is called
EMBEDDING_DESCRIPTION = "Computing SAM embeddings"


class ClickFirst:
    """The preload, and clicks decoded before it ends (see the module docstring)."""

    #: ``(job key, lead)``: the lead of a preload asked for while a job ran (the job of a
    #: time point left, stopping), said by the preload that follows that job's end
    _held_lead: tuple | None = None

    def compute_embeddings(self, indices=None, then=None, read_ahead=(), pause=None):
        """Start computing embeddings (default: every slice) and, unless the image is
        tiled, those of ``read_ahead``; ``then()`` runs afterwards.

        ``pause``: a :class:`threading.Event` (kept as the job's ``pause``); once it is set,
        a tiled embedding ends before its next window, keeping the windows it embedded, and
        the job ends without saying the embeddings are ready (set from the start: the job
        only loads the model and makes the embeddings, for a click decoded on demand)."""
        stop = None if pause is None else pause.is_set
        gen = self._prepare_gen(indices, read_ahead=read_ahead, should_stop=stop)

        def done(result):
            self._adopt(*result)
            if self.source is None:
                self.result_is_current(result, EMBEDDING_DESCRIPTION)
                return
            if pause is not None and pause.is_set() and getattr(result[4], "stopped", False):
                return  # it made way for a click, whose preview follows
            n = len(result[4]) if indices is None else len(list(indices))
            self._say(f"Embeddings ready ({counted(n, in_frames('slice', self.axis_kind))}"
                      f"{self.tiling_note(result[4])}).")

        job = self.start_job(gen, EMBEDDING_DESCRIPTION, done, then=then)
        if job is not None and pause is not None:
            job.pause = pause
        return job

    def preload(self, lead: str = ""):
        """Start loading the model and embedding the visible slice, if an image and a model
        are chosen and that slice is not embedded yet (#29: the first click then only
        decodes). Nothing starts while a job runs, and a model that would be downloaded is
        not fetched before a click. A click during the job is previewed when it ends; on a
        tiled image the job makes way for it (:meth:`pause_for_click`). The status line then
        starts with ``lead`` (e.g. why the job before it stopped).

        Returns
        -------
        Job or None
            The embedding job, or None when there was nothing to do.
        """
        choice = self.model_choice
        if self.source is None or not self.image_shown() or choice is None:
            return None
        if not (choice.cached or choice.is_file):
            return None
        if self.job is not None and self.job.running:  # (its end preloads: said then)
            self._held_lead = (self.job_key(), lead)  # (:meth:`preload_asked`)
            return None
        held, self._held_lead = self._held_lead, None
        merged = held is not None and held[0] == self.job_key() and held[1] not in lead
        if merged:
            # a movie's "SAM now segments time point 3 of 5." before the line of the job
            # of the time point left ("Stopped: ..."): one of the two was lost, by turns
            lead = f"{held[1]} {lead}".strip()
        z = self.current_z()
        if self.ready([z]):
            if merged:  # (back at an embedded time point: only the stop line was said)
                self._say_ready(lead)
            return None
        return self.compute_embeddings([z], then=lambda: self._say_ready(lead),
                                       pause=threading.Event())

    def preload_asked(self) -> bool:
        """Whether a preload was asked for while the job that just ended ran (e.g. the time
        slider moved, or another image was picked, while the model loaded: that job was let
        finish, not stopped as stale): the dock then preloads again, or the slice shown was
        never embedded and the line "SAM now segments time point 1 of 5." was lost."""
        return self._held_lead is not None

    def click_pause(self) -> threading.Event:
        """The ``pause`` of the embedding a click starts (:meth:`compute_embeddings`): set
        already, so that on a tiled image it only loads the model and makes the embeddings,
        and the click is decoded on demand next."""
        pause = threading.Event()
        pause.set()
        return pause

    def pause_for_click(self) -> str:
        """A click while a job runs: ask the job, if it can make way (a preload, ``pause``),
        to end before its next window. Returns the status line that says so, or "" (the
        click waits for the job: another job, or the model still loading)."""
        job = self.job
        pause = getattr(job, "pause", None)
        if pause is None or not job.running or job.cancelled:
            return ""
        pause.set()
        if job.phase != "embedding tiles":  # loading the model: it stops once that is done
            return ""
        return ("Decoding the click first: embedding this slice's other tiles stops after "
                "the tile under way and goes on after the preview.")

    def way_made_for(self, name: str) -> str:
        """Propagate or Segment everything (``name``) while an embedding job runs (a preload:
        the model loading, the visible slice embedded, or its windows in the background):
        they were refused ("... is running: wait or Cancel"). A tiled embedding is asked to
        stop after the window under way, as for a click; another one is waited for. Returns
        the status line that says the action starts when the job ends (the caller queues
        it), or "" where the running job is not such an embedding (the action runs now, or
        is refused)."""
        job = self.job
        if job is None or not job.running or job.cancelled:
            return ""
        if job.phase == "embedding tiles":
            self.pause_for_click()
            if not self.preload_pausing():
                return ""
            return (f"{name} starts once the embedding in the background stops (after the "
                    "tile under way); what it has embedded is kept.")
        if job.description != EMBEDDING_DESCRIPTION:
            return ""  # another job (a propagation, a click being decoded): refused
        self.pause_for_click()  # a preload that turns out tiled then stops before its windows
        doing = f" ({job.phase})" if job.phase else ""  # e.g. "(loading the model 'vit_b')"
        return (f"{name} starts once the embedding under way{doing} is ready; Cancel drops "
                "both.")

    def preload_pausing(self) -> bool:
        """A running job that makes way for clicks was asked to (its ``pause`` set)."""
        job = self.job
        pause = getattr(job, "pause", None)
        return bool(job is not None and job.running and pause is not None and pause.is_set()
                    and not job.cancelled)

    def job_blocks_commit(self) -> bool:
        """Whether the running job refuses a commit: any job but an embedding that makes way
        for clicks (a preload), which does not touch labels or prompts."""
        job = self.job
        return job is not None and job.running and getattr(job, "pause", None) is None

    def decode_on_demand(self, z: int, on_slice: list) -> bool:
        """Start previewing the objects ``on_slice`` (``(key, SlicePrompts)``) of slice ``z``
        of a tiled image in a job that encodes only the windows (and zoomed-out views) they
        need, then the slice's other windows (:meth:`resume_preload`). Returns False, and
        starts nothing, where the embeddings are not tiled ones, the model is not loaded or
        a job runs."""
        emb, predictor = self.emb, self.predictor
        if not hasattr(emb, "slice_on_demand") or predictor is None or (
                self.job is not None and self.job.running):
            return False
        tiled = emb.slice_on_demand(z)  # windows encoded when the decoder reads them
        masks = self._mask_inputs(z, tiled)
        self._preview_token = token = object()
        lead = self.preview_lead

        def gen():
            yield Phase("encoding the tiles around the prompts")
            return decode_slice(predictor, tiled, z, on_slice, masks, zoom=False)

        def done(previews):
            if token is not self._preview_token:  # the prompts changed or another slice was
                return  # previewed meanwhile: this result is no longer wanted
            self.preview_lead = lead
            self._show_previews(z, previews)

        def then():
            if token is self._preview_token:  # no newer preview since
                self.zoom_later(z, tiled, on_slice, masks, None, lead, token,
                                then=self.resume_preload)
            else:
                self.resume_preload()

        self.start_job(gen(), "Decoding the click (encoding the tiles around it)", done,
                       then=then)
        return True

    def resume_preload(self) -> None:
        """After a click decoded on demand: embed the visible slice's other windows in a job
        that makes way for the next click; the status line keeps the preview's words (and
        says the embedding goes on while it does). Where they would not fit in the memory
        free (:func:`~.memory_checks.embedding_problem`) no job starts and the line says so."""
        if self.job is not None and self.job.running:
            return
        if self.source is None or not self.image_shown() or self.emb is None:
            return
        z = self.current_z()
        if self.ready([z]):
            return
        if embedding_problem(self.emb, self.emb.missing([z]), self.store is not None):
            line = self.status.removesuffix(" [demo model]")  # (said again at the end)
            self._say(f"{line} The slice's other tiles are not embedded (too little memory "
                      "free for them); each click embeds the tiles it needs"
                      + ("." if self.store is not None else "; set an 'Embedding store' to "
                         "embed them all."))
            return  # (the refusal was said when the image was embedded: not at every click)
        before, pause = self.status, threading.Event()
        gen = _without_lines(self._prepare_gen([z], should_stop=pause.is_set))

        def restore():  # the preview's line again, unless something else was said since
            if before and self.status.startswith((before, RESUME_DESCRIPTION)):
                self._say(before)

        job = self.start_job(gen, RESUME_DESCRIPTION, lambda result: self._adopt(*result),
                             then=restore)
        if job is not None and job.running:
            job.pause = pause
            self._say(f"{before} Meanwhile the other tiles of this slice are embedded "
                      "(clicks and commits do not wait for it).")


def _without_lines(gen: Generator) -> Generator:
    """``gen`` (a job) without the status lines it yields: the preview's line stays."""
    try:
        while True:
            try:
                value = next(gen)
            except StopIteration as stop:
                return stop.value
            if not isinstance(value, str):
                yield value
    finally:
        gen.close()
