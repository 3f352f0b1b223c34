"""The contrast limits the model sees: by default the stack's own 0.5 and 99.5 percentiles
(:func:`napari_sam.embeddings.stack_intensity_limits`); where the user set the image's
contrast (in napari: the layer's contrast limits, see :mod:`napari_sam._qt.layer_contrast`),
those limits, so that a faint object the user made visible is visible to the model too
(a mixin of :class:`~napari_sam.annotate.annotation_session.AnnotationSession`).

The embeddings are cached per contrast limits (they are part of the cache key), so switching
back to limits used before is instant; with an embedding store, those of the layer's limits
are kept in a store of their own beside it (:meth:`ModelContrast.contrast_store`): a store
holds the embeddings of one contrast, and the user's store is never cleared for a contrast
change. Only the stores of the few most recent contrasts are kept
(:mod:`napari_sam.annotate.contrast_stores`).
"""

from __future__ import annotations

from pathlib import Path

from napari_sam.preprocess import contrast_limits_name
from napari_sam.words import in_frames

from .contrast_stores import ContrastStores, StoreHold, held_while
from .errors import UserError

__all__ = ["ModelContrast", "contrast_words"]


def contrast_words(limits) -> str:
    """The limits the model sees in the status line's words: "the layer's limits (190-270)",
    or (None) "the stack's own 0.5-99.5 percentile limits"."""
    if limits is None:
        return "the stack's own 0.5-99.5 percentile limits"
    lo, hi = (f"{float(v):.6g}" for v in limits)
    return f"the layer's limits ({lo}-{hi})"


class ModelContrast:
    """Which contrast limits the model is given, and what changing them does."""

    #: ``() -> (low, high) or None``: the limits the model sees for the current image
    #: (None: the stack's percentiles). Unset: always the percentiles. The napari dock sets
    #: it (:class:`napari_sam._qt.layer_contrast.LayerContrast`); a script calls
    #: :meth:`set_model_contrast`.
    contrast_source = None

    def model_contrast(self) -> tuple[float, float] | None:
        """The contrast limits (low, high) the current image's slices are mapped to 0..255
        with before they are embedded; None: the stack's own 0.5-99.5 percentiles."""
        pick = self.contrast_source
        limits = None if pick is None or self.source is None else pick()
        return None if limits is None else tuple(float(v) for v in limits)

    def set_model_contrast(self, limits) -> None:
        """Embed with ``limits`` (low, high) from now on (None: the stack's percentiles):
        the slices are embedded again as they are needed, a live preview is decoded again.

        Raises
        ------
        UserError
            ``limits`` are not two finite numbers with high > low.
        """
        if limits is not None:
            from napari_sam.preprocess import check_contrast_limits

            try:
                lo, hi = check_contrast_limits(limits)
            except ValueError as err:
                raise UserError(str(err)) from None
            if hi <= lo:
                raise UserError(f"contrast limits must have high > low, got {limits!r}")
            limits = (lo, hi)
        self.contrast_source = lambda: limits
        self.contrast_changed()

    def contrast_store(self) -> str | None:
        """The zarr store the current image's embeddings are kept in: the Embedding store
        (``self.store``) for the stack's percentiles; for the layer's limits a store beside
        it named after them, e.g. ``emb.zarr`` -> ``emb.contrast-190-270.zarr``, with every
        digit that tells the limits apart (None: no store)."""
        limits = self.model_contrast()
        if self.store is None or limits is None:
            return self.store
        path = Path(self.store)
        name = contrast_limits_name(limits)
        return str(path.with_name(f"{path.stem}.contrast-{name}{path.suffix}"))

    def stored_embeddings(self, key):
        """The embeddings cached under ``key`` (None: none), unless the zarr store they are
        kept in was deleted under them (by hand, another program): then they are forgotten
        and None is returned, so that the store is made again and the slices embedded again
        (their writes would fail, or make a store without its zarr metadata)."""
        emb = self.embeddings.get(key)
        store = getattr(emb, "store", None)
        if store is not None and not Path(store).is_dir():
            self.embeddings.drop_store(store)
            return None
        return emb

    def restore_contrast(self, limits) -> None:
        """A loaded or resumed session's model saw ``limits`` (its ``model_contrast_limits``;
        None: the stack's percentiles): the model sees them again. The dock
        (:class:`napari_sam._qt.layer_contrast.LayerContrast`) puts them on the image layer
        and ticks its box instead."""
        limits = self.recorded_limits(limits)
        if limits is not None or self.contrast_source is not None:
            self.set_model_contrast(limits)

    def recorded_limits(self, limits) -> tuple[float, float] | None:
        """A loaded session's ``model_contrast_limits`` as (low, high), or None: none, or
        (with a warning saying so) not two finite numbers with high > low."""
        if limits is None:
            return None
        from napari_sam.session_replay import checked_limits

        try:
            return checked_limits(limits, "the session's model_contrast_limits")
        except ValueError as err:  # (a SessionError)
            self.notify_warning(f"The model sees the stack's own percentiles: {err}.")
            return None

    def contrast_changed(self) -> str:
        """Main thread, the limits :meth:`model_contrast` returns changed: point at the
        embeddings of the new limits (none yet: the slices are embedded again as needed;
        with a store, in the store of these limits, :meth:`contrast_store`), and say so; a
        live preview is decoded again with the new embeddings. Returns the status line's
        news."""
        limits = self.model_contrast()
        dropped = self._lookup()
        self.prune_contrast_stores()
        lead = (f"Contrast changed: the model sees {contrast_words(limits)} again (their "
                "embeddings were kept)." if self.emb is not None else
                f"Contrast changed: {in_frames('slices', self.axis_kind)} are embedded again "
                f"with {contrast_words(limits)}.")  # (frames: a time series)
        self.after_setting(dropped, lead)
        return lead

    def prune_contrast_stores(self) -> list:
        """Hold the stores of this session's few most recent contrasts, and delete those it
        made that are not among them any more and that no other live session holds
        (:class:`~napari_sam.annotate.contrast_stores.ContrastStores`); not while a job runs
        (it may write one: the next change deletes them). The embeddings kept in memory of
        the stores let go are forgotten (another session may delete them: going back opens
        the store again, or makes it again). Returns the stores deleted."""
        stores = getattr(self, "_contrast_stores", None)
        if stores is None:
            stores = self._contrast_stores = ContrastStores()
        stale = stores.use(self.contrast_store() if self.model_contrast() is not None else None)
        for store in stores.let_go:
            self.embeddings.drop_store(store)
        if not stale or (self.job is not None and self.job.running):
            return []
        return [store for store in stale if stores.delete(store)]

    def holding_store(self, job):
        """The job generator ``job`` (about to start), holding the store it embeds into (that
        of the layer's limits, :meth:`contrast_store`) until it ends: the contrast may change
        three times while it runs (a script's :meth:`set_model_contrast`), which let the
        session's hold go, and another dock sharing the store deleted it under the job's
        writes."""
        store = self.contrast_store() if self.model_contrast() is not None else None
        return job if store is None else held_while(job, StoreHold(store))

    def release_contrast_stores(self) -> None:
        """Let the contrast stores this session holds go (the session ends; also when it is
        garbage-collected): other sessions may delete them now."""
        stores = getattr(self, "_contrast_stores", None)
        if stores is not None:
            stores.release()
